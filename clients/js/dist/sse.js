// The event-stream format (Server-Sent Events) as the WHATWG HTML standard reads it
// (section 9.2.6), fed with text as it arrives. `EventSource` would do this, but cannot send
// an `Authorization` header: `watch` reads the stream with `fetch` and parses it here.
import { LineSplitter } from "./lines.js";
export class EventStreamParser {
    /** The last event ID: what a reconnection sends as `Last-Event-ID` (unless empty). It
     * changes when an event is dispatched, even one without data; an `id:` line with an empty
     * value empties it; one containing U+0000 is ignored. */
    lastEventId;
    /** The reconnection time the stream asked for with `retry:`, in milliseconds, or `null`. */
    retry = null;
    #onEvent;
    #lines = new LineSplitter();
    #started = false;
    #type = "";
    #data = [];
    #id;
    /** `onEvent` (optional) is called with each event as `push` dispatches it; `lastEventId`
     * is the ID to start from (the last one received on an earlier connection). */
    constructor(onEvent, lastEventId = "") {
        this.#onEvent = onEvent;
        this.lastEventId = lastEventId;
        this.#id = lastEventId;
    }
    /** Parse the next piece of the stream; returns the events it completed, in order. */
    push(chunk) {
        if (!this.#started && chunk !== "") {
            this.#started = true;
            if (chunk.startsWith("\uFEFF"))
                chunk = chunk.slice(1); // one BOM, at the very start
        }
        const events = [];
        for (const line of this.#lines.push(chunk)) {
            const event = this.#line(line);
            if (event) {
                events.push(event);
                this.#onEvent?.(event);
            }
        }
        return events;
    }
    #line(line) {
        if (line === "")
            return this.#dispatch();
        if (line.startsWith(":"))
            return null; // a comment: the server's keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" "))
            value = value.slice(1);
        switch (field) {
            case "event":
                this.#type = value;
                break;
            case "data":
                this.#data.push(value);
                break;
            case "id":
                if (!value.includes("\0"))
                    this.#id = value;
                break;
            case "retry":
                if (/^[0-9]+$/.test(value))
                    this.retry = Number(value);
                break;
            default: // unknown fields are ignored
        }
        return null;
    }
    #dispatch() {
        this.lastEventId = this.#id;
        const { length } = this.#data;
        const event = length ? { type: this.#type || "message", data: this.#data.join("\n"), id: this.#id } : null;
        this.#type = "";
        this.#data = [];
        return event;
    }
}
