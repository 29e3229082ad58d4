// The metadata API as this page uses it: every request carries the signed-in token.

export class Api {
  constructor(token, base) {
    this.token = token;
    this.base = base; // where the endpoint is mounted, ending in "/"
  }

  // The URL of a resource ("" for the metadata, "policy/", "history/", ...) with a query.
  url(resource, params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(name, value);
    }
    const search = query.toString();
    return `${this.base}${resource}${search ? `?${search}` : ""}`;
  }

  headers(extra = {}) {
    return { Authorization: `Token ${this.token}`, ...extra };
  }

  // {status, ok, body, etag, version} for a request to `url`; `body` is the parsed JSON
  // answer or null, `version` the number in the ETag or null.
  async send(method, url, { json, headers = {} } = {}) {
    const init = { method, headers: this.headers(headers), cache: "no-store" };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let body = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = { detail: text };
      }
    }
    const etag = response.headers.get("ETag");
    const version = etag ? Number(etag.replace(/^W\//, "").replaceAll('"', "")) : null;
    return { status: response.status, ok: response.ok, body, etag, version };
  }

  get(resource, params) {
    return this.send("GET", this.url(resource, params));
  }
}

// The sentence to show for a refusal whose body is not tied to a field.
export function refusal(result) {
  const body = result.body ?? {};
  if (typeof body.detail === "string") return body.detail;
  if (typeof body.error === "string") return body.error;
  const parts = [];
  for (const [field, messages] of Object.entries(body)) {
    parts.push(`${field}: ${flatten(messages).join(" ")}`);
  }
  return parts.length ? parts.join("; ") : `The server answered ${result.status}.`;
}

// DRF's field errors: a list of messages, or an object of them by index; all messages.
export function flatten(messages) {
  if (Array.isArray(messages)) return messages.flatMap(flatten);
  if (messages && typeof messages === "object") return Object.values(messages).flatMap(flatten);
  return [String(messages)];
}
