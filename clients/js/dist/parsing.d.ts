import type { Change, EventName, ListedRecord, MetadataRecord, Page, PlatformPolicy, PolicyUpdate, Revision } from "./models.js";
import type * as wire from "./wire.js";
/** An event's data: the success body of a GET plus these three (docs/events.md). */
export type ChangeBody = wire.Record & {
    version: number;
    actor: string | null;
    operation: wire.Revision["operation"] | null;
};
export declare function readListed(value: unknown): ListedRecord;
export declare function readRecord(value: unknown, etag: string | null): MetadataRecord;
export declare function readHistoryPage(value: unknown): Page<Revision>;
export declare function readUsersPage(value: unknown): Page<ListedRecord>;
export declare function readImported(value: unknown): number;
export declare function readPolicy(value: unknown, etag: string | null): PlatformPolicy;
export declare function readPolicyUpdate(value: unknown, etag: string | null): PolicyUpdate;
/** One event's data as a `Change`; data off the contract throws a `MetadataClientError`
 * (status 200) with the event in its body. */
export declare function readChange(event: EventName, id: string, data: string, platformKey: string): Change;
/** The JSON body of a `status` answer read with `read`: any other status throws its
 * refusal, a body `read` cannot read a `MetadataClientError` with the answer's status. */
export declare function readBody<T>(response: Response, read: (body: unknown) => T, status?: number): Promise<T>;
/** A line of an export (NDJSON) as a record. */
export declare function readExportLine(line: string, response: Response): ListedRecord;
/** The body reader of a 200 that is the stream asked for; a 200 of another type (a proxy's
 * page) is an answer off the contract, its body left unread. */
export declare function openStream(response: Response, mediaType: string): ReadableStreamDefaultReader<Uint8Array>;
