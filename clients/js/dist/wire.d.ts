export type JsonValue = string | number | boolean | null | JsonValue[] | {
    [key: string]: JsonValue;
};
export type JsonObject = {
    [key: string]: JsonValue;
};
/** Any JSON values under non-empty string keys, round-tripped exactly. Strict JSON: nesting at most 10 levels (this object is level 1), integers within signed 64 bits, no NaN or Infinity, no lone surrogates, no U+0000, no duplicate keys. */
export type Metadata = JsonObject;
export interface Record {
    username: string;
    platform_key: string;
    metadata: JsonObject;
    created_at: string | null;
    updated_at: string | null;
}
/** `delete_keys` are removed first (missing keys are ignored), then the `metadata` keys are set, whole values, no deep merge. At least one of the two must be present and non-empty. Unknown fields are ignored. */
export interface PatchRequest {
    metadata?: Metadata;
    delete_keys?: string[];
}
/** `metadata` replaces the whole document. Unknown fields are ignored. */
export interface PutRequest {
    metadata: Metadata;
}
/** A platform's policy; members do not get `private_keys`. */
export interface Policy {
    platform_key: string;
    protected_keys: string[];
    private_keys?: string[];
    schema: JsonObject | boolean | null;
    version: number;
    updated_at: string | null;
}
/** Every field optional; a missing one takes its default. */
export interface PolicyPutRequest {
    protected_keys?: string[];
    private_keys?: string[];
    schema?: JsonObject | boolean | null;
}
/** The admin view of the policy (with `?dry_run=true`: as it would be, with the stored version), and the stored documents its schema refuses: `violating_documents` is null when the store cannot list its documents. */
export interface PolicyPutResult {
    platform_key: string;
    protected_keys: string[];
    private_keys: string[];
    schema: JsonObject | boolean | null;
    version: number;
    updated_at: string | null;
    violating_documents: number | null;
    examples: ({
        username: string;
        errors: string[];
    })[];
}
/** A member's write naming keys the platform policy keeps for admins. */
export interface KeysForbidden {
    error: "Only tenant admins can change these keys";
    keys: string[];
}
export interface LimitExceeded {
    detail: string;
    limit: "max_body_bytes" | "max_document_bytes" | "max_etags" | "max_import_bytes" | "max_private_bytes";
    value: number;
}
export interface Revision {
    version: number;
    operation: "patch" | "put" | "delete" | "restore";
    actor: string | null;
    at: string;
    metadata: JsonObject;
    changed_keys: string[];
}
export interface HistoryPage {
    next: string | null;
    results: Revision[];
}
export interface RestoreRequest {
    version: number;
}
export interface UsersPage {
    next: string | null;
    results: Record[];
}
export interface ImportResult {
    imported: number;
}
export interface ImportRefused {
    lines: {
        [key: string]: string[];
    };
}
