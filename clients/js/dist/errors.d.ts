/** A request the server refused, or an answer the client could not read.
 *
 * `status` is the HTTP status (a 200 whose body, `ETag`, export line or event data is off the
 * contract keeps its 200); `body` the response body parsed as JSON, or `null` when it was
 * empty or not JSON; `headers` the response headers. */
export declare class MetadataClientError extends Error {
    readonly status: number;
    readonly body: unknown;
    readonly headers: Headers;
    constructor(status: number, body: unknown, headers?: HeadersInit);
    /** The body's `detail` or `error` text (the contract's two shapes), if it has one. */
    get detail(): string | null;
    /** 400: the body's field errors, `{"metadata": ["..."], "delete_keys": {"0": ["..."]}}`
     * (`{}` for any other body). */
    get errors(): {
        [field: string]: unknown;
    };
    /** 400 of an import: its bad lines by number (from 1); empty for any other refusal. */
    get lines(): Map<number, string[]>;
    /** 403: the keys a platform policy forbade this caller to change (`[]` otherwise). */
    get keys(): string[];
    /** 412: the ETag of the version the server holds now. */
    get currentEtag(): string | null;
    /** 413: the server limit the request hit (`"max_document_bytes"`, ...). */
    get limit(): string | null;
    /** 503 (and 429): the seconds `Retry-After` asks to wait, or `null`. */
    get retryAfter(): number | null;
}
/** `Retry-After` in seconds: delay-seconds or an HTTP-date (RFC 9110 10.2.3), else `null`. */
export declare function parseRetryAfter(value: string | null, now?: number): number | null;
/** The error for a refused response, its body read. */
export declare function errorFor(response: Response): Promise<MetadataClientError>;
export declare function objectOrNull(value: unknown): {
    [key: string]: unknown;
} | null;
