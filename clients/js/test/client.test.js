// MetadataClient against a fake `fetch`: the requests it builds, how it reads answers and
// refusals, update's retries, paging, export's lines and watch's reconnections. The real
// server: integration.test.js.

import assert from "node:assert/strict";
import { test } from "node:test";

import { MetadataClient, MetadataClientError } from "../dist/index.js";

const RECORD = { username: "ann", platform_key: "acme", metadata: { a: 1 }, created_at: "2026-01-01T00:00:00Z", updated_at: "2026-01-02T00:00:00.123456Z" };
const json = (body, status = 200, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });

/** A client whose fetch answers with `answer(request, n)` and records every request. */
function fake(answer, options = {}) {
  const sent = [];
  const client = new MetadataClient({
    baseUrl: "https://api.example/",
    token: "t0k",
    ...options,
    fetch: async (url, init = {}) => {
      const request = { url: new URL(url), method: init.method, headers: new Headers(init.headers), body: init.body, signal: init.signal };
      sent.push(request);
      return answer(request, sent.length - 1);
    },
  });
  return { client, sent };
}

test("requests carry the endpoint's URL, the query, the token and the If-Match given", async () => {
  const { client, sent } = fake(() => json(RECORD, 200, { ETag: '"4"' }));
  const record = await client.patch("acme corp", { theme: "dark" }, { deleteKeys: ["old"], username: "ann", ifMatch: 3 });
  assert.deepEqual(record, { username: "ann", platformKey: "acme", metadata: { a: 1 }, createdAt: RECORD.created_at, updatedAt: RECORD.updated_at, etag: '"4"', version: 4 });
  const [patch] = sent;
  assert.equal(patch.method, "PATCH");
  assert.equal(patch.url.href, "https://api.example/api/core/users/platform-metadata/?platform_key=acme+corp&username=ann");
  assert.equal(patch.headers.get("Authorization"), "Token t0k");
  assert.equal(patch.headers.get("If-Match"), '"3"');
  assert.equal(patch.headers.get("Content-Type"), "application/json");
  assert.deepEqual(JSON.parse(patch.body), { metadata: { theme: "dark" }, delete_keys: ["old"] });
  await client.replace("acme", { b: 2 }, { ifMatch: 'W/"9", "10"' });
  assert.equal(sent[1].headers.get("If-Match"), 'W/"9", "10"');
  assert.deepEqual(JSON.parse(sent[1].body), { metadata: { b: 2 } });
  assert.equal(sent[1].url.search, "?platform_key=acme");
});

test("headers given override the defaults by name, any case; a token overrides them", async () => {
  const { client, sent } = fake(() => json(RECORD, 200, { ETag: '"1"' }), { headers: { accept: "application/json; q=1", authorization: "Bearer x", "X-Trace": "7" } });
  await client.get("acme");
  assert.equal(sent[0].headers.get("Accept"), "application/json; q=1");
  assert.equal(sent[0].headers.get("Authorization"), "Token t0k");
  assert.equal(sent[0].headers.get("X-Trace"), "7");
});

test("path, headers and no token: Bearer credentials of the caller's own", async () => {
  const { client, sent } = fake(() => new Response(null, { status: 204 }), {
    baseUrl: "http://h:1",
    token: null,
    path: "meta",
    headers: { Authorization: "Bearer abc" },
  });
  await client.delete("acme", { purgeHistory: true });
  await client.deletePolicy("acme", { ifMatch: "*" });
  assert.equal(sent[0].url.href, "http://h:1/meta/?platform_key=acme&history=purge");
  assert.equal(sent[0].headers.get("Authorization"), "Bearer abc");
  assert.equal(sent[1].url.pathname, "/meta/policy/");
  assert.equal(sent[1].headers.get("If-Match"), "*");
});

test("a refusal is one MetadataClientError with the status, the parsed body and the headers", async () => {
  const { client } = fake(() => json({ detail: "Precondition failed: the metadata changed since the given ETag." }, 412, { ETag: '"8"' }));
  const error = await client.get("acme").catch((caught) => caught);
  assert.ok(error instanceof MetadataClientError && error instanceof Error);
  assert.equal(error.status, 412);
  assert.deepEqual(error.body, { detail: "Precondition failed: the metadata changed since the given ETag." });
  assert.equal(error.currentEtag, '"8"');
  assert.equal(error.message, "412: Precondition failed: the metadata changed since the given ETag.");
  const forbidden = new MetadataClientError(403, { error: "Only tenant admins can change these keys", keys: ["plan", 3] });
  assert.deepEqual(forbidden.keys, ["plan"]);
  const refused = new MetadataClientError(400, { lines: { 2: ["bad"], x: ["skipped"] } });
  assert.deepEqual([...refused.lines], [[2, ["bad"]]]);
  assert.equal(new MetadataClientError(503, null, { "Retry-After": "3" }).retryAfter, 3);
  assert.equal(new MetadataClientError(413, { limit: "max_document_bytes" }).limit, "max_document_bytes");
});

test("a body that is not JSON is null; a 200 off the contract is an error with its status", async () => {
  const answers = [
    new Response("<html>bad gateway</html>", { status: 502 }),
    json({ ...RECORD, platform_key: 7 }, 200, { ETag: '"1"' }),
    json(RECORD),
    new Response("not json", { status: 200, headers: { ETag: '"1"' } }),
  ];
  const { client } = fake((_, n) => answers[n]);
  for (const [status, body] of [[502, null], [200, { ...RECORD, platform_key: 7 }], [200, RECORD], [200, null]]) {
    const error = await client.get("acme").catch((caught) => caught);
    assert.ok(error instanceof MetadataClientError);
    assert.deepEqual([error.status, error.body], [status, body]);
  }
});

test("update retries a 412 with a fresh read, and writes with If-Match of what it read", async () => {
  let version = 1;
  const { client, sent } = fake((request, n) => {
    if (request.method === "GET") return json({ ...RECORD, metadata: { n: version } }, 200, { ETag: `"${version}"` });
    if (n < 4) {
      version++; // someone else wrote in between
      return json({ detail: "changed" }, 412, { ETag: `"${version}"` });
    }
    return json({ ...RECORD, metadata: JSON.parse(request.body).metadata }, 200, { ETag: `"${version + 1}"` });
  });
  const seen = [];
  const record = await client.update("acme", (metadata) => {
    seen.push(structuredClone(metadata));
    metadata.n += 10; // edited in place, nothing returned
  });
  assert.deepEqual(seen, [{ n: 1 }, { n: 2 }, { n: 3 }]);
  assert.deepEqual(record.metadata, { n: 13 });
  assert.deepEqual(sent.filter((r) => r.method === "PUT").map((r) => r.headers.get("If-Match")), ['"1"', '"2"', '"3"']);
});

test("update gives up after its retries with the last 412, and stops at once when fn throws", async () => {
  const { client, sent } = fake((request) =>
    request.method === "GET" ? json(RECORD, 200, { ETag: '"1"' }) : json({ detail: "changed" }, 412, { ETag: '"2"' }),
  );
  const error = await client.update("acme", (m) => ({ ...m, x: 1 }), { retries: 2 }).catch((caught) => caught);
  assert.equal(error.status, 412);
  assert.equal(sent.filter((r) => r.method === "PUT").length, 3);
  const before = sent.length;
  await assert.rejects(client.update("acme", () => { throw new RangeError("no"); }), RangeError);
  assert.deepEqual(sent.slice(before).map((r) => r.method), ["GET"]);
});

test("pages follow next by its query alone, to the client's own URL, and stop on the last", async () => {
  const page = (n) => ({
    next: n < 3 ? `http://internal:9000/elsewhere/?platform_key=acme&cursor=c${n}&limit=1` : null,
    results: [{ version: 4 - n, operation: "put", actor: "ann", at: "2026-01-01T00:00:00Z", metadata: {}, changed_keys: ["k"] }],
  });
  const { client, sent } = fake((_, n) => json(page(n + 1)));
  const versions = [];
  for await (const revision of client.history("acme", { username: "ann", limit: 1 })) versions.push(revision.version);
  assert.deepEqual(versions, [3, 2, 1]);
  assert.ok(sent.every((r) => r.url.origin === "https://api.example" && r.headers.get("Authorization") === "Token t0k"));
  assert.deepEqual(sent.map((r) => r.url.search), [
    "?platform_key=acme&username=ann&limit=1",
    "?platform_key=acme&username=ann&limit=1&cursor=c1",
    "?platform_key=acme&username=ann&limit=1&cursor=c2",
  ]);
});

test("a next naming the same page again is an error, not an endless loop", async () => {
  const { client } = fake(() => json({ next: "https://api.example/x/?platform_key=acme", results: [] }));
  const error = await (async () => {
    for await (const _ of client.listUsers("acme")) void _;
  })().catch((caught) => caught);
  assert.equal(error.status, 200);
});

test("export reads NDJSON lines however the bytes are split, multibyte characters too", async () => {
  const lines = [{ ...RECORD, metadata: { s: "é\u2028😀" } }, { ...RECORD, username: "bob" }].map((r) => JSON.stringify(r)).join("\r\n") + "\n";
  const bytes = new TextEncoder().encode(lines);
  for (let at = 0; at <= bytes.length; at += 1) {
    const { client, sent } = fake(() => new Response(stream([bytes.slice(0, at), bytes.slice(at)]), { headers: { "Content-Type": "application/x-ndjson" } }));
    const records = [];
    for await (const record of client.export("acme", { filter: { plan: "pro" } })) records.push(record);
    assert.deepEqual(records.map((r) => [r.username, r.metadata]), [["ann", { s: "é\u2028😀" }], ["bob", { a: 1 }]], `split at ${at}`);
    assert.equal(sent[0].headers.get("Accept"), "application/x-ndjson");
    assert.equal(sent[0].url.searchParams.get("filter"), '{"plan":"pro"}');
  }
});

test("import sends one JSON line per record or pair, and returns the count", async () => {
  const { client, sent } = fake(() => json({ imported: 2 }));
  const listed = { username: "ann", platformKey: "acme", metadata: { a: 1 }, createdAt: null, updatedAt: null };
  assert.equal(await client.import("acme", [listed, ["bob", { b: 2 }]]), 2);
  assert.equal(sent[0].headers.get("Content-Type"), "application/x-ndjson");
  assert.equal(sent[0].body, '{"username":"ann","metadata":{"a":1}}\n{"username":"bob","metadata":{"b":2}}\n');
  await assert.rejects(client.import("acme", [["bob", [1]]]), TypeError);
});

function stream(chunks) {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk);
      controller.close();
    },
  });
}

const change = (version, id) =>
  `id: ${id}\nevent: ${version ? "change" : "snapshot"}\ndata: ${JSON.stringify({ ...RECORD, metadata: { v: "é".repeat(version) }, version, actor: version ? "ann" : null, operation: version ? "put" : null })}\n\n`;
const sse = (text, split = 7) => {
  const bytes = new TextEncoder().encode(text);
  const chunks = [];
  for (let at = 0; at < bytes.length; at += split) chunks.push(bytes.slice(at, at + split));
  return new Response(stream(chunks), { headers: { "Content-Type": "text/event-stream; charset=utf-8" } });
};

test("watch reconnects when a stream ends, resuming with Last-Event-ID, nothing twice", async () => {
  const answers = [
    () => sse(`: hi\n${change(0, "v.0")}${change(1, "v.1")}`, 5),
    () => new Response(JSON.stringify({ detail: "busy" }), { status: 503, headers: { "Retry-After": "0" } }),
    () => { throw new TypeError("fetch failed"); },
    () => sse(`retry: 10\n${change(2, "v.2")}id: v.3\n\n`, 3),
    () => sse(change(4, "v.4"), 1),
  ];
  const { client, sent } = fake((_, n) => answers[n]());
  const states = [];
  const seen = [];
  for await (const item of client.watch("acme", { username: "ann", onState: (state) => states.push(state) })) {
    seen.push([item.event, item.id, item.version, item.metadata.v, item.etag]);
    if (item.version === 4) break;
  }
  assert.deepEqual(seen, [
    ["snapshot", "v.0", 0, "", '"0"'],
    ["change", "v.1", 1, "é", '"1"'],
    ["change", "v.2", 2, "éé", '"2"'],
    ["change", "v.4", 4, "éééé", '"4"'],
  ]);
  assert.deepEqual(sent.map((r) => r.headers.get("Last-Event-ID")), [null, "v.1", "v.1", "v.1", "v.3"]);
  assert.ok(sent.every((r) => r.headers.get("Accept") === "text/event-stream" && r.url.pathname.endsWith("/events/")));
  assert.deepEqual(states, ["connecting", "open", "reconnecting", "reconnecting", "reconnecting", "open", "reconnecting", "open"]);
  assert.ok(sent.at(-1).signal.aborted, "breaking out of the loop closes the connection");
});

test("watch throws a refusal instead of retrying it, and resumes from the id it was given", async () => {
  const { client, sent } = fake(() => json({ detail: "Invalid token." }, 401));
  const error = await (async () => {
    for await (const _ of client.watch("acme", { allUsers: true, lastEventId: "s.9" })) void _;
  })().catch((caught) => caught);
  assert.equal(error.status, 401);
  assert.equal(sent.length, 1);
  assert.equal(sent[0].headers.get("Last-Event-ID"), "s.9");
  assert.equal(sent[0].url.searchParams.get("all_users"), "true");
  assert.throws(() => client.watch("acme", { allUsers: true, username: "ann" }), TypeError);
});

test("watch ends when its signal aborts, while reading or while waiting to reconnect", async () => {
  const controller = new AbortController();
  const { client, sent } = fake((request) =>
    sent.length === 1
      ? sse(change(0, "v.0"))
      : new Response(new ReadableStream({ start() {} }), { headers: { "Content-Type": "text/event-stream" } }),
  );
  const seen = [];
  for await (const item of client.watch("acme", { signal: controller.signal })) {
    seen.push(item.id);
    setTimeout(() => controller.abort(), 300); // during the wait, or in the second connection
  }
  assert.deepEqual(seen, ["v.0"]);
  assert.ok(sent.every((r) => r.signal.aborted));
});

test("an event whose data is off the contract ends the watch with an error, not silently", async () => {
  const { client } = fake(() => sse('id: v.1\nevent: change\ndata: {"username": 1}\n\n'));
  const error = await (async () => {
    for await (const _ of client.watch("acme")) void _;
  })().catch((caught) => caught);
  assert.ok(error instanceof MetadataClientError);
  assert.equal(error.status, 200);
  assert.equal(error.body.id, "v.1");
});
