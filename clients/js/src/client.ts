// `MetadataClient`: the metadata API over `fetch`, for browsers and Node. The Python client's
// methods (starlette_platform_metadata/client, docs/client.md) in camelCase, with the same
// requests, results, retries and refusals.

import { MetadataClientError, errorFor } from "./errors.js";
import { LineSplitter } from "./lines.js";
import type { ChangeIterable, WatchState } from "./watching.js";
import { watchChanges } from "./watching.js";
import type {
  JsonObject,
  ListedRecord,
  MetadataRecord,
  Page,
  PlatformPolicy,
  PolicyUpdate,
  Revision,
} from "./models.js";
import {
  openStream,
  readBody,
  readExportLine,
  readHistoryPage,
  readImported,
  readPolicy,
  readPolicyUpdate,
  readRecord,
  readUsersPage,
} from "./parsing.js";
import { sleep, updateDelay } from "./retrying.js";
import type * as wire from "./wire.js";

export const DEFAULT_PATH = "/api/core/users/platform-metadata/";
export const NDJSON = "application/x-ndjson";
export const EVENT_STREAM = "text/event-stream";

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

/** One request's parts besides the method, the resource and the platform. */
interface Call {
  params?: Params;
  username?: string | null | undefined;
  headers?: Record<string, string>;
  json?: unknown;
  body?: string;
  ifMatch?: IfMatch | null | undefined;
  signal?: AbortSignal | null | undefined;
}

/** A paginated answer: `for await (const item of paged)` asks for each page only when the
 * iteration gets there; `paged.pages()` gives the pages themselves, with their `next`. */
export class Paged<T> implements AsyncIterable<T> {
  readonly #fetchPage: (params: Params) => Promise<Page<T>>;
  readonly #params: Params;

  constructor(fetchPage: (params: Params) => Promise<Page<T>>, params: Params) {
    this.#fetchPage = fetchPage;
    this.#params = params;
  }

  async *pages(): AsyncGenerator<Page<T>, void, undefined> {
    let params = this.#params;
    for (;;) {
      const page = await this.#fetchPage(params);
      yield page;
      if (page.next === null) return;
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

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for await (const page of this.pages()) yield* page.results;
  }
}

export class MetadataClient {
  /** The endpoint's URL, ending in `/`. */
  readonly url: string;
  readonly #fetch: typeof fetch;
  readonly #headers: Headers;

  constructor(options: ClientOptions) {
    const inner = (options.path ?? DEFAULT_PATH).replace(/^\/+|\/+$/g, "");
    this.url = options.baseUrl.replace(/\/+$/, "") + (inner ? `/${inner}/` : "/");
    // Bound: a browser's `fetch` called as a method of another object throws "Illegal
    // invocation".
    const given = options.fetch ?? globalThis.fetch;
    this.#fetch = (input, init) => given(input, init);
    // Names are case-insensitive: one `Headers` keeps one value per name, the later winning.
    this.#headers = new Headers({ Accept: "application/json" });
    new Headers(options.headers).forEach((value, name) => this.#headers.set(name, value));
    if (options.token != null) this.#headers.set("Authorization", `Token ${options.token}`);
  }

  // --- the metadata (API.md) -----------------------------------------------------------

  /** The metadata of `username` (default: the caller) on `platformKey`. */
  async get(platformKey: string, options: UserOptions = {}): Promise<MetadataRecord> {
    const response = await this.#send("GET", "", platformKey, options);
    return readBody(response, (body) => readRecord(body, response.headers.get("ETag")));
  }

  /** Set the top-level keys of `metadata` and remove `deleteKeys` (deletes first). */
  async patch(
    platformKey: string,
    metadata: JsonObject | null = null,
    options: PatchOptions = {},
  ): Promise<MetadataRecord> {
    if (typeof options.deleteKeys === "string") {
      throw new TypeError("deleteKeys must be an iterable of keys, not one string");
    }
    const body: wire.PatchRequest = {};
    if (metadata !== null) body.metadata = metadata;
    const keys = [...(options.deleteKeys ?? [])];
    if (keys.length) body.delete_keys = keys;
    return this.#record("PATCH", "", platformKey, { ...options, json: body });
  }

  /** Replace the whole document (PUT). */
  async replace(platformKey: string, metadata: JsonObject, options: WriteOptions = {}): Promise<MetadataRecord> {
    const body: wire.PutRequest = { metadata };
    return this.#record("PUT", "", platformKey, { ...options, json: body });
  }

  /** Delete the document; with `purgeHistory`, every revision of it too. */
  async delete(platformKey: string, options: DeleteOptions = {}): Promise<void> {
    const params: Params = options.purgeHistory ? [["history", "purge"]] : [];
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
  async update(
    platformKey: string,
    fn: (metadata: JsonObject) => Updated | Promise<Updated>,
    options: UpdateOptions = {},
  ): Promise<MetadataRecord> {
    const { username, signal } = options;
    const retries = options.retries ?? 10;
    for (let attempt = 0; ; attempt++) {
      try {
        const current = await this.get(platformKey, { username, signal });
        const given = structuredClone(current.metadata);
        const result = await fn(given);
        const document = result ?? given;
        return await this.replace(platformKey, document, { username, signal, ifMatch: current.etag });
      } catch (error) {
        const delay = updateDelay(error, attempt, retries);
        if (delay === null) throw error;
        await sleep(delay, signal);
      }
    }
  }

  // --- the platform policy (EXTENSIONS.md section 1) ------------------------------------

  /** The platform's policy (a member's view leaves `privateKeys` out: `null`). */
  async getPolicy(platformKey: string, options: CallOptions = {}): Promise<PlatformPolicy> {
    const response = await this.#send("GET", "policy/", platformKey, options);
    return readBody(response, (body) => readPolicy(body, response.headers.get("ETag")));
  }

  /** Replace the policy (tenant admins); `dryRun` reports what it would refuse, saves nothing. */
  async putPolicy(
    platformKey: string,
    policyDocument: wire.PolicyPutRequest,
    options: PolicyOptions = {},
  ): Promise<PolicyUpdate> {
    const params: Params = options.dryRun ? [["dry_run", "true"]] : [];
    const response = await this.#send("PUT", "policy/", platformKey, { ...options, params, json: policyDocument });
    return readBody(response, (body) => readPolicyUpdate(body, response.headers.get("ETag")));
  }

  /** Back to the default policy (tenant admins). */
  async deletePolicy(platformKey: string, options: Omit<PolicyOptions, "dryRun"> = {}): Promise<void> {
    await this.#noContent("DELETE", "policy/", platformKey, options);
  }

  // --- history and restore (EXTENSIONS.md section 2) ------------------------------------

  /** Every kept revision, newest first, fetched page by page (`limit` per page). */
  history(platformKey: string, options: HistoryOptions = {}): Paged<Revision> {
    const params: Params = options.limit != null ? [["limit", String(options.limit)]] : [];
    return this.#paged("history/", platformKey, options, params, readHistoryPage);
  }

  /** Write revision `version`'s document as a new change. */
  async restore(platformKey: string, version: number, options: WriteOptions = {}): Promise<MetadataRecord> {
    const body: wire.RestoreRequest = { version };
    return this.#record("POST", "restore/", platformKey, { ...options, json: body });
  }

  // --- listing, export, import (EXTENSIONS.md section 4) ----------------------------------

  /** The platform's stored records by username, page by page (tenant admins). */
  listUsers(platformKey: string, options: ListOptions = {}): Paged<ListedRecord> {
    const params = filterParam(options.filter);
    if (options.limit != null) params.push(["limit", String(options.limit)]);
    return this.#paged("users/", platformKey, { signal: options.signal }, params, readUsersPage);
  }

  /** Every matching record in one streamed NDJSON answer, read line by line as it arrives. */
  export(platformKey: string, options: Omit<ListOptions, "limit"> = {}): AsyncGenerator<ListedRecord, void, undefined> {
    const params = filterParam(options.filter);
    return this.#export(platformKey, { params, signal: options.signal, headers: { Accept: NDJSON } });
  }

  /** Replace each named user's document as a PUT would, all or nothing (tenant admins);
   * returns how many were imported. A refusal's `lines` names the bad lines. */
  async import(platformKey: string, records: Iterable<ImportItem>, options: CallOptions = {}): Promise<number> {
    const lines: string[] = [];
    for (const item of records) {
      const [username, metadata] = Array.isArray(item)
        ? (item as readonly [string, JsonObject])
        : [(item as ListedRecord).username, (item as ListedRecord).metadata];
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
  watch(platformKey: string, options: WatchOptions = {}): ChangeIterable {
    if (options.allUsers && options.username != null) {
      throw new TypeError("give either username or allUsers, not both");
    }
    const params: Params = options.allUsers ? [["all_users", "true"]] : [];
    return watchChanges({
      platformKey,
      lastEventId: options.lastEventId ?? null,
      reconnect: options.reconnect ?? true,
      signal: options.signal ?? null,
      onState: options.onState ?? null,
      connect: (lastEventId, signal) => {
        const headers: Record<string, string> = { Accept: EVENT_STREAM, "Cache-Control": "no-store" };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        return this.#send("GET", "events/", platformKey, { username: options.username, params, headers, signal });
      },
    });
  }

  // --- sending -----------------------------------------------------------------------------

  async #send(method: string, resource: string, platformKey: string, request: Call): Promise<Response> {
    return this.#sendQuery(method, resource, [...query(platformKey, request.username), ...(request.params ?? [])], request);
  }

  /** `#send` with the whole query given, `platform_key` included (a page after the first). */
  async #sendQuery(method: string, resource: string, params: Params, request: Call): Promise<Response> {
    const headers = new Headers(this.#headers);
    for (const [name, value] of Object.entries(request.headers ?? {})) headers.set(name, value);
    if (request.ifMatch != null) {
      headers.set("If-Match", typeof request.ifMatch === "number" ? `"${request.ifMatch}"` : request.ifMatch);
    }
    const init: RequestInit = { method, headers, cache: "no-store" };
    if (request.json !== undefined) {
      headers.set("Content-Type", "application/json");
      init.body = JSON.stringify(request.json);
    } else if (request.body !== undefined) {
      init.body = request.body;
    }
    if (request.signal) init.signal = request.signal;
    return this.#fetch(`${this.url}${resource}?${new URLSearchParams(params).toString()}`, init);
  }

  async #record(method: string, resource: string, platformKey: string, request: Call): Promise<MetadataRecord> {
    const response = await this.#send(method, resource, platformKey, request);
    return readBody(response, (body) => readRecord(body, response.headers.get("ETag")));
  }

  async #noContent(method: string, resource: string, platformKey: string, request: Call): Promise<void> {
    const response = await this.#send(method, resource, platformKey, request);
    if (response.status !== 204) throw await errorFor(response);
  }

  #paged<T>(
    resource: string,
    platformKey: string,
    options: UserOptions,
    params: Params,
    read: (body: unknown) => Page<T>,
  ): Paged<T> {
    const first = [...query(platformKey, options.username), ...params];
    return new Paged(async (params) => {
      const response = await this.#sendQuery("GET", resource, params, { signal: options.signal });
      return readBody(response, read);
    }, first);
  }

  async *#export(platformKey: string, request: Call): AsyncGenerator<ListedRecord, void, undefined> {
    const response = await this.#send("GET", "users/", platformKey, request);
    if (response.status !== 200) throw await errorFor(response);
    const reader = openStream(response, NDJSON);
    const decoder = new TextDecoder();
    const lines = new LineSplitter();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
        for (const line of lines.push(text)) {
          if (line.trim()) yield readExportLine(line, response);
        }
        if (done) break;
      }
      const rest = lines.rest();
      if (rest.trim()) yield readExportLine(rest, response);
    } finally {
      reader.cancel().catch(() => {});
    }
  }
}

function query(platformKey: string, username: string | null | undefined): Params {
  return username != null ? [["platform_key", platformKey], ["username", username]] : [["platform_key", platformKey]];
}

function filterParam(filter: JsonObject | null | undefined): Params {
  if (filter == null) return [];
  if (typeof filter !== "object" || Array.isArray(filter)) {
    throw new TypeError("filter must be an object of top-level keys to values");
  }
  return [["filter", JSON.stringify(filter)]];
}
