/** `update`'s backoff after a 412: full jitter, `random(0, min(CAP, BASE * 2 ** attempt))`. */
export declare const BACKOFF_BASE = 0.01;
export declare const BACKOFF_CAP = 0.5;
/** The longest `Retry-After` of a 503 that `update` waits. */
export declare const RETRY_AFTER_CAP = 5;
/** `watch`'s wait before reconnecting: `random(0.5, 1) * min(CAP, BASE * 2 ** attempt)`,
 * `attempt` counting the connections since one last delivered anything. */
export declare const WATCH_BACKOFF_BASE = 0.25;
export declare const WATCH_BACKOFF_CAP = 10;
/** The longest `Retry-After` of a 503 (too many open streams) that `watch` waits. */
export declare const WATCH_RETRY_AFTER_CAP = 60;
/** Seconds of silence after which `watch` takes its connection for dead and reconnects: the
 * server sends a comment at least every 15 s. */
export declare const WATCH_READ_TIMEOUT = 45;
/** Seconds `update` waits after `error` on try `attempt` (from 0), or `null`: give up and
 * throw it. A 412 means another writer came first (back off with jitter, so racing writers
 * spread out); a 503 waits its `Retry-After`; anything else ends `update`. */
export declare function updateDelay(error: unknown, attempt: number, retries: number): number | null;
/** Seconds `watch` waits before reconnecting after a connection ended, by the server
 * (`error` `null`) or by `error`; `null`: do not reconnect (throw `error`). Refusals (400,
 * 401, 403, 404, 429, an answer off the contract) are thrown; a 503 waits its `Retry-After`;
 * a network error, a silent connection, a gateway's 5xx or a stream the server ended
 * reconnect after a bounded, jittered backoff. `retry` is the server's `retry:` in ms. */
export declare function watchDelay(error: unknown, attempt: number, retry: number | null): number | null;
/** Wait `seconds`; rejects with the signal's reason as soon as `signal` aborts. */
export declare function sleep(seconds: number, signal?: AbortSignal | null): Promise<void>;
