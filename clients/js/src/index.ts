// starlette-platform-metadata's client for browsers and Node (docs/client-js.md).

export { DEFAULT_PATH, MetadataClient, Paged } from "./client.js";
export type {
  CallOptions,
  ClientOptions,
  DeleteOptions,
  HistoryOptions,
  IfMatch,
  ImportItem,
  ListOptions,
  PatchOptions,
  PolicyOptions,
  UpdateOptions,
  Updated,
  UserOptions,
  WatchOptions,
  WriteOptions,
} from "./client.js";
export { MetadataClientError } from "./errors.js";
export { LineSplitter } from "./lines.js";
export type * from "./models.js";
export { EventStreamParser } from "./sse.js";
export type { ServerSentEvent } from "./sse.js";
export type { ChangeIterable, WatchState } from "./watching.js";
export type { PolicyPutRequest } from "./wire.js";
