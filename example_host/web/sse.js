// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// stream is read here and parsed as the HTML standard's event-stream format says.  After a
// dropped connection it reconnects with Last-Event-ID, so no change is missed or seen twice.

const LINE_END = /\r\n|\r|\n/;

// Feed text chunks in, get {type, data, id} events out (`onEvent`).  `lastEventId` is the id
// of the last event dispatched, what a reconnection resumes from.
export class EventStreamParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.lastEventId = null;
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
    this.id = this.lastEventId;
  }

  push(chunk) {
    this.buffer += chunk;
    for (;;) {
      const match = LINE_END.exec(this.buffer);
      // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
      if (!match || (match[0] === "\r" && match.index === this.buffer.length - 1)) return;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      this.lastEventId = this.id;
      if (this.data.length) {
        this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.id });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the server's keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
  }
}

// Watch `url` until the returned function is called.  `onEvent(type, payload, id)` gets each
// event with its JSON data parsed; `onStatus(state, detail)` hears "connecting", "live",
// "reconnecting" and, for answers that retrying cannot mend (401, 403, 404), "refused" with the
// response status, after which it stops.
export function watch(url, headers, { onEvent, onStatus }) {
  let stopped = false;
  let controller = null;
  let lastEventId = null;
  let delay = 500;

  async function connectOnce() {
    controller = new AbortController();
    const sent = { ...headers, Accept: "text/event-stream" };
    if (lastEventId) sent["Last-Event-ID"] = lastEventId;
    const response = await fetch(url, { headers: sent, signal: controller.signal, cache: "no-store" });
    if ([401, 403, 404].includes(response.status)) {
      stopped = true;
      onStatus("refused", response.status);
      return;
    }
    if (!response.ok || !response.body) throw new Error(`status ${response.status}`);
    onStatus("live");
    delay = 500;
    const parser = new EventStreamParser((event) => {
      lastEventId = event.id;
      let payload = null;
      try {
        payload = JSON.parse(event.data);
      } catch {
        return; // not ours to show
      }
      onEvent(event.type, payload, event.id);
    });
    parser.lastEventId = lastEventId;
    parser.reset();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.push(value);
    }
  }

  (async () => {
    onStatus("connecting");
    while (!stopped) {
      try {
        await connectOnce();
      } catch {
        // a dropped connection or a 503: try again below
      }
      if (stopped) return;
      onStatus("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  })();

  return () => {
    stopped = true;
    controller?.abort();
  };
}
