export declare class LineSplitter {
    #private;
    /** The lines `chunk` completes; what follows the last line end waits for the next chunk. */
    push(chunk: string): string[];
    /** What came after the last line end (an unterminated last line), emptied. */
    rest(): string;
}
