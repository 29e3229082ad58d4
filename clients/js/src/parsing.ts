// Reading answers: each reader takes a JSON body typed as `wire.ts` says it travels (types
// generated from the server's OpenAPI document), checks it at run time and returns the
// client's model. A body off the contract throws `OffContract`; `readBody` turns that into a
// `MetadataClientError` carrying the status, in one place.

import { MetadataClientError, errorFor } from "./errors.js";
import type {
  Change,
  EventName,
  ListedRecord,
  MetadataRecord,
  Operation,
  Page,
  PlatformPolicy,
  PolicyUpdate,
  Revision,
} from "./models.js";
import type * as wire from "./wire.js";

/** An event's data: the success body of a GET plus these three (docs/events.md). */
export type ChangeBody = wire.Record & {
  version: number;
  actor: string | null;
  operation: wire.Revision["operation"] | null;
};

class OffContract extends Error {}

const ETAG = /^(?:W\/)?"([0-9]+)"$/;
const OPERATIONS: ReadonlySet<string> = new Set(["patch", "put", "delete", "restore"]);

function fail(what: string): never {
  throw new OffContract(what);
}

function str(value: unknown): string {
  return typeof value === "string" ? value : fail("not a string");
}

function strOrNull(value: unknown): string | null {
  return value === null ? null : str(value);
}

function int(value: unknown): number {
  return typeof value === "number" && Number.isInteger(value) ? value : fail("not an integer");
}

/** `value` as the object type `T` of wire.ts, once it is an object: its fields are read (and
 * checked) one by one through `T`, so a field wire.ts no longer has does not compile. */
function obj<T extends object>(value: unknown): T {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as T) : fail("not an object");
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : fail("not an array");
}

function operation(value: unknown): Operation {
  const text = str(value);
  return OPERATIONS.has(text) ? (text as Operation) : fail("not an operation");
}

export function readListed(value: unknown): ListedRecord {
  const body = obj<wire.Record>(value);
  return {
    username: str(body.username),
    platformKey: str(body.platform_key),
    metadata: obj<wire.JsonObject>(body.metadata),
    createdAt: strOrNull(body.created_at),
    updatedAt: strOrNull(body.updated_at),
  };
}

export function readRecord(value: unknown, etag: string | null): MetadataRecord {
  const match = ETAG.exec(etag ?? "");
  if (etag === null || match === null) fail("no ETag");
  return { ...readListed(value), etag, version: Number(match[1]) };
}

function readRevision(value: unknown): Revision {
  const body = obj<wire.Revision>(value);
  return {
    version: int(body.version),
    operation: operation(body.operation),
    actor: strOrNull(body.actor),
    at: str(body.at),
    metadata: obj<wire.JsonObject>(body.metadata),
    changedKeys: list(body.changed_keys).map(str),
  };
}

function readPage<T>(value: unknown, item: (value: unknown) => T): Page<T> {
  const body = obj<wire.HistoryPage | wire.UsersPage>(value);
  return { results: list(body.results).map(item), next: body.next === undefined ? null : strOrNull(body.next) };
}

export function readHistoryPage(value: unknown): Page<Revision> {
  return readPage(value, readRevision);
}

export function readUsersPage(value: unknown): Page<ListedRecord> {
  return readPage(value, readListed);
}

export function readImported(value: unknown): number {
  return int(obj<wire.ImportResult>(value).imported);
}

export function readPolicy(value: unknown, etag: string | null): PlatformPolicy {
  const body = obj<wire.Policy>(value);
  const schema = body.schema;
  if (schema !== null && typeof schema !== "boolean") obj(schema);
  return {
    platformKey: str(body.platform_key),
    protectedKeys: list(body.protected_keys).map(str),
    privateKeys: body.private_keys === undefined || body.private_keys === null ? null : list(body.private_keys).map(str),
    schema,
    version: int(body.version),
    updatedAt: strOrNull(body.updated_at),
    etag,
    raw: value as wire.JsonObject,
  };
}

export function readPolicyUpdate(value: unknown, etag: string | null): PolicyUpdate {
  const body = obj<wire.PolicyPutResult>(value);
  const count = body.violating_documents;
  return {
    policy: readPolicy(body, etag),
    violatingDocuments: count === null ? null : int(count),
    examples: list(body.examples).map((item) => {
      const example = obj<wire.PolicyPutResult["examples"][number]>(item);
      return { username: str(example.username), errors: list(example.errors).map(str) };
    }),
    raw: value as wire.JsonObject,
  };
}

/** One event's data as a `Change`; data off the contract throws a `MetadataClientError`
 * (status 200) with the event in its body. */
export function readChange(event: EventName, id: string, data: string, platformKey: string): Change {
  try {
    const body = obj<ChangeBody>(JSON.parse(data));
    if (event === "reset") {
      return {
        event, id, platformKey, username: null, metadata: {}, version: null, actor: null,
        operation: null, createdAt: null, updatedAt: null, etag: null, record: null,
      };
    }
    const listed = readListed(body);
    const version = int(body.version);
    const etag = `"${version}"`;
    return {
      event,
      id,
      platformKey: listed.platformKey,
      username: listed.username,
      metadata: listed.metadata,
      version,
      actor: strOrNull(body.actor),
      operation: body.operation === null ? null : operation(body.operation),
      createdAt: listed.createdAt,
      updatedAt: listed.updatedAt,
      etag,
      record: { ...listed, etag, version },
    };
  } catch (error) {
    if (error instanceof OffContract || error instanceof SyntaxError) {
      throw new MetadataClientError(200, { event, id, data });
    }
    throw error;
  }
}

/** The JSON body of a `status` answer read with `read`: any other status throws its
 * refusal, a body `read` cannot read a `MetadataClientError` with the answer's status. */
export async function readBody<T>(
  response: Response,
  read: (body: unknown) => T,
  status = 200,
): Promise<T> {
  if (response.status !== status) throw await errorFor(response);
  const text = await response.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
    return read(body);
  } catch (error) {
    if (error instanceof OffContract || error instanceof SyntaxError) {
      throw new MetadataClientError(response.status, body, response.headers);
    }
    throw error;
  }
}

/** A line of an export (NDJSON) as a record. */
export function readExportLine(line: string, response: Response): ListedRecord {
  try {
    return readListed(JSON.parse(line));
  } catch (error) {
    if (error instanceof OffContract || error instanceof SyntaxError) {
      throw new MetadataClientError(response.status, null, response.headers);
    }
    throw error;
  }
}

/** The body reader of a 200 that is the stream asked for; a 200 of another type (a proxy's
 * page) is an answer off the contract, its body left unread. */
export function openStream(response: Response, mediaType: string): ReadableStreamDefaultReader<Uint8Array> {
  const given = (response.headers.get("Content-Type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (given !== mediaType || response.body === null) {
    response.body?.cancel().catch(() => {});
    throw new MetadataClientError(200, null, response.headers);
  }
  return response.body.getReader();
}
