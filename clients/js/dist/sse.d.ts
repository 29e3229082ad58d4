/** One dispatched event: its type (`"message"` when the stream named none), its data lines
 * joined with LF, and the last event ID as it stood when it was dispatched. */
export interface ServerSentEvent {
    type: string;
    data: string;
    id: string;
}
export declare class EventStreamParser {
    #private;
    /** The last event ID: what a reconnection sends as `Last-Event-ID` (unless empty). It
     * changes when an event is dispatched, even one without data; an `id:` line with an empty
     * value empties it; one containing U+0000 is ignored. */
    lastEventId: string;
    /** The reconnection time the stream asked for with `retry:`, in milliseconds, or `null`. */
    retry: number | null;
    /** `onEvent` (optional) is called with each event as `push` dispatches it; `lastEventId`
     * is the ID to start from (the last one received on an earlier connection). */
    constructor(onEvent?: (event: ServerSentEvent) => void, lastEventId?: string);
    /** Parse the next piece of the stream; returns the events it completed, in order. */
    push(chunk: string): ServerSentEvent[];
}
