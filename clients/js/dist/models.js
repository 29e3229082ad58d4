// What the client returns: plain objects read from the contract's JSON bodies, with the
// Python client's field names in camelCase. Timestamps stay the RFC 3339 text the server sent
// (`new Date(record.updatedAt)` when you need one): a `Date` would drop its microseconds.
export {};
