// The client against the real thing: `python -m example_host serve` on a free port and a new
// SQLite file, started (and restarted) here as an operator would. `$PYTHON` names the Python
// with the package installed (tests/test_client_js.py passes its own); the checkout's root is
// put on PYTHONPATH.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { MetadataClient, MetadataClientError } from "../dist/index.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const PYTHON = process.env.PYTHON || "python3";
const PLATFORM = "acme-corp";
const folder = mkdtempSync(join(tmpdir(), "client-js-"));
const database = `sqlite:///${join(folder, "host.db")}`;
const env = { ...process.env, PYTHONPATH: ROOT };
delete env.DATABASE_URL;

let host; // {base, proc, printed}
let tokens; // the demo users': john_doe (member), acme_admin (tenant admin)

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function serve(port) {
  // The server keeps idle connections longer than node's fetch does (4 s), so a request is
  // never sent on a connection the server is closing at that moment.
  const args = ["serve", "--port", String(port), "--database", database, "--no-access-log", "--timeout-keep-alive", "60"];
  const proc = spawn(PYTHON, ["-m", "example_host", ...args], {
    cwd: folder,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let printed = "";
  let errors = "";
  proc.stdout.on("data", (chunk) => (printed += chunk));
  proc.stderr.on("data", (chunk) => (errors += chunk));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`serve exited ${proc.exitCode}: ${errors}`);
    try {
      await fetch(`${base}/api/core/users/platform-metadata/`);
      return { base, proc, printed };
    } catch {
      if (Date.now() > deadline) throw new Error(`serve did not answer: ${errors}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** SIGINT, as an operator stops it; SIGKILL if it has not exited 20 s later. */
async function stop(proc) {
  if (proc.exitCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill("SIGINT");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
  await exited;
  clearTimeout(timer);
}

/** A command of the host's CLI on the test's database; its last line of output. */
function cli(...args) {
  const result = spawnSync(PYTHON, ["-m", "example_host", ...args, "--database", database], { cwd: folder, env, encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout.trim().split("\n").at(-1);
}

const client = (token, options = {}) => new MetadataClient({ baseUrl: host.base, token, ...options });

before(async () => {
  host = await serve(await freePort());
  tokens = Object.fromEntries([...host.printed.matchAll(/^\s+(\w+)\s.*token ([0-9a-f]{40})$/gm)].map((m) => [m[1], m[2]]));
  assert.ok(tokens.john_doe && tokens.acme_admin, host.printed);
});

after(async () => {
  if (host) await stop(host.proc);
  rmSync(folder, { recursive: true, force: true });
});

test("the metadata calls: get, patch, replace, delete, with ETags and conditions", async () => {
  const john = client(tokens.john_doe);
  const user = cli("add-user", "calls_user", "--platform", PLATFORM);
  const own = client(user);
  const empty = await own.get(PLATFORM);
  assert.deepEqual(empty, { username: "calls_user", platformKey: PLATFORM, metadata: {}, createdAt: null, updatedAt: null, etag: '"0"', version: 0 });
  const first = await own.patch(PLATFORM, { theme: "dark", beta: true, nested: { list: [1, 2.5, null, "é"] } }, { ifMatch: 0 });
  assert.equal(first.version, 1);
  assert.match(first.createdAt, /^\d{4}-\d\d-\d\dT.*Z$/);
  const patched = await own.patch(PLATFORM, null, { deleteKeys: ["beta", "missing"], ifMatch: first.etag });
  assert.deepEqual(patched.metadata, { theme: "dark", nested: { list: [1, 2.5, null, "é"] } });
  const stale = await own.replace(PLATFORM, { theme: "light" }, { ifMatch: first.etag }).catch((error) => error);
  assert.ok(stale instanceof MetadataClientError);
  assert.equal(stale.status, 412);
  assert.equal(stale.currentEtag, '"2"');
  assert.match(stale.detail, /^Precondition failed/);
  const replaced = await own.replace(PLATFORM, { theme: "light" }, { ifMatch: patched.version });
  assert.deepEqual([replaced.metadata, replaced.version], [{ theme: "light" }, 3]);
  const admin = client(tokens.acme_admin);
  assert.deepEqual((await admin.get(PLATFORM, { username: "calls_user" })).metadata, { theme: "light" });
  assert.equal(await own.delete(PLATFORM, { ifMatch: "*" }), undefined);
  assert.deepEqual((await own.get(PLATFORM)).metadata, {});
  const other = await john.get(PLATFORM, { username: "calls_user" }).catch((error) => error);
  assert.deepEqual([other.status, other.body], [403, { error: "Only tenant admins can access other users' metadata" }]);
  const unknown = await john.get("no-such-platform").catch((error) => error);
  assert.deepEqual([unknown.status, unknown.body], [404, { error: "Platform not found" }]);
  const invalid = await client("0".repeat(40)).get(PLATFORM).catch((error) => error);
  assert.deepEqual([invalid.status, invalid.body, invalid.headers.get("WWW-Authenticate")], [401, { detail: "Invalid token." }, "Token"]);
  const bad = await own.patch(PLATFORM, null).catch((error) => error);
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.errors, { non_field_errors: ["Provide 'metadata' to update or 'delete_keys' to remove keys."] });
});

test("the policy: dry run, put, a member's refusal naming the keys, delete", async () => {
  const admin = client(tokens.acme_admin);
  const member = client(cli("add-user", "policy_user", "--platform", PLATFORM));
  await member.patch(PLATFORM, { plan: "free" });
  const document = { protected_keys: ["plan"], private_keys: ["billing_*"], schema: { type: "object", required: ["plan"] } };
  const dry = await admin.putPolicy(PLATFORM, document, { dryRun: true });
  assert.equal(dry.policy.version, 0);
  assert.equal(typeof dry.violatingDocuments, "number");
  assert.equal((await admin.getPolicy(PLATFORM)).version, 0, "a dry run saves nothing");
  const saved = await admin.putPolicy(PLATFORM, document, { ifMatch: dry.policy.etag });
  assert.deepEqual([saved.policy.version, saved.policy.protectedKeys, saved.policy.privateKeys], [1, ["plan"], ["billing_*"]]);
  assert.equal(saved.policy.etag, '"1"');
  const seen = await member.getPolicy(PLATFORM);
  assert.deepEqual([seen.protectedKeys, seen.privateKeys, seen.schema], [["plan"], null, document.schema]);
  const refused = await member.patch(PLATFORM, { plan: "pro" }).catch((error) => error);
  assert.deepEqual([refused.status, refused.keys], [403, ["plan"]]);
  assert.deepEqual((await member.replace(PLATFORM, { theme: "x" })).metadata, { plan: "free", theme: "x" }, "a member's PUT keeps the protected keys");
  const notAdmin = await member.deletePolicy(PLATFORM).catch((error) => error);
  assert.deepEqual([notAdmin.status, notAdmin.body], [403, { error: "Only tenant admins can change the platform policy" }]);
  await admin.deletePolicy(PLATFORM, { ifMatch: saved.policy.etag });
  assert.equal((await admin.getPolicy(PLATFORM)).schema, null);
});

test("history pages, restore, and the refusal of a revision not kept", async () => {
  const user = cli("add-user", "history_user", "--platform", PLATFORM);
  const own = client(user);
  for (const n of [1, 2, 3]) await own.replace(PLATFORM, { n });
  const revisions = [];
  for await (const revision of own.history(PLATFORM, { limit: 1 })) revisions.push(revision);
  assert.deepEqual(revisions.map((r) => [r.version, r.operation, r.actor, r.metadata, r.changedKeys]), [
    [3, "put", "history_user", { n: 3 }, ["n"]],
    [2, "put", "history_user", { n: 2 }, ["n"]],
    [1, "put", "history_user", { n: 1 }, ["n"]],
  ]);
  const admin = client(tokens.acme_admin);
  const restored = await admin.restore(PLATFORM, 1, { username: "history_user", ifMatch: 3 });
  assert.deepEqual([restored.version, restored.metadata], [4, { n: 1 }]);
  const [newest] = await first(admin.history(PLATFORM, { username: "history_user" }), 1);
  assert.deepEqual([newest.operation, newest.actor], ["restore", "acme_admin"]);
  const missing = await own.restore(PLATFORM, 99).catch((error) => error);
  assert.deepEqual([missing.status, missing.body], [404, { error: "Revision not found" }]);
});

test("listing with a filter, export, import and an import's refused lines", async () => {
  const platform = "listing";
  cli("add-platform", platform);
  const admin = client(cli("add-user", "boss", "--platform", platform, "--admin"));
  const names = ["u1", "u2", "u3"];
  for (const name of names) cli("add-user", name, "--platform", platform);
  await admin.import(platform, [["u1", { plan: "pro" }], ["u2", { plan: "free" }], ["u3", { plan: "pro", n: 7 }]]);
  const pro = [];
  for await (const record of admin.listUsers(platform, { filter: { plan: "pro" }, limit: 1 })) pro.push(record.username);
  assert.deepEqual(pro, ["u1", "u3"]);
  const exported = [];
  for await (const record of admin.export(platform)) exported.push(record);
  assert.deepEqual(exported.map((r) => [r.username, r.metadata]), [["u1", { plan: "pro" }], ["u2", { plan: "free" }], ["u3", { plan: "pro", n: 7 }]]);
  assert.equal(await admin.import(platform, exported.map((r) => ({ ...r, metadata: { ...r.metadata, back: true } }))), 3);
  assert.deepEqual((await admin.get(platform, { username: "u2" })).metadata, { plan: "free", back: true });
  const refused = await admin.import(platform, [["u1", {}], ["stranger", {}]]).catch((error) => error);
  assert.equal(refused.status, 400);
  assert.deepEqual([...refused.lines.keys()], [2]);
  const tooMany = Object.fromEntries(Array.from({ length: 513 }, (_, n) => [`k${n}`, n])); // max_keys is 512
  const filter = await first(admin.listUsers(platform, { filter: tooMany }), 1).catch((error) => error);
  assert.ok(filter instanceof MetadataClientError && filter.status === 400 && "filter" in filter.errors, JSON.stringify(filter.body));
  const member = client(cli("add-user", "u4", "--platform", platform));
  const forbidden = await first(member.listUsers(platform), 1).catch((error) => error);
  assert.equal(forbidden.status, 403);
});

test("concurrent update from 8 clients, 25 increments each, ends exact", async () => {
  const clients = Array.from({ length: 8 }, () => client(tokens.john_doe));
  await clients[0].replace(PLATFORM, { count: 0, by: [] });
  const start = (await clients[0].get(PLATFORM)).version;
  await Promise.all(
    clients.map(async (each, n) => {
      for (let i = 0; i < 25; i++) {
        await each.update(PLATFORM, async (metadata) => ({ ...metadata, count: metadata.count + 1, by: [...metadata.by, n].slice(-5) }), { retries: 200 });
      }
    }),
  );
  const record = await clients[0].get(PLATFORM);
  assert.equal(record.metadata.count, 200);
  assert.equal(record.version, start + 200, "one write per increment: no lost update, no extra one");
});

test("watch: a snapshot, then every change; it resumes across a host restart with nothing lost or repeated", async () => {
  const user = cli("add-user", "watch_user", "--platform", PLATFORM);
  const asked = [];
  const fetchRecording = (input, init) => {
    asked.push(new Headers(init?.headers).get("Last-Event-ID"));
    return fetch(input, init);
  };
  const port = Number(new URL(host.base).port);
  const watcher = client(user, { fetch: fetchRecording });
  const writer = () => client(user);
  const controller = new AbortController();
  const states = [];
  const seen = [];
  let notify = () => {};
  const watching = (async () => {
    for await (const change of watcher.watch(PLATFORM, { signal: controller.signal, onState: (s) => states.push(s) })) {
      seen.push(change);
      notify();
    }
  })();
  const until = async (count, what) => {
    const deadline = Date.now() + 30_000;
    while (seen.length < count) {
      assert.ok(Date.now() < deadline, `waiting for ${what}: ${JSON.stringify(seen.map((c) => c.id))}`);
      await new Promise((resolve) => { notify = resolve; setTimeout(resolve, 200); });
    }
  };
  await until(1, "the snapshot");
  for (const n of [1, 2, 3]) await writer().patch(PLATFORM, { n });
  await until(4, "three changes");

  await stop(host.proc); // the stream ends with the server
  const other = await serve(await freePort()); // the same database, another server
  try {
    for (const n of [4, 5]) await new MetadataClient({ baseUrl: other.base, token: user }).patch(PLATFORM, { n });
  } finally {
    await stop(other.proc);
  }
  host = await serve(port);
  await writer().patch(PLATFORM, { n: 6 });
  await until(7, "the changes made while it was away, then the new one");
  await new Promise((resolve) => setTimeout(resolve, 500)); // anything repeated would be here by now
  controller.abort();
  await watching;

  assert.deepEqual(seen.map((c) => [c.event, c.version, c.metadata.n ?? null]), [
    ["snapshot", 0, null],
    ["change", 1, 1], ["change", 2, 2], ["change", 3, 3],
    ["change", 4, 4], ["change", 5, 5], ["change", 6, 6],
  ]);
  assert.deepEqual(seen.slice(1).map((c) => [c.actor, c.operation, c.etag]), [1, 2, 3, 4, 5, 6].map((v) => ["watch_user", "patch", `"${v}"`]));
  assert.equal(asked[0], null);
  assert.equal(asked.at(-1), seen[3].id, "the connection that delivered 4 to 6 resumed after 3");
  assert.ok(states.includes("reconnecting") && states.at(-1) === "open", states.join());
});

test("watch of all users (tenant admins) from a kept id; members are refused", async () => {
  const admin = client(tokens.acme_admin);
  const user = cli("add-user", "all_users_a", "--platform", PLATFORM);
  const marker = await client(user).patch(PLATFORM, { step: "before" });
  const controller = new AbortController();
  // Start from now: the first change of all_users_a after the marker, via an all-users stream.
  const changes = admin.watch(PLATFORM, { allUsers: true, signal: controller.signal });
  const next = changes.next();
  await new Promise((resolve) => setTimeout(resolve, 500)); // connected: it carries what follows
  await client(user).patch(PLATFORM, { step: "after" });
  let change = (await next).value;
  while (change.username !== "all_users_a") change = (await changes.next()).value;
  assert.deepEqual([change.event, change.version, change.metadata], ["change", marker.version + 1, { step: "after" }]);
  assert.match(change.id, /^s\./);
  controller.abort();
  assert.deepEqual(await changes.next(), { value: undefined, done: true });
  const refused = await first(client(user).watch(PLATFORM, { allUsers: true }), 1).catch((error) => error);
  assert.deepEqual([refused.status, refused.body], [403, { error: "Only tenant admins can access other users' metadata" }]);
});

/** The first `count` items of an async iterable (closing it). */
async function first(iterable, count) {
  const items = [];
  for await (const item of iterable) {
    items.push(item);
    if (items.length >= count) break;
  }
  return items;
}
