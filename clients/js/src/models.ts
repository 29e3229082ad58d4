// What the client returns: plain objects read from the contract's JSON bodies, with the
// Python client's field names in camelCase. Timestamps stay the RFC 3339 text the server sent
// (`new Date(record.updatedAt)` when you need one): a `Date` would drop its microseconds.

import type { JsonObject } from "./wire.js";

export type { JsonObject, JsonValue } from "./wire.js";

/** One user's metadata on one platform, as a GET, PATCH, PUT or restore answered it. */
export interface MetadataRecord {
  username: string;
  platformKey: string;
  /** The document (`{}` when nothing is stored). */
  metadata: JsonObject;
  /** When the record was created; `null` when nothing is stored. */
  createdAt: string | null;
  /** When it last changed; `null` when nothing is stored. */
  updatedAt: string | null;
  /** The response's `ETag`, e.g. `'"7"'`: pass it as `ifMatch`. */
  etag: string;
  /** The version the ETag names (0 while nothing was ever stored). */
  version: number;
}

/** A stored record as `listUsers` and `export` give it: no `etag` or `version` (the listing
 * carries none; `get` the record before a conditional write). `import` takes these back. */
export interface ListedRecord {
  username: string;
  platformKey: string;
  metadata: JsonObject;
  createdAt: string | null;
  updatedAt: string | null;
}

export type Operation = "patch" | "put" | "delete" | "restore";

/** One change in a record's history (`history` gives them newest first). */
export interface Revision {
  /** The record's version after the change (the number in its ETag). */
  version: number;
  operation: Operation;
  /** Who made the change (the admin, when an admin acted). */
  actor: string | null;
  at: string;
  /** The whole document after the change (`{}` after a delete). */
  metadata: JsonObject;
  /** Top-level keys added, changed or removed by it, sorted. */
  changedKeys: string[];
}

/** A platform's policy as GET or PUT `<mount>/policy/` answered it. */
export interface PlatformPolicy {
  platformKey: string;
  protectedKeys: string[];
  /** `null` in a member's view, which leaves them out. */
  privateKeys: string[] | null;
  schema: JsonObject | boolean | null;
  version: number;
  updatedAt: string | null;
  /** The response's `ETag` (`null` for a policy the host fixes in code). */
  etag: string | null;
  /** The whole response body. */
  raw: JsonObject;
}

export interface PolicyViolation {
  username: string;
  errors: string[];
}

/** What a policy PUT (or its dry run) answered. */
export interface PolicyUpdate {
  /** The policy as saved (a dry run: as it would be, with the stored version and ETag). */
  policy: PlatformPolicy;
  /** How many stored documents the schema refuses; `null` when the store cannot count. */
  violatingDocuments: number | null;
  /** At most 20 of them. */
  examples: PolicyViolation[];
  raw: JsonObject;
}

/** One page of a cursor-paginated answer. */
export interface Page<T> {
  results: T[];
  /** The next page's URL as the server wrote it, or `null` on the last page. */
  next: string | null;
}

export type EventName = "snapshot" | "change" | "reset";

/** One event of a live-changes stream (`watch`). In a `"reset"` every field is empty but
 * `event`, `id` and `platformKey`: list the users again, then follow on. */
export interface Change {
  event: EventName;
  /** The cursor `watch` resumes from (`lastEventId` takes it). */
  id: string;
  platformKey: string;
  username: string | null;
  /** As this caller may see it (no private keys for members); `{}` after a delete. */
  metadata: JsonObject;
  /** 0 in the snapshot of a record never written; `null` in a reset. */
  version: number | null;
  /** `null` in a snapshot or a reset. */
  actor: string | null;
  operation: Operation | null;
  createdAt: string | null;
  updatedAt: string | null;
  /** The version quoted, for `ifMatch`; `null` in a reset. */
  etag: string | null;
  /** The record as this event leaves it, ETag included; `null` in a reset. */
  record: MetadataRecord | null;
}
