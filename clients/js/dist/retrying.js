// When `update` and `watch` try again, and how long they wait first: the Python client's
// numbers (client/updating.py, client/watching.py), I/O-free.
import { MetadataClientError } from "./errors.js";
/** `update`'s backoff after a 412: full jitter, `random(0, min(CAP, BASE * 2 ** attempt))`. */
export const BACKOFF_BASE = 0.01;
export const BACKOFF_CAP = 0.5;
/** The longest `Retry-After` of a 503 that `update` waits. */
export const RETRY_AFTER_CAP = 5;
/** `watch`'s wait before reconnecting: `random(0.5, 1) * min(CAP, BASE * 2 ** attempt)`,
 * `attempt` counting the connections since one last delivered anything. */
export const WATCH_BACKOFF_BASE = 0.25;
export const WATCH_BACKOFF_CAP = 10;
/** The longest `Retry-After` of a 503 (too many open streams) that `watch` waits. */
export const WATCH_RETRY_AFTER_CAP = 60;
/** Seconds of silence after which `watch` takes its connection for dead and reconnects: the
 * server sends a comment at least every 15 s. */
export const WATCH_READ_TIMEOUT = 45;
/** Seconds `update` waits after `error` on try `attempt` (from 0), or `null`: give up and
 * throw it. A 412 means another writer came first (back off with jitter, so racing writers
 * spread out); a 503 waits its `Retry-After`; anything else ends `update`. */
export function updateDelay(error, attempt, retries) {
    if (!(error instanceof MetadataClientError) || attempt >= retries)
        return null;
    const bound = Math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt);
    if (error.status === 412)
        return Math.random() * bound;
    if (error.status === 503)
        return Math.min(error.retryAfter ?? bound, RETRY_AFTER_CAP);
    return null;
}
/** Seconds `watch` waits before reconnecting after a connection ended, by the server
 * (`error` `null`) or by `error`; `null`: do not reconnect (throw `error`). Refusals (400,
 * 401, 403, 404, 429, an answer off the contract) are thrown; a 503 waits its `Retry-After`;
 * a network error, a silent connection, a gateway's 5xx or a stream the server ended
 * reconnect after a bounded, jittered backoff. `retry` is the server's `retry:` in ms. */
export function watchDelay(error, attempt, retry) {
    const bound = Math.min(WATCH_BACKOFF_CAP, WATCH_BACKOFF_BASE * 2 ** attempt);
    let backoff = (0.5 + Math.random() / 2) * bound;
    if (retry !== null)
        backoff = Math.max(backoff, Math.min(retry / 1000, WATCH_BACKOFF_CAP));
    if (!(error instanceof MetadataClientError))
        return backoff; // dropped, or no error at all
    if (error.status === 503)
        return Math.min(error.retryAfter ?? backoff, WATCH_RETRY_AFTER_CAP);
    return error.status >= 500 ? backoff : null;
}
/** Wait `seconds`; rejects with the signal's reason as soon as `signal` aborts. */
export function sleep(seconds, signal) {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) {
            reject(signal.reason);
            return;
        }
        const onAbort = () => {
            clearTimeout(timer);
            reject(signal?.reason);
        };
        const timer = setTimeout(() => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
        }, seconds * 1000);
        signal?.addEventListener("abort", onAbort, { once: true });
    });
}
