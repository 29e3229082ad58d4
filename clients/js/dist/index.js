// starlette-platform-metadata's client for browsers and Node (docs/client-js.md).
export { DEFAULT_PATH, MetadataClient, Paged } from "./client.js";
export { MetadataClientError } from "./errors.js";
export { LineSplitter } from "./lines.js";
export { EventStreamParser } from "./sse.js";
