// `watch`: a `fetch`-based reader of the live-changes stream (docs/events.md) that reconnects
// with `Last-Event-ID`, so that across dropped connections and server restarts no change is
// missed and none comes twice.

import { errorFor } from "./errors.js";
import type { Change, EventName } from "./models.js";
import { openStream, readChange } from "./parsing.js";
import { WATCH_READ_TIMEOUT, sleep, watchDelay } from "./retrying.js";
import { EventStreamParser } from "./sse.js";

export type ChangeIterable = AsyncGenerator<Change, void, undefined>;

/** Where a watch stands, for a UI to show: `"connecting"` once at the start, `"open"`
 * whenever the server accepted a connection, `"reconnecting"` whenever one ended and the
 * watch waits to connect again. */
export type WatchState = "connecting" | "open" | "reconnecting";

const EVENTS: ReadonlySet<string> = new Set(["snapshot", "change", "reset"]);

export interface Watch {
  platformKey: string;
  lastEventId: string | null;
  reconnect: boolean;
  signal: AbortSignal | null;
  onState: ((state: WatchState) => void) | null;
  /** Opens one connection, resuming after `lastEventId` (sent unless empty). */
  connect(lastEventId: string, signal: AbortSignal): Promise<Response>;
}

/** Thrown inside a connection that stayed silent for `WATCH_READ_TIMEOUT` seconds. */
class Silent extends Error {}

export async function* watchChanges(watch: Watch): ChangeIterable {
  const { signal } = watch;
  let lastEventId = watch.lastEventId ?? "";
  let retry: number | null = null;
  let attempt = 0;
  watch.onState?.("connecting");
  for (;;) {
    if (signal?.aborted) return;
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let failure: unknown = null;
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
    try {
      const response = await watch.connect(lastEventId, controller.signal);
      if (response.status !== 200) throw await errorFor(response);
      reader = openStream(response, "text/event-stream");
      watch.onState?.("open");
      const parser = new EventStreamParser(undefined, lastEventId);
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await readWithin(reader, controller);
        if (done) break;
        attempt = 0; // the connection delivers: the next drop reconnects at once
        for (const event of parser.push(decoder.decode(value, { stream: true }))) {
          // An event without data is none (the standard); a type this client does not know
          // is skipped, its id still kept.
          if (!event.data || !EVENTS.has(event.type)) continue;
          const change = readChange(event.type as EventName, event.id, event.data, watch.platformKey);
          lastEventId = event.id;
          yield change;
        }
        lastEventId = parser.lastEventId;
        if (parser.retry !== null) retry = parser.retry;
      }
    } catch (error) {
      if (signal?.aborted) return;
      failure = error instanceof Silent ? null : error;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      controller.abort();
      reader?.cancel().catch(() => {});
    }
    const delay = watch.reconnect ? watchDelay(failure, attempt++, retry) : null;
    if (delay === null) {
      if (failure !== null) throw failure;
      return;
    }
    watch.onState?.("reconnecting");
    try {
      await sleep(delay, signal);
    } catch {
      return; // aborted while waiting
    }
  }
}

/** The next chunk; `Silent` when none comes within `WATCH_READ_TIMEOUT` (the server sends a
 * comment at least every 15 s: this connection is dead); the abort's reason as soon as
 * `controller` aborts, even when an injected `fetch` ignores its signal. */
async function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  controller: AbortController,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stopped = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Silent("no data for too long"));
      controller.abort();
    }, WATCH_READ_TIMEOUT * 1000);
    onAbort = () => reject(controller.signal.reason);
    controller.signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([reader.read(), stopped]);
  } finally {
    clearTimeout(timer);
    if (onAbort) controller.signal.removeEventListener("abort", onAbort);
  }
}
