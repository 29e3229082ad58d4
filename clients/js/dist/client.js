// `MetadataClient`: the metadata API over `fetch`, for browsers and Node. The Python client's
// methods (starlette_platform_metadata/client, docs/client.md) in camelCase, with the same
// requests, results, retries and refusals.
import { MetadataClientError, errorFor } from "./errors.js";
import { LineSplitter } from "./lines.js";
import { watchChanges } from "./watching.js";
import { openStream, readBody, readExportLine, readHistoryPage, readImported, readPolicy, readPolicyUpdate, readRecord, readUsersPage, } from "./parsing.js";
import { sleep, updateDelay } from "./retrying.js";
export const DEFAULT_PATH = "/api/core/users/platform-metadata/";
export const NDJSON = "application/x-ndjson";
export const EVENT_STREAM = "text/event-stream";
/** A paginated answer: `for await (const item of paged)` asks for each page only when the
 * iteration gets there; `paged.pages()` gives the pages themselves, with their `next`. */
export class Paged {
    #fetchPage;
    #params;
    constructor(fetchPage, params) {
        this.#fetchPage = fetchPage;
        this.#params = params;
    }
    async *pages() {
        let params = this.#params;
        for (;;) {
            const page = await this.#fetchPage(params);
            yield page;
            if (page.next === null)
                return;
            // Only `next`'s query is taken, sent to this client's own URL: a `next` naming another
            // host (the address the server sees behind a proxy) never receives the token.
            const merged = new Map(params);
            for (const [name, value] of new URL(page.next, "http://next.invalid").searchParams) {
                merged.set(name, value);
            }
            const following = [...merged];
            if (JSON.stringify(following) === JSON.stringify(params)) {
                throw new MetadataClientError(200, { next: page.next }); // the same page again
            }
            params = following;
        }
    }
    async *[Symbol.asyncIterator]() {
        for await (const page of this.pages())
            yield* page.results;
    }
}
export class MetadataClient {
    /** The endpoint's URL, ending in `/`. */
    url;
    #fetch;
    #headers;
    constructor(options) {
        const inner = (options.path ?? DEFAULT_PATH).replace(/^\/+|\/+$/g, "");
        this.url = options.baseUrl.replace(/\/+$/, "") + (inner ? `/${inner}/` : "/");
        // Bound: a browser's `fetch` called as a method of another object throws "Illegal
        // invocation".
        const given = options.fetch ?? globalThis.fetch;
        this.#fetch = (input, init) => given(input, init);
        // Names are case-insensitive: one `Headers` keeps one value per name, the later winning.
        this.#headers = new Headers({ Accept: "application/json" });
        new Headers(options.headers).forEach((value, name) => this.#headers.set(name, value));
        if (options.token != null)
            this.#headers.set("Authorization", `Token ${options.token}`);
    }
    // --- the metadata (API.md) -----------------------------------------------------------
    /** The metadata of `username` (default: the caller) on `platformKey`. */
    async get(platformKey, options = {}) {
        const response = await this.#send("GET", "", platformKey, options);
        return readBody(response, (body) => readRecord(body, response.headers.get("ETag")));
    }
    /** Set the top-level keys of `metadata` and remove `deleteKeys` (deletes first). */
    async patch(platformKey, metadata = null, options = {}) {
        if (typeof options.deleteKeys === "string") {
            throw new TypeError("deleteKeys must be an iterable of keys, not one string");
        }
        const body = {};
        if (metadata !== null)
            body.metadata = metadata;
        const keys = [...(options.deleteKeys ?? [])];
        if (keys.length)
            body.delete_keys = keys;
        return this.#record("PATCH", "", platformKey, { ...options, json: body });
    }
    /** Replace the whole document (PUT). */
    async replace(platformKey, metadata, options = {}) {
        const body = { metadata };
        return this.#record("PUT", "", platformKey, { ...options, json: body });
    }
    /** Delete the document; with `purgeHistory`, every revision of it too. */
    async delete(platformKey, options = {}) {
        const params = options.purgeHistory ? [["history", "purge"]] : [];
        await this.#noContent("DELETE", "", platformKey, { ...options, params });
    }
    /** Read, change with `fn`, write back only if nothing changed meanwhile; repeat.
     *
     * `fn` gets a deep copy of the document and returns the new one (or edits its argument
     * and returns nothing); it may be async, and may run more than once: compute from the
     * argument only. A 412 (someone wrote in between) reads again after a short random wait
     * (up to 10 ms, doubling per try to at most 0.5 s); a 503 waits its `Retry-After` (at most
     * 5 s). After `retries` retries the last refusal is thrown; what `fn` throws ends `update`
     * at once, with nothing written. */
    async update(platformKey, fn, options = {}) {
        const { username, signal } = options;
        const retries = options.retries ?? 10;
        for (let attempt = 0;; attempt++) {
            try {
                const current = await this.get(platformKey, { username, signal });
                const given = structuredClone(current.metadata);
                const result = await fn(given);
                const document = result ?? given;
                return await this.replace(platformKey, document, { username, signal, ifMatch: current.etag });
            }
            catch (error) {
                const delay = updateDelay(error, attempt, retries);
                if (delay === null)
                    throw error;
                await sleep(delay, signal);
            }
        }
    }
    // --- the platform policy (EXTENSIONS.md section 1) ------------------------------------
    /** The platform's policy (a member's view leaves `privateKeys` out: `null`). */
    async getPolicy(platformKey, options = {}) {
        const response = await this.#send("GET", "policy/", platformKey, options);
        return readBody(response, (body) => readPolicy(body, response.headers.get("ETag")));
    }
    /** Replace the policy (tenant admins); `dryRun` reports what it would refuse, saves nothing. */
    async putPolicy(platformKey, policyDocument, options = {}) {
        const params = options.dryRun ? [["dry_run", "true"]] : [];
        const response = await this.#send("PUT", "policy/", platformKey, { ...options, params, json: policyDocument });
        return readBody(response, (body) => readPolicyUpdate(body, response.headers.get("ETag")));
    }
    /** Back to the default policy (tenant admins). */
    async deletePolicy(platformKey, options = {}) {
        await this.#noContent("DELETE", "policy/", platformKey, options);
    }
    // --- history and restore (EXTENSIONS.md section 2) ------------------------------------
    /** Every kept revision, newest first, fetched page by page (`limit` per page). */
    history(platformKey, options = {}) {
        const params = options.limit != null ? [["limit", String(options.limit)]] : [];
        return this.#paged("history/", platformKey, options, params, readHistoryPage);
    }
    /** Write revision `version`'s document as a new change. */
    async restore(platformKey, version, options = {}) {
        const body = { version };
        return this.#record("POST", "restore/", platformKey, { ...options, json: body });
    }
    // --- listing, export, import (EXTENSIONS.md section 4) ----------------------------------
    /** The platform's stored records by username, page by page (tenant admins). */
    listUsers(platformKey, options = {}) {
        const params = filterParam(options.filter);
        if (options.limit != null)
            params.push(["limit", String(options.limit)]);
        return this.#paged("users/", platformKey, { signal: options.signal }, params, readUsersPage);
    }
    /** Every matching record in one streamed NDJSON answer, read line by line as it arrives. */
    export(platformKey, options = {}) {
        const params = filterParam(options.filter);
        return this.#export(platformKey, { params, signal: options.signal, headers: { Accept: NDJSON } });
    }
    /** Replace each named user's document as a PUT would, all or nothing (tenant admins);
     * returns how many were imported. A refusal's `lines` names the bad lines. */
    async import(platformKey, records, options = {}) {
        const lines = [];
        for (const item of records) {
            const [username, metadata] = Array.isArray(item)
                ? item
                : [item.username, item.metadata];
            if (typeof username !== "string" || metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
                throw new TypeError("records must be records or [username, metadata] pairs");
            }
            lines.push(`${JSON.stringify({ username, metadata })}\n`);
        }
        const response = await this.#send("POST", "users/", platformKey, {
            signal: options.signal,
            headers: { "Content-Type": NDJSON },
            body: lines.join(""),
        });
        return readBody(response, readImported);
    }
    // --- live changes (EXTENSIONS.md section 3) ---------------------------------------------
    /** The changes of one user's metadata (or, with `allUsers`, every user's), as they happen,
     * for ever: a snapshot first (one user, no `lastEventId`), then every change, in version
     * order, none skipped, none twice, across reconnections and server restarts (it resumes
     * with `Last-Event-ID`). Ends when `signal` aborts or the loop breaks; refusals throw. */
    watch(platformKey, options = {}) {
        if (options.allUsers && options.username != null) {
            throw new TypeError("give either username or allUsers, not both");
        }
        const params = options.allUsers ? [["all_users", "true"]] : [];
        return watchChanges({
            platformKey,
            lastEventId: options.lastEventId ?? null,
            reconnect: options.reconnect ?? true,
            signal: options.signal ?? null,
            onState: options.onState ?? null,
            connect: (lastEventId, signal) => {
                const headers = { Accept: EVENT_STREAM, "Cache-Control": "no-store" };
                if (lastEventId)
                    headers["Last-Event-ID"] = lastEventId;
                return this.#send("GET", "events/", platformKey, { username: options.username, params, headers, signal });
            },
        });
    }
    // --- sending -----------------------------------------------------------------------------
    async #send(method, resource, platformKey, request) {
        return this.#sendQuery(method, resource, [...query(platformKey, request.username), ...(request.params ?? [])], request);
    }
    /** `#send` with the whole query given, `platform_key` included (a page after the first). */
    async #sendQuery(method, resource, params, request) {
        const headers = new Headers(this.#headers);
        for (const [name, value] of Object.entries(request.headers ?? {}))
            headers.set(name, value);
        if (request.ifMatch != null) {
            headers.set("If-Match", typeof request.ifMatch === "number" ? `"${request.ifMatch}"` : request.ifMatch);
        }
        const init = { method, headers, cache: "no-store" };
        if (request.json !== undefined) {
            headers.set("Content-Type", "application/json");
            init.body = JSON.stringify(request.json);
        }
        else if (request.body !== undefined) {
            init.body = request.body;
        }
        if (request.signal)
            init.signal = request.signal;
        return this.#fetch(`${this.url}${resource}?${new URLSearchParams(params).toString()}`, init);
    }
    async #record(method, resource, platformKey, request) {
        const response = await this.#send(method, resource, platformKey, request);
        return readBody(response, (body) => readRecord(body, response.headers.get("ETag")));
    }
    async #noContent(method, resource, platformKey, request) {
        const response = await this.#send(method, resource, platformKey, request);
        if (response.status !== 204)
            throw await errorFor(response);
    }
    #paged(resource, platformKey, options, params, read) {
        const first = [...query(platformKey, options.username), ...params];
        return new Paged(async (params) => {
            const response = await this.#sendQuery("GET", resource, params, { signal: options.signal });
            return readBody(response, read);
        }, first);
    }
    async *#export(platformKey, request) {
        const response = await this.#send("GET", "users/", platformKey, request);
        if (response.status !== 200)
            throw await errorFor(response);
        const reader = openStream(response, NDJSON);
        const decoder = new TextDecoder();
        const lines = new LineSplitter();
        try {
            for (;;) {
                const { value, done } = await reader.read();
                const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
                for (const line of lines.push(text)) {
                    if (line.trim())
                        yield readExportLine(line, response);
                }
                if (done)
                    break;
            }
            const rest = lines.rest();
            if (rest.trim())
                yield readExportLine(rest, response);
        }
        finally {
            reader.cancel().catch(() => { });
        }
    }
}
function query(platformKey, username) {
    return username != null ? [["platform_key", platformKey], ["username", username]] : [["platform_key", platformKey]];
}
function filterParam(filter) {
    if (filter == null)
        return [];
    if (typeof filter !== "object" || Array.isArray(filter)) {
        throw new TypeError("filter must be an object of top-level keys to values");
    }
    return [["filter", JSON.stringify(filter)]];
}
