// The demo web app: sign in with a token, then read and edit metadata, watch it change live,
// browse history and restore; tenant admins also list users and edit the platform policy.
// Every piece of data reaches the page as text (dom.js), never as HTML.

import { MetadataClient, MetadataClientError } from "./client/index.js";
import { h, jsonText, mount, when } from "./dom.js";
import { flatten, outcome, refusal } from "./refusals.js";

const TOKEN_KEY = "platform-metadata-demo.token"; // sessionStorage only: gone with the tab
const TABS = [
  ["metadata", "Metadata"],
  ["history", "History"],
  ["users", "Users"],
  ["policy", "Policy"],
];
const ADMIN_TABS = new Set(["users", "policy"]);

const root = document.getElementById("app");
const who = document.getElementById("who");

let session = null; // {client, me: {username, platforms, api}}
let view = null; // {platform, isAdmin, tab, target}
let cleanups = []; // what the current view must stop when it goes (open event streams)

window.addEventListener("hashchange", () => session && route());
start();

async function start() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return showSignIn();
  const me = await whoAmI(token);
  if (!me.ok) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showSignIn(me.message);
  }
  signedIn(token, me.body);
}

async function whoAmI(token) {
  let response;
  try {
    response = await fetch("/demo/me", { headers: { Authorization: `Token ${token}` }, cache: "no-store" });
  } catch {
    return { ok: false, message: "The server does not answer." };
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) return { ok: false, message: body.detail ?? `The server answered ${response.status}.` };
  return { ok: true, body };
}

// --- signing in and out --------------------------------------------------------------------

function showSignIn(message = "") {
  stopView();
  session = null;
  mount(who);
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "40 hexadecimal characters",
    required: true,
  });
  const error = h("p.field-error", { id: "signin-error", role: "alert" }, message);
  const button = h("button.primary", { type: "submit" }, "Sign in");
  const form = h(
    "form.card.signin",
    {
      on: {
        submit: async (event) => {
          event.preventDefault();
          const token = input.value.trim();
          button.disabled = true;
          const me = await whoAmI(token);
          button.disabled = false;
          if (!me.ok) {
            error.textContent = me.message;
            input.focus();
            return;
          }
          sessionStorage.setItem(TOKEN_KEY, token);
          signedIn(token, me.body);
        },
      },
    },
    h("h1", {}, "Sign in"),
    h("p.lead", {}, "Per-user, per-platform metadata, live. Sign in with an API token of the example host."),
    h("label", { for: "token" }, "API token"),
    input,
    error,
    button,
    h(
      "p.hint",
      {},
      "The first ",
      h("code", {}, "python -m example_host serve"),
      " prints tokens for a member and a tenant admin; ",
      h("code", {}, "python -m example_host add-user NAME --platform KEY"),
      " prints a new one. The token is kept in this tab's session storage only.",
    ),
  );
  mount(root, form);
  input.focus();
}

function signedIn(token, me) {
  // Same origin: the endpoint's path is what `/demo/me` says.
  session = { client: new MetadataClient({ baseUrl: "", token, path: me.api }), me };
  mount(
    who,
    h("span.username", { id: "username" }, me.username),
    h("button.link", { id: "sign-out", type: "button", on: { click: () => signOut() } }, "Sign out"),
  );
  route();
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  history.replaceState(null, "", location.pathname);
  showSignIn(message);
}

// --- where we are: #/<platform>/<tab>[/<username>] -----------------------------------------

function go(platform, tab, target) {
  const parts = [platform, tab];
  if (target && target !== session.me.username) parts.push(target);
  const hash = `#/${parts.map(encodeURIComponent).join("/")}`;
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const [platformKey, tab, target] = routeParts(location.hash);
  const platforms = session.me.platforms;
  if (!platforms.length) {
    stopView();
    mount(root, h("section.card", {}, h("h1", {}, "No platform"), h("p", {}, `${session.me.username} is not a member of any platform.`)));
    return;
  }
  const membership = platforms.find((p) => p.platform_key === platformKey) ?? platforms[0];
  const isAdmin = membership.is_admin;
  let chosen = TABS.some(([name]) => name === tab) ? tab : "metadata";
  if (!isAdmin && ADMIN_TABS.has(chosen)) chosen = "metadata";
  view = {
    platform: membership.platform_key,
    isAdmin,
    tab: chosen,
    target: isAdmin && target ? target : session.me.username,
  };
  render();
}

// The hash's parts, decoded; none for a hash that is not valid percent-encoding
// (`#/%E0%A4%A/metadata`, typed or linked), which decodeURIComponent refuses with a URIError:
// such a hash is a route we do not know, and gets the default view as any other.
function routeParts(hash) {
  try {
    return hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  } catch (error) {
    if (error instanceof URIError) return [];
    throw error;
  }
}

function stopView() {
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
}

function render() {
  stopView();
  const { platform, isAdmin, tab, target } = view;
  const own = target === session.me.username;
  const platformPicker =
    session.me.platforms.length > 1
      ? h(
          "select",
          { id: "platform", "aria-label": "Platform", on: { change: (e) => go(e.target.value, tab) } },
          session.me.platforms.map((p) => h("option", { value: p.platform_key, selected: p.platform_key === platform }, p.platform_key)),
        )
      : h("strong", { id: "platform" }, platform);
  const tabs = h(
    "nav.tabs",
    { role: "tablist" },
    TABS.filter(([name]) => isAdmin || !ADMIN_TABS.has(name)).map(([name, label]) =>
      h(
        "button.tab",
        {
          type: "button",
          role: "tab",
          id: `tab-${name}`,
          "aria-selected": String(name === tab),
          on: { click: () => go(platform, name, ADMIN_TABS.has(name) ? null : target) },
        },
        label,
      ),
    ),
  );
  const context = h(
    "div.context",
    {},
    h("span", {}, "Platform "),
    platformPicker,
    h("span.badge", { id: "role" }, isAdmin ? "tenant admin" : "member"),
    !own && !ADMIN_TABS.has(tab)
      ? [
          h("span.viewing", {}, "viewing ", h("strong", { id: "target" }, target)),
          h("button.link", { type: "button", on: { click: () => go(platform, tab) } }, "back to my own"),
        ]
      : null,
  );
  const panel = h("section.panel", { id: `panel-${tab}`, role: "tabpanel" });
  mount(root, h("div.toolbar", {}, context, tabs), panel);
  const views = { metadata: metadataView, history: historyView, users: usersView, policy: policyView };
  views[tab](panel).catch((error) => mount(panel, h("p.banner.error", { role: "alert" }, String(error))));
}

// The option that names whose metadata this view shows (none: the caller's own).
function targetOptions() {
  return view.target === session.me.username ? {} : { username: view.target };
}

function banner(kind, ...text) {
  return h(`p.banner.${kind}`, { role: kind === "error" ? "alert" : "status" }, ...text);
}

// A 401 anywhere: the token is gone (revoked, or its user removed).
function checkSignedIn(result) {
  if (result.status !== 401) return true;
  signOut(`Signed out: ${refusal(result)}`);
  return false;
}

// Whether `key` is matched by one of `patterns` (exact keys, or prefixes ending in "*").
function matches(key, patterns = []) {
  return patterns.some((p) => (p.endsWith("*") ? key.startsWith(p.slice(0, -1)) : key === p));
}

// --- the metadata editor -------------------------------------------------------------------

async function metadataView(panel) {
  const client = session.client;
  const target = targetOptions();
  const [record, policyAnswer] = await Promise.all([outcome(client.get(view.platform, target)), outcome(client.getPolicy(view.platform))]);
  if (!checkSignedIn(record)) return;
  if (!record.ok) {
    mount(panel, banner("error", refusal(record)));
    return;
  }
  let policy = policyAnswer.ok ? policyAnswer.value : { protectedKeys: [], privateKeys: [] };
  const memberView = !view.isAdmin;
  let base = record.value; // a MetadataRecord: the version the edits start from
  let rows = rowsOf(base.metadata);

  const heading = h("h2", {}, "Metadata of ", h("span", {}, base.username), " on ", h("span", {}, base.platformKey));
  const meta = h("p.meta", { id: "record-meta" });
  const live = h("span.live", { id: "live", "data-state": "connecting" }, "connecting…");
  const lastChange = h("p.meta", { id: "last-change" });
  const messages = h("div.messages", { id: "messages" });
  const policyNote = h("p.note", { id: "policy-note" });
  const tbody = h("tbody");
  const saveButton = h("button.primary", { id: "save", type: "submit" }, "Save changes");
  const discardButton = h("button", { id: "discard", type: "button", on: { click: () => { rows = rowsOf(base.metadata); say(); draw(); } } }, "Discard");
  const addButton = h("button", { id: "add-key", type: "button", on: { click: addRow } }, "Add key");

  function rowsOf(metadata) {
    return Object.entries(metadata).map(([key, value]) => ({ key, original: jsonText(value), text: jsonText(value), isNew: false, removed: false, error: "", flash: false }));
  }

  function isDirty(row) {
    if (row.isNew || row.removed) return true;
    return normalized(row.text) !== normalized(row.original);
  }

  function readOnly(row) {
    return memberView && !row.isNew && matches(row.key, policy.protectedKeys);
  }

  function describe() {
    meta.textContent = base.updatedAt
      ? `Version ${base.version} · updated ${when(base.updatedAt)}`
      : "Nothing stored yet: add a key and save.";
    const protectedKeys = policy.protectedKeys ?? [];
    const privateKeys = policy.privateKeys ?? [];
    if (memberView) {
      policyNote.textContent = protectedKeys.length
        ? `Protected by the platform policy (you can read them, only a tenant admin can change them): ${protectedKeys.join(", ")}`
        : "";
    } else {
      const listed = [
        protectedKeys.length ? `protected: ${protectedKeys.join(", ")}` : "",
        privateKeys.length ? `private: ${privateKeys.join(", ")}` : "",
      ].filter(Boolean);
      policyNote.textContent = `As a tenant admin you can change every key${listed.length ? ` (${listed.join("; ")})` : ""}.`;
    }
  }

  function draw() {
    describe();
    mount(tbody, rows.map(rowElement));
    if (!rows.length) mount(tbody, h("tr.empty", {}, h("td", { colspan: "3" }, "No keys.")));
    updateButtons();
  }

  function updateButtons() {
    const dirty = rows.some(isDirty);
    saveButton.disabled = !dirty;
    discardButton.disabled = !dirty;
  }

  function rowElement(row) {
    const protectedKey = matches(row.key, policy.protectedKeys);
    const privateKey = matches(row.key, policy.privateKeys ?? []);
    const error = h("p.field-error", { role: "alert", dataset: { errorFor: row.key } }, row.error);
    const tr = h("tr.row", { dataset: { key: row.key } });
    const refresh = () => {
      tr.classList.toggle("dirty", isDirty(row));
      tr.classList.toggle("removed", row.removed);
      updateButtons();
    };
    let keyCell;
    if (row.isNew) {
      keyCell = h("input.key", {
        value: row.key,
        "aria-label": "New key",
        placeholder: "key",
        spellcheck: "false",
        on: { input: (e) => { row.key = e.target.value; tr.dataset.key = row.key; } },
      });
    } else {
      keyCell = h("code.key", {}, row.key);
    }
    let valueCell;
    if (readOnly(row)) {
      valueCell = [
        h("pre.value.readonly", { "aria-label": `Value of ${row.key}` }, row.text),
        h("p.note", {}, "Read-only: protected by the platform policy. Only a tenant admin can change this key."),
      ];
    } else {
      valueCell = h("textarea.value", {
        value: row.text,
        rows: String(Math.min(8, row.text.split("\n").length)),
        "aria-label": `Value of ${row.key || "the new key"}`,
        spellcheck: "false",
        disabled: row.removed,
        on: { input: (e) => { row.text = e.target.value; refresh(); } },
      });
    }
    const badges = [
      protectedKey ? h("span.badge.protected", { title: "Members can read this key but not change it" }, "protected") : null,
      privateKey ? h("span.badge.private", { title: "Members can neither read nor change this key" }, "private") : null,
    ];
    const remove = readOnly(row)
      ? null
      : h(
          "button.link",
          {
            type: "button",
            "aria-label": `${row.removed ? "Keep" : "Remove"} ${row.key || "the new key"}`,
            on: {
              click: () => {
                if (row.isNew) rows = rows.filter((r) => r !== row);
                else row.removed = !row.removed;
                draw();
              },
            },
          },
          row.removed ? "undo" : "remove",
        );
    mount(tr, h("th", { scope: "row" }, keyCell, badges), h("td", {}, valueCell, error), h("td.actions", {}, remove));
    if (row.flash) {
      tr.classList.add("flash");
      row.flash = false;
    }
    refresh();
    return tr;
  }

  function addRow() {
    rows.push({ key: "", original: null, text: "", isNew: true, removed: false, error: "", flash: false });
    draw();
    tbody.querySelector("tr:last-child input.key")?.focus();
  }

  function say(...items) {
    mount(messages, items);
  }

  // Take `doc` (a newer version) as the base; rows the user is editing keep their text.
  function rebase(doc) {
    const byKey = new Map(rows.filter((r) => !r.isNew).map((r) => [r.key, r]));
    const next = [];
    for (const [key, value] of Object.entries(doc.metadata)) {
      const text = jsonText(value);
      const row = byKey.get(key) ?? rows.find((r) => r.isNew && r.key === key);
      if (row && isDirty(row) && !(row.isNew && normalized(row.text) === normalized(text))) {
        next.push({ ...row, isNew: false, original: text });
      } else {
        next.push({ key, original: text, text, isNew: false, removed: false, error: "", flash: !row || row.original !== text });
      }
    }
    for (const row of rows) {
      if (Object.hasOwn(doc.metadata, row.key)) continue;
      if (row.isNew) next.push(row);
      else if (isDirty(row) && !row.removed) next.push({ ...row, isNew: true, original: null });
    }
    rows = next;
    base = doc;
    draw();
  }

  async function save(event) {
    event.preventDefault();
    say();
    const metadata = {};
    const deleteKeys = [];
    let invalid = false;
    const seen = new Set(rows.filter((r) => !r.isNew).map((r) => r.key));
    for (const row of rows) {
      row.error = "";
      if (row.removed) {
        deleteKeys.push(row.key);
        continue;
      }
      if (row.isNew) {
        if (!row.key) row.error = "Give the new key a name.";
        else if (seen.has(row.key)) row.error = "This key is already in the document: edit it there.";
        seen.add(row.key);
      }
      if (!row.error && isDirty(row)) {
        try {
          metadata[row.key] = JSON.parse(row.text);
        } catch {
          row.error = 'Not a JSON value. Text needs double quotes ("dark"); numbers, true, false, null, [...] and {...} as in JSON.';
        }
      }
      if (row.error) invalid = true;
    }
    if (invalid) {
      draw();
      say(banner("error", "Nothing was saved: fix the fields marked below."));
      return;
    }
    const changed = Object.keys(metadata).length ? metadata : null;
    if (!changed && !deleteKeys.length) return;
    saveButton.disabled = true;
    // Only onto the version the edits started from ("0": only if nothing was ever stored).
    const result = await outcome(client.patch(view.platform, changed, { ...target, deleteKeys, ifMatch: base.version }));
    if (!checkSignedIn(result)) return;
    if (result.ok) {
      base = result.value;
      rows = rowsOf(base.metadata);
      draw();
      say(banner("ok", `Saved: version ${base.version}.`));
      return;
    }
    if (result.status === 403 && Array.isArray(result.body?.keys)) {
      const fresh = await outcome(client.getPolicy(view.platform));
      if (fresh.ok) policy = fresh.value;
      for (const row of rows) {
        if (result.body.keys.includes(row.key)) {
          row.error = "Only a tenant admin can change this key: the platform policy protects it. Members can read it, not change it.";
        }
      }
      draw();
      say(
        banner(
          "error",
          `${result.body.error}: ${result.body.keys.join(", ")}. `,
          "The platform's policy protects these keys: a member can read them but only a tenant admin can change them. Nothing was saved.",
        ),
      );
      return;
    }
    if (result.status === 400 && Array.isArray(result.body?.metadata)) {
      const general = [];
      for (const message of result.body.metadata) {
        const row = rowForSchemaError(message);
        if (row) row.error = row.error ? `${row.error} ${message}` : message;
        else general.push(message);
      }
      draw();
      say(banner("error", "The platform's schema refuses this document; nothing was saved.", general.length ? h("ul", {}, general.map((m) => h("li", {}, m))) : null));
      return;
    }
    if (result.status === 412) {
      const current = await outcome(client.get(view.platform, target));
      if (current.ok) rebase(current.value);
      say(banner("error", `Someone else saved a change first (now version ${base.version}). Your edits are kept on top of it: check them and save again.`));
      return;
    }
    draw();
    say(banner("error", refusal(result)));
  }

  // The row a schema message "<JSON Pointer>: <message>" is about: the pointer's first step,
  // or for the root, a key the message names in quotes ("'plan' is a required property").
  function rowForSchemaError(message) {
    const match = /^(\/[^:]*): /.exec(message);
    if (!match) return null;
    const steps = match[1].split("/").slice(1).map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
    if (steps[0]) return rows.find((r) => r.key === steps[0]) ?? null;
    const quoted = /["']([^"']+)["']/.exec(message.slice(match[0].length));
    return quoted ? rows.find((r) => r.key === quoted[1]) ?? null : null;
  }

  const form = h(
    "form.editor",
    { id: "editor", on: { submit: save } },
    h("table.doc", {}, h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", {}, "Value (JSON)"), h("th", {}, ""))), tbody),
    h("div.buttons", {}, addButton, h("span.bar-fill"), discardButton, saveButton),
  );
  mount(panel, h("div.panel-head", {}, heading, live), meta, lastChange, policyNote, messages, form);
  draw();

  // Live: the client reconnects with Last-Event-ID by itself; it ends when the view goes
  // (the abort) or throws a refusal that retrying cannot mend (401, 403, 404).
  const stop = new AbortController();
  cleanups.push(() => stop.abort());
  const showState = (state, status) => {
    live.dataset.state = state;
    live.textContent = {
      connecting: "connecting…",
      live: "live",
      reconnecting: "reconnecting…",
      refused: status === 401 ? "signed out" : `live updates unavailable (${status})`,
    }[state];
  };
  const changes = client.watch(view.platform, {
    ...target,
    signal: stop.signal,
    onState: (state) => showState(state === "open" ? "live" : state),
  });
  try {
    for await (const change of changes) {
      if (change.record === null || change.version <= base.version) continue;
      rebase(change.record);
      if (change.actor) {
        lastChange.textContent = `Changed live by ${change.actor} (${change.operation}): version ${change.version}.`;
      }
    }
  } catch (error) {
    if (!(error instanceof MetadataClientError)) throw error;
    showState("refused", error.status);
    if (error.status === 401) signOut("Signed out: your token is no longer valid.");
  }
}

// JSON text compared by value, so that re-spacing a value is not an edit.
function normalized(text) {
  if (text === null) return null;
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return text;
  }
}

// --- history and restore -------------------------------------------------------------------

async function historyView(panel) {
  const client = session.client;
  const target = targetOptions();
  const list = h("ol.revisions", { id: "revisions" });
  const messages = h("div.messages", { id: "messages" });
  const more = h("button", { id: "older", type: "button", hidden: true }, "Older revisions");
  // Page by page, each asked for when "Older revisions" is clicked.
  const pages = client.history(view.platform, { ...target, limit: 10 }).pages();
  let newest = null;

  async function loadPage() {
    more.disabled = true;
    const result = await outcome(pages.next());
    more.disabled = false;
    if (!checkSignedIn(result)) return;
    if (!result.ok) {
      mount(messages, banner("error", refusal(result)));
      return;
    }
    const page = result.value.value ?? { results: [], next: null };
    if (newest === null) newest = page.results[0]?.version ?? 0;
    if (!page.results.length && !list.children.length) {
      list.append(h("li.empty", {}, "No changes yet."));
    }
    for (const revision of page.results) list.append(revisionItem(revision));
    more.hidden = !page.next;
  }

  function revisionItem(revision) {
    const restore =
      revision.version === newest
        ? h("span.badge", {}, "current")
        : h("button", { type: "button", on: { click: () => restoreTo(revision.version) } }, `Restore version ${revision.version}`);
    return h(
      "li.revision",
      { dataset: { version: String(revision.version) } },
      h(
        "div.revision-head",
        {},
        h("strong", {}, `Version ${revision.version}`),
        h("span.badge", {}, revision.operation),
        h("span", {}, "by ", h("strong", {}, revision.actor ?? "?")),
        h("span.meta", {}, when(revision.at)),
        h("span.bar-fill"),
        restore,
      ),
      revision.changedKeys.length
        ? h(
            "dl.changes",
            {},
            revision.changedKeys.map((key) => [
              h("dt", {}, h("code", {}, key)),
              h("dd", {}, Object.hasOwn(revision.metadata, key) ? h("code", {}, jsonText(revision.metadata[key])) : h("em", {}, "removed")),
            ]),
          )
        : h("p.meta", {}, "No key changed."),
      h("details", {}, h("summary", {}, "Whole document after this change"), h("pre.doc-json", {}, JSON.stringify(revision.metadata, null, 2))),
    );
  }

  async function restoreTo(version) {
    const result = await outcome(client.restore(view.platform, version, target));
    if (!checkSignedIn(result)) return;
    if (!result.ok) {
      const details = Array.isArray(result.body?.metadata) ? h("ul", {}, result.body.metadata.map((m) => h("li", {}, m))) : null;
      mount(messages, banner("error", `Version ${version} was not restored: ${refusal(result)}`, details));
      return;
    }
    await historyView(panel);
    mount(panel.querySelector("#messages"), banner("ok", `Restored version ${version}: it is now version ${result.value.version}.`));
  }

  more.addEventListener("click", loadPage);
  mount(
    panel,
    h("div.panel-head", {}, h("h2", {}, "History of ", h("span", {}, view.target), " on ", h("span", {}, view.platform))),
    h("p.meta", {}, "Newest first. Restoring writes the old document as a new version; nothing is lost."),
    messages,
    list,
    more,
  );
  await loadPage();
}

// --- tenant admins: users ------------------------------------------------------------------

let usersFilter = "";

async function usersView(panel) {
  const client = session.client;
  const filterInput = h("input", {
    id: "filter",
    value: usersFilter,
    placeholder: '{"plan": "pro"}',
    spellcheck: "false",
    "aria-describedby": "filter-error",
  });
  const filterError = h("p.field-error", { id: "filter-error", role: "alert" });
  const tbody = h("tbody");
  const count = h("p.meta", { id: "users-count" });
  const messages = h("div.messages", { id: "messages" });
  const more = h("button", { id: "next-page", type: "button", hidden: true }, "Next page");
  let pages = null; // the listing's pages, each asked for when "Next page" is clicked
  let next = null;
  let shown = 0;

  async function load(replace) {
    const result = await outcome(pages.next());
    if (!checkSignedIn(result)) return;
    filterError.textContent = "";
    if (!result.ok) {
      if (result.body?.filter) filterError.textContent = flatten(result.body.filter).join(" ");
      else mount(messages, banner("error", result.status === 404 ? "This server cannot list users." : refusal(result)));
      return;
    }
    if (replace) {
      tbody.replaceChildren();
      shown = 0;
    }
    const page = result.value.value ?? { results: [], next: null };
    for (const record of page.results) {
      tbody.append(
        h(
          "tr",
          { dataset: { username: record.username } },
          h("th", { scope: "row" }, h("button.link", { type: "button", on: { click: () => go(view.platform, "metadata", record.username) } }, record.username)),
          h("td", {}, h("code.summary", {}, JSON.stringify(record.metadata))),
          h("td.meta", {}, when(record.updatedAt)),
          h("td.actions", {}, h("button.link", { type: "button", on: { click: () => go(view.platform, "history", record.username) } }, "history")),
        ),
      );
    }
    shown += page.results.length;
    count.textContent = shown ? `${shown} user${shown === 1 ? "" : "s"} with stored metadata shown.` : "No stored metadata matches.";
    next = page.next;
    more.hidden = !next;
  }

  function apply(event) {
    event?.preventDefault();
    const text = filterInput.value.trim();
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
        filterError.textContent = 'Enter a JSON object of top-level values, e.g. {"plan": "pro", "beta": true}.';
        return;
      }
    }
    usersFilter = text;
    pages = client.listUsers(view.platform, { filter: parsed, limit: 25 }).pages();
    load(true);
  }

  const openInput = h("input", { id: "open-user", placeholder: "username", spellcheck: "false", "aria-label": "Username" });
  mount(
    panel,
    h("div.panel-head", {}, h("h2", {}, "Users of ", h("span", {}, view.platform))),
    h(
      "form.filter",
      { on: { submit: apply } },
      h("label", { for: "filter" }, "Filter by top-level values (JSON)"),
      h("div.inline", {}, filterInput, h("button.primary", { type: "submit", id: "apply-filter" }, "Filter"), h("button", { type: "button", on: { click: () => { filterInput.value = ""; apply(); } } }, "Clear")),
      filterError,
    ),
    messages,
    count,
    h("table.users", {}, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Metadata"), h("th", {}, "Updated"), h("th", {}, ""))), tbody),
    more,
    h(
      "form.open-user",
      { on: { submit: (e) => { e.preventDefault(); if (openInput.value.trim()) go(view.platform, "metadata", openInput.value.trim()); } } },
      h("label", { for: "open-user" }, "Open any member's metadata (also members with nothing stored)"),
      h("div.inline", {}, openInput, h("button", { type: "submit" }, "Open")),
    ),
  );
  more.addEventListener("click", () => next && load(false));
  apply();
}

// --- tenant admins: the platform policy ----------------------------------------------------

async function policyView(panel) {
  const client = session.client;
  const fields = {
    protected_keys: h("textarea", { id: "protected-keys", rows: "4", spellcheck: "false", "aria-describedby": "protected_keys-error" }),
    private_keys: h("textarea", { id: "private-keys", rows: "4", spellcheck: "false", "aria-describedby": "private_keys-error" }),
    schema: h("textarea.code", { id: "schema", rows: "14", spellcheck: "false", "aria-describedby": "schema-error" }),
  };
  const errors = Object.fromEntries(Object.keys(fields).map((name) => [name, h("p.field-error", { id: `${name}-error`, role: "alert" })]));
  const messages = h("div.messages", { id: "messages" });
  const result = h("div.dry-run", { id: "policy-result" });
  const meta = h("p.meta", { id: "policy-meta" });
  let version = 0;

  // A PlatformPolicy; its version is the condition of the next PUT or DELETE.
  function show(policy) {
    version = policy.version;
    fields.protected_keys.value = policy.protectedKeys.join("\n");
    fields.private_keys.value = (policy.privateKeys ?? []).join("\n");
    fields.schema.value = policy.schema === null ? "" : JSON.stringify(policy.schema, null, 2);
    meta.textContent = policy.version ? `Version ${policy.version} · updated ${when(policy.updatedAt)}` : "The default policy: nothing protected, nothing private, no schema.";
  }

  async function reload() {
    const answer = await outcome(client.getPolicy(view.platform));
    if (!checkSignedIn(answer)) return false;
    if (!answer.ok) {
      mount(messages, banner("error", refusal(answer)));
      return false;
    }
    show(answer.value);
    return true;
  }

  function lines(textarea) {
    return textarea.value.split("\n").map((line) => line.trim()).filter(Boolean);
  }

  function body() {
    for (const error of Object.values(errors)) error.textContent = "";
    const text = fields.schema.value.trim();
    let schema = null;
    if (text) {
      try {
        schema = JSON.parse(text);
      } catch (error) {
        errors.schema.textContent = `Not JSON: ${error.message}`;
        return null;
      }
    }
    return { protected_keys: lines(fields.protected_keys), private_keys: lines(fields.private_keys), schema };
  }

  function showRefusal(answer) {
    let placed = false;
    for (const [name, messagesOf] of Object.entries(answer.body ?? {})) {
      if (errors[name]) {
        errors[name].textContent = flatten(messagesOf).join(" ");
        placed = true;
      }
    }
    if (!placed) mount(messages, banner("error", refusal(answer)));
  }

  // A PolicyUpdate: the stored documents the schema refuses.
  function violations(answer, dryRun) {
    const n = answer.violatingDocuments;
    const head = dryRun ? "Dry run, nothing saved: " : `Saved as version ${answer.policy.version}. `;
    const sentence =
      n === null
        ? "this store cannot count the stored documents the schema refuses."
        : n === 0
          ? "every stored document satisfies this policy's schema."
          : `${n} stored document${n === 1 ? "" : "s"} would not satisfy this schema${dryRun ? "" : " (each must satisfy it on its next write)"}.`;
    return [
      banner(n ? "warn" : "ok", head, sentence),
      answer.examples?.length
        ? h(
            "ul.examples",
            { id: "examples" },
            answer.examples.map((example) => h("li", {}, h("strong", {}, example.username), ": ", example.errors.join("; "))),
          )
        : null,
    ];
  }

  async function put(dryRun) {
    mount(messages);
    const sent = body();
    if (!sent) return;
    const answer = await outcome(client.putPolicy(view.platform, sent, { ifMatch: version, dryRun }));
    if (!checkSignedIn(answer)) return;
    if (answer.status === 412) {
      await reload();
      mount(messages, banner("error", "Another admin changed the policy meanwhile: the current one is shown. Make your change again."));
      return;
    }
    if (!answer.ok) {
      mount(result);
      showRefusal(answer);
      return;
    }
    if (!dryRun) show(answer.value.policy);
    mount(result, violations(answer.value, dryRun));
  }

  async function reset() {
    mount(messages);
    const answer = await outcome(client.deletePolicy(view.platform, { ifMatch: version }));
    if (!checkSignedIn(answer)) return;
    if (!answer.ok) {
      mount(messages, banner("error", refusal(answer)));
      return;
    }
    await reload();
    mount(result, banner("ok", "Back to the default policy."));
  }

  mount(
    panel,
    h("div.panel-head", {}, h("h2", {}, "Policy of ", h("span", {}, view.platform))),
    meta,
    messages,
    h(
      "form.policy",
      { on: { submit: (e) => { e.preventDefault(); put(false); } } },
      h(
        "div.columns",
        {},
        h(
          "div",
          {},
          h("label", { for: "protected-keys" }, "Protected keys"),
          h("p.hint", {}, "Members read them, only admins change them. One per line; a prefix ends in *."),
          fields.protected_keys,
          errors.protected_keys,
          h("label", { for: "private-keys" }, "Private keys"),
          h("p.hint", {}, "Members neither read nor change them."),
          fields.private_keys,
          errors.private_keys,
        ),
        h(
          "div",
          {},
          h("label", { for: "schema" }, "JSON Schema (draft 2020-12) every document must satisfy"),
          h("p.hint", {}, "Empty for none."),
          fields.schema,
          errors.schema,
        ),
      ),
      h(
        "div.buttons",
        {},
        h("button", { type: "button", id: "reset-policy", on: { click: reset } }, "Reset to default"),
        h("span.bar-fill"),
        h("button", { type: "button", id: "dry-run", on: { click: () => put(true) } }, "Dry run"),
        h("button.primary", { type: "submit", id: "save-policy" }, "Save policy"),
      ),
    ),
    result,
  );
  await reload();
}
