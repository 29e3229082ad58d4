// One error class for every refusal: the status and the parsed body, as the Python client's
// exceptions carry them (there a subclass per status; here `status` says which).

/** A request the server refused, or an answer the client could not read.
 *
 * `status` is the HTTP status (a 200 whose body, `ETag`, export line or event data is off the
 * contract keeps its 200); `body` the response body parsed as JSON, or `null` when it was
 * empty or not JSON; `headers` the response headers. */
export class MetadataClientError extends Error {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Headers;

  constructor(status: number, body: unknown, headers?: HeadersInit) {
    super(`${status}: ${describe(body)}`);
    this.name = "MetadataClientError";
    this.status = status;
    this.body = body;
    this.headers = new Headers(headers);
  }

  /** The body's `detail` or `error` text (the contract's two shapes), if it has one. */
  get detail(): string | null {
    const body = objectOrNull(this.body);
    for (const name of ["detail", "error"]) {
      const value = body?.[name];
      if (typeof value === "string") return value;
    }
    return null;
  }

  /** 400: the body's field errors, `{"metadata": ["..."], "delete_keys": {"0": ["..."]}}`
   * (`{}` for any other body). */
  get errors(): { [field: string]: unknown } {
    return { ...(objectOrNull(this.body) ?? {}) };
  }

  /** 400 of an import: its bad lines by number (from 1); empty for any other refusal. */
  get lines(): Map<number, string[]> {
    const given = objectOrNull(objectOrNull(this.body)?.["lines"]);
    const lines = new Map<number, string[]>();
    for (const [number, messages] of Object.entries(given ?? {})) {
      if (/^[0-9]+$/.test(number) && Array.isArray(messages)) {
        lines.set(Number(number), messages.map(String));
      }
    }
    return lines;
  }

  /** 403: the keys a platform policy forbade this caller to change (`[]` otherwise). */
  get keys(): string[] {
    const keys = objectOrNull(this.body)?.["keys"];
    return Array.isArray(keys) ? keys.filter((key): key is string => typeof key === "string") : [];
  }

  /** 412: the ETag of the version the server holds now. */
  get currentEtag(): string | null {
    return this.headers.get("ETag");
  }

  /** 413: the server limit the request hit (`"max_document_bytes"`, ...). */
  get limit(): string | null {
    const limit = objectOrNull(this.body)?.["limit"];
    return typeof limit === "string" ? limit : null;
  }

  /** 503 (and 429): the seconds `Retry-After` asks to wait, or `null`. */
  get retryAfter(): number | null {
    return parseRetryAfter(this.headers.get("Retry-After"));
  }
}

/** `Retry-After` in seconds: delay-seconds or an HTTP-date (RFC 9110 10.2.3), else `null`. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null) return null;
  const text = value.trim();
  if (/^[0-9]+$/.test(text)) return Number(text);
  const when = Date.parse(text);
  if (Number.isNaN(when) || !/GMT$/.test(text)) return null;
  return Math.max(0, (when - now) / 1000);
}

/** The error for a refused response, its body read. */
export async function errorFor(response: Response): Promise<MetadataClientError> {
  let body: unknown = null;
  try {
    const text = await response.text();
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null; // not JSON (a proxy's page), or the connection dropped while reading
  }
  return new MetadataClientError(response.status, body, response.headers);
}

export function objectOrNull(value: unknown): { [key: string]: unknown } | null {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? (value as { [key: string]: unknown })
    : null;
}

function describe(body: unknown): string {
  const object = objectOrNull(body);
  for (const name of ["detail", "error"]) {
    if (typeof object?.[name] === "string") return object[name] as string;
  }
  try {
    return JSON.stringify(body) ?? String(body);
  } catch {
    return String(body);
  }
}
