// A refused call as the page shows it. The metadata client (./client/, the build of
// clients/js) throws one MetadataClientError carrying the status and the parsed body.

import { MetadataClientError } from "./client/index.js";

// `{ok: true, value}` for what `promise` resolves to, `{ok: false, status, body}` for a
// refusal; anything else (the network failing) is thrown, for the view to show.
export async function outcome(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    if (error instanceof MetadataClientError) return { ok: false, status: error.status, body: error.body };
    throw error;
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
