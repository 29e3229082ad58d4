import type { ChangeIterable, WatchState } from "./watching.js";
import type { JsonObject, ListedRecord, MetadataRecord, Page, PlatformPolicy, PolicyUpdate, Revision } from "./models.js";
import type * as wire from "./wire.js";
export declare const DEFAULT_PATH = "/api/core/users/platform-metadata/";
export declare const NDJSON = "application/x-ndjson";
export declare const EVENT_STREAM = "text/event-stream";
export interface ClientOptions {
    /** The server's origin, e.g. `"https://api.example.com"`; `""` in a browser page served by
     * the same origin. */
    baseUrl: string;
    /** Sent as `Authorization: Token <token>`; leave it out when `headers` or the injected
     * `fetch` carry other credentials (a `Bearer` header, a cookie). */
    token?: string | null;
    /** Where the endpoint is mounted (default `/api/core/users/platform-metadata/`); the
     * policy, history, restore, users and events resources are found below it. */
    path?: string;
    /** The `fetch` to send with (default: the platform's `globalThis.fetch`). */
    fetch?: typeof fetch;
    /** Headers sent with every request (`{ Authorization: "Bearer ..." }`). */
    headers?: HeadersInit;
}
/** An ETag as the server sent it (`record.etag`, `'"7"'`), `"*"`, or a version (7 is sent
 * as `"7"`). */
export type IfMatch = string | number;
export interface CallOptions {
    /** Aborts the request (and `update`'s waits). */
    signal?: AbortSignal | null;
}
export interface UserOptions extends CallOptions {
    /** Whose metadata (default: the caller's own); another user's is for tenant admins. */
    username?: string | null;
}
export interface WriteOptions extends UserOptions {
    ifMatch?: IfMatch | null;
}
export interface PatchOptions extends WriteOptions {
    deleteKeys?: Iterable<string>;
}
export interface DeleteOptions extends WriteOptions {
    /** Also delete every revision of the record (erasure): `&history=purge`. */
    purgeHistory?: boolean;
}
export interface UpdateOptions extends UserOptions {
    /** How many times a 412 (or 503) is retried before it is thrown (default 10). */
    retries?: number;
}
export interface PolicyOptions extends CallOptions {
    ifMatch?: IfMatch | null;
    /** Report what the policy would refuse and save nothing. */
    dryRun?: boolean;
}
export interface HistoryOptions extends UserOptions {
    /** Page size, 1 to 100. */
    limit?: number | null;
}
export interface ListOptions extends CallOptions {
    /** Keeps the records whose top-level keys hold equal JSON values: `{ plan: "pro" }`. */
    filter?: JsonObject | null;
    /** Page size, 1 to 1,000. */
    limit?: number | null;
}
export interface WatchOptions extends UserOptions {
    /** Every user's changes (tenant admins); not with `username`. */
    allUsers?: boolean;
    /** Resume after this event id (a `change.id` kept from an earlier watch). */
    lastEventId?: string | null;
    /** `false`: end when the first connection ends (throwing what ended it, if anything). */
    reconnect?: boolean;
    /** Called as the watch connects, is accepted, and reconnects (a UI's "live" badge). */
    onState?: ((state: WatchState) => void) | null;
}
/** What `fn` of `update` may return: a new document, or nothing when it edited its argument. */
export type Updated = JsonObject | null | undefined | void;
export type ImportItem = ListedRecord | MetadataRecord | readonly [string, JsonObject];
type Params = [string, string][];
/** A paginated answer: `for await (const item of paged)` asks for each page only when the
 * iteration gets there; `paged.pages()` gives the pages themselves, with their `next`. */
export declare class Paged<T> implements AsyncIterable<T> {
    #private;
    constructor(fetchPage: (params: Params) => Promise<Page<T>>, params: Params);
    pages(): AsyncGenerator<Page<T>, void, undefined>;
    [Symbol.asyncIterator](): AsyncGenerator<T, void, undefined>;
}
export declare class MetadataClient {
    #private;
    /** The endpoint's URL, ending in `/`. */
    readonly url: string;
    constructor(options: ClientOptions);
    /** The metadata of `username` (default: the caller) on `platformKey`. */
    get(platformKey: string, options?: UserOptions): Promise<MetadataRecord>;
    /** Set the top-level keys of `metadata` and remove `deleteKeys` (deletes first). */
    patch(platformKey: string, metadata?: JsonObject | null, options?: PatchOptions): Promise<MetadataRecord>;
    /** Replace the whole document (PUT). */
    replace(platformKey: string, metadata: JsonObject, options?: WriteOptions): Promise<MetadataRecord>;
    /** Delete the document; with `purgeHistory`, every revision of it too. */
    delete(platformKey: string, options?: DeleteOptions): Promise<void>;
    /** Read, change with `fn`, write back only if nothing changed meanwhile; repeat.
     *
     * `fn` gets a deep copy of the document and returns the new one (or edits its argument
     * and returns nothing); it may be async, and may run more than once: compute from the
     * argument only. A 412 (someone wrote in between) reads again after a short random wait
     * (up to 10 ms, doubling per try to at most 0.5 s); a 503 waits its `Retry-After` (at most
     * 5 s). After `retries` retries the last refusal is thrown; what `fn` throws ends `update`
     * at once, with nothing written. */
    update(platformKey: string, fn: (metadata: JsonObject) => Updated | Promise<Updated>, options?: UpdateOptions): Promise<MetadataRecord>;
    /** The platform's policy (a member's view leaves `privateKeys` out: `null`). */
    getPolicy(platformKey: string, options?: CallOptions): Promise<PlatformPolicy>;
    /** Replace the policy (tenant admins); `dryRun` reports what it would refuse, saves nothing. */
    putPolicy(platformKey: string, policyDocument: wire.PolicyPutRequest, options?: PolicyOptions): Promise<PolicyUpdate>;
    /** Back to the default policy (tenant admins). */
    deletePolicy(platformKey: string, options?: Omit<PolicyOptions, "dryRun">): Promise<void>;
    /** Every kept revision, newest first, fetched page by page (`limit` per page). */
    history(platformKey: string, options?: HistoryOptions): Paged<Revision>;
    /** Write revision `version`'s document as a new change. */
    restore(platformKey: string, version: number, options?: WriteOptions): Promise<MetadataRecord>;
    /** The platform's stored records by username, page by page (tenant admins). */
    listUsers(platformKey: string, options?: ListOptions): Paged<ListedRecord>;
    /** Every matching record in one streamed NDJSON answer, read line by line as it arrives. */
    export(platformKey: string, options?: Omit<ListOptions, "limit">): AsyncGenerator<ListedRecord, void, undefined>;
    /** Replace each named user's document as a PUT would, all or nothing (tenant admins);
     * returns how many were imported. A refusal's `lines` names the bad lines. */
    import(platformKey: string, records: Iterable<ImportItem>, options?: CallOptions): Promise<number>;
    /** The changes of one user's metadata (or, with `allUsers`, every user's), as they happen,
     * for ever: a snapshot first (one user, no `lastEventId`), then every change, in version
     * order, none skipped, none twice, across reconnections and server restarts (it resumes
     * with `Last-Event-ID`). Ends when `signal` aborts or the loop breaks; refusals throw. */
    watch(platformKey: string, options?: WatchOptions): ChangeIterable;
}
export {};
