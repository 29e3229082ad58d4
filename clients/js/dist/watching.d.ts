import type { Change } from "./models.js";
export type ChangeIterable = AsyncGenerator<Change, void, undefined>;
/** Where a watch stands, for a UI to show: `"connecting"` once at the start, `"open"`
 * whenever the server accepted a connection, `"reconnecting"` whenever one ended and the
 * watch waits to connect again. */
export type WatchState = "connecting" | "open" | "reconnecting";
export interface Watch {
    platformKey: string;
    lastEventId: string | null;
    reconnect: boolean;
    signal: AbortSignal | null;
    onState: ((state: WatchState) => void) | null;
    /** Opens one connection, resuming after `lastEventId` (sent unless empty). */
    connect(lastEventId: string, signal: AbortSignal): Promise<Response>;
}
export declare function watchChanges(watch: Watch): ChangeIterable;
