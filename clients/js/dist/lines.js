// Text in, whole lines out, split at CR, LF and CRLF only: what both streamed answers want
// (an export's NDJSON, a watch's Server-Sent Events), however the network splits them.
export class LineSplitter {
    #rest = "";
    #afterCR = false;
    /** The lines `chunk` completes; what follows the last line end waits for the next chunk. */
    push(chunk) {
        if (this.#afterCR && chunk.startsWith("\n"))
            chunk = chunk.slice(1); // a CRLF split in two
        if (chunk === "")
            return [];
        this.#afterCR = chunk.endsWith("\r");
        const lines = [];
        let start = 0;
        for (let i = 0; i < chunk.length; i++) {
            const c = chunk.charCodeAt(i);
            if (c !== 10 && c !== 13)
                continue;
            lines.push(this.#rest + chunk.slice(start, i));
            this.#rest = "";
            if (c === 13 && chunk.charCodeAt(i + 1) === 10)
                i++;
            start = i + 1;
        }
        this.#rest += chunk.slice(start);
        return lines;
    }
    /** What came after the last line end (an unterminated last line), emptied. */
    rest() {
        const rest = this.#rest;
        this.#rest = "";
        return rest;
    }
}
