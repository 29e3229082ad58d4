// Reading answers: each reader takes a JSON body typed as `wire.ts` says it travels (types
// generated from the server's OpenAPI document), checks it at run time and returns the
// client's model. A body off the contract throws `OffContract`; `readBody` turns that into a
// `MetadataClientError` carrying the status, in one place.
import { MetadataClientError, errorFor } from "./errors.js";
class OffContract extends Error {
}
const ETAG = /^(?:W\/)?"([0-9]+)"$/;
const OPERATIONS = new Set(["patch", "put", "delete", "restore"]);
function fail(what) {
    throw new OffContract(what);
}
function str(value) {
    return typeof value === "string" ? value : fail("not a string");
}
function strOrNull(value) {
    return value === null ? null : str(value);
}
function int(value) {
    return typeof value === "number" && Number.isInteger(value) ? value : fail("not an integer");
}
/** `value` as the object type `T` of wire.ts, once it is an object: its fields are read (and
 * checked) one by one through `T`, so a field wire.ts no longer has does not compile. */
function obj(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value) ? value : fail("not an object");
}
function list(value) {
    return Array.isArray(value) ? value : fail("not an array");
}
function operation(value) {
    const text = str(value);
    return OPERATIONS.has(text) ? text : fail("not an operation");
}
export function readListed(value) {
    const body = obj(value);
    return {
        username: str(body.username),
        platformKey: str(body.platform_key),
        metadata: obj(body.metadata),
        createdAt: strOrNull(body.created_at),
        updatedAt: strOrNull(body.updated_at),
    };
}
export function readRecord(value, etag) {
    const match = ETAG.exec(etag ?? "");
    if (etag === null || match === null)
        fail("no ETag");
    return { ...readListed(value), etag, version: Number(match[1]) };
}
function readRevision(value) {
    const body = obj(value);
    return {
        version: int(body.version),
        operation: operation(body.operation),
        actor: strOrNull(body.actor),
        at: str(body.at),
        metadata: obj(body.metadata),
        changedKeys: list(body.changed_keys).map(str),
    };
}
function readPage(value, item) {
    const body = obj(value);
    return { results: list(body.results).map(item), next: body.next === undefined ? null : strOrNull(body.next) };
}
export function readHistoryPage(value) {
    return readPage(value, readRevision);
}
export function readUsersPage(value) {
    return readPage(value, readListed);
}
export function readImported(value) {
    return int(obj(value).imported);
}
export function readPolicy(value, etag) {
    const body = obj(value);
    const schema = body.schema;
    if (schema !== null && typeof schema !== "boolean")
        obj(schema);
    return {
        platformKey: str(body.platform_key),
        protectedKeys: list(body.protected_keys).map(str),
        privateKeys: body.private_keys === undefined || body.private_keys === null ? null : list(body.private_keys).map(str),
        schema,
        version: int(body.version),
        updatedAt: strOrNull(body.updated_at),
        etag,
        raw: value,
    };
}
export function readPolicyUpdate(value, etag) {
    const body = obj(value);
    const count = body.violating_documents;
    return {
        policy: readPolicy(body, etag),
        violatingDocuments: count === null ? null : int(count),
        examples: list(body.examples).map((item) => {
            const example = obj(item);
            return { username: str(example.username), errors: list(example.errors).map(str) };
        }),
        raw: value,
    };
}
/** One event's data as a `Change`; data off the contract throws a `MetadataClientError`
 * (status 200) with the event in its body. */
export function readChange(event, id, data, platformKey) {
    try {
        const body = obj(JSON.parse(data));
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
    }
    catch (error) {
        if (error instanceof OffContract || error instanceof SyntaxError) {
            throw new MetadataClientError(200, { event, id, data });
        }
        throw error;
    }
}
/** The JSON body of a `status` answer read with `read`: any other status throws its
 * refusal, a body `read` cannot read a `MetadataClientError` with the answer's status. */
export async function readBody(response, read, status = 200) {
    if (response.status !== status)
        throw await errorFor(response);
    const text = await response.text();
    let body = null;
    try {
        body = JSON.parse(text);
        return read(body);
    }
    catch (error) {
        if (error instanceof OffContract || error instanceof SyntaxError) {
            throw new MetadataClientError(response.status, body, response.headers);
        }
        throw error;
    }
}
/** A line of an export (NDJSON) as a record. */
export function readExportLine(line, response) {
    try {
        return readListed(JSON.parse(line));
    }
    catch (error) {
        if (error instanceof OffContract || error instanceof SyntaxError) {
            throw new MetadataClientError(response.status, null, response.headers);
        }
        throw error;
    }
}
/** The body reader of a 200 that is the stream asked for; a 200 of another type (a proxy's
 * page) is an answer off the contract, its body left unread. */
export function openStream(response, mediaType) {
    const given = (response.headers.get("Content-Type") ?? "").split(";")[0].trim().toLowerCase();
    if (given !== mediaType || response.body === null) {
        response.body?.cancel().catch(() => { });
        throw new MetadataClientError(200, null, response.headers);
    }
    return response.body.getReader();
}
