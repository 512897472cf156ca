//! The OpenAPI document, built from the route table ([`super::routes::TABLE`]):
//! each route's operation and schemas, the API-key requirement with the role
//! the route needs, the error answers every route can give, and the limits
//! the server enforces (from the running configuration).
//!
//! Guarantee (checked by Schemathesis in `.ci/run`, `scripts/api-fuzz.sh`):
//! every request the document allows is accepted or answered with a
//! documented status, and every answer matches its documented schema.

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::routes::{Access, TABLE};
use super::texts::{MAX_CHANNEL_CHARS, MAX_CUSTOMER_REF_CHARS};
use crate::settings::ServerSettings;

/// The document's fixed parts (info and tags); the paths come from the route table.
#[derive(OpenApi)]
#[openapi(
    info(title = "kesu", description = "Chinese customer-complaint triage: category, escalation and legal-risk flags.", license(name = "MIT OR Apache-2.0")),
    tags((name = "classify"), (name = "flags"), (name = "segment"), (name = "conversations"), (name = "reviews"), (name = "insights"), (name = "ops"), (name = "admin"))
)]
pub struct ApiDoc;

/// A pattern for "not blank": at least one character that is not Unicode
/// `White_Space` (what Rust's `str::trim` removes), listed explicitly so that
/// every regex dialect reads it the same way.
pub const NOT_BLANK: &str =
    "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// Conversation ids: 1-128 of `A-Z a-z 0-9 . _ : -`, not `.` or `..` (path segments a client would collapse).
pub const CONVERSATION_ID: &str = "^(?!\\.{1,2}$)[A-Za-z0-9._:-]{1,128}$";

/// The document as served at `/openapi.json` for a server running with `s`.
pub fn document(s: &ServerSettings) -> Value {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    let mut doc = ApiDoc::openapi();
    for r in TABLE.iter() {
        (r.openapi)(&mut doc);
    }
    doc.components.get_or_insert_with(Default::default).add_security_scheme(
        "api_key",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("a kesu API key (`kesu keys add`)"))
                .build(),
        ),
    );
    let mut doc = serde_json::to_value(&doc).expect("the OpenAPI document serialises");
    request_schemas(&mut doc, s);
    for r in TABLE.iter() {
        let Some(op) = doc["paths"][r.path].get_mut(r.method.as_str().to_lowercase()) else { continue };
        let op = op.as_object_mut().expect("an operation is an object");
        access(op, r.access);
        errors(op, r.access, r.deadline);
    }
    doc
}

/// The key requirement and the role in the description.
fn access(op: &mut Map<String, Value>, a: Access) {
    let note = match a {
        Access::Open => return,
        Access::AnyKey => "Needs any valid API key.".to_string(),
        Access::Role(role) => format!("Needs an API key with the `{role}` role (or `admin`)."),
    };
    op.insert("security".into(), json!([{"api_key": []}]));
    let d = match op.get("description").and_then(Value::as_str) {
        Some(d) => format!("{d}\n\n{note}"),
        None => note,
    };
    op.insert("description".into(), Value::String(d));
}

/// The error answers a route can give besides its own: the key checks, the
/// rate limit, the body checks, and the deadline. A documented answer is kept.
fn errors(op: &mut Map<String, Value>, a: Access, deadline: bool) {
    let has_body = op.contains_key("requestBody");
    let has_params = op.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
    let retry_after =
        json!({"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}});
    let mut add = |status: &str, description: &str, headers: Option<&Value>| {
        let responses = op.entry("responses").or_insert_with(|| json!({})).as_object_mut().expect("responses");
        let r = responses.entry(status).or_insert_with(|| {
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
        });
        if let (Some(h), Some(r)) = (headers, r.as_object_mut()) {
            r.insert("headers".into(), h.clone());
        }
    };
    if a != Access::Open {
        let challenge =
            json!({"WWW-Authenticate": {"description": "`Bearer realm=\"kesu\"`", "schema": {"type": "string"}}});
        add("401", "No API key, or an unknown or revoked one (`unauthorized`)", Some(&challenge));
        add("403", "The key lacks the role, or a console session on a cross-site request (`forbidden`)", None);
        add("429", "Over the key's rate limit (`rate_limited`; Retry-After)", Some(&retry_after));
    }
    if has_body {
        add("400", "Broken JSON or invalid UTF-8 (`invalid_json`, `invalid_utf8`)", None);
        add("413", "Body, text, field or batch over its limit", None);
        add("415", "Content type is not application/json (`unsupported_media_type`)", None);
    }
    if has_body || has_params {
        add("422", "A field or parameter is missing, of the wrong type or out of range", None);
    }
    if deadline || has_body {
        add("503", "Overloaded, timed out, store unavailable or model not loaded (Retry-After)", Some(&retry_after));
    }
    // Every 503 the service sends carries Retry-After.
    if let Some(r) = op.get_mut("responses").and_then(|r| r.get_mut("503")).and_then(Value::as_object_mut) {
        r.insert("headers".into(), retry_after.clone());
    }
}

/// The request bodies with the limits the handlers enforce: one text or a
/// batch (never both), non-blank texts of at most `max_text_chars` chars,
/// batches of 1 to `max_items`; `customer_ref` and `idempotency_key` on
/// classify only.
fn request_schemas(doc: &mut Value, s: &ServerSettings) {
    let schemas = doc["components"]["schemas"].as_object_mut().expect("components.schemas");
    let texts = schemas.get("TextsRequest").cloned().unwrap_or_default();
    let item = schemas.get("ItemIn").cloned().unwrap_or_default();
    let prop = |schema: &Value, name: &str| schema["properties"][name].clone();
    let text = json!({"type": "string", "minLength": 1, "maxLength": s.max_text_chars, "pattern": NOT_BLANK,
        "description": format!("The customer text (not blank, at most {} chars).", s.max_text_chars)});
    let bounded = |v: Value, max: usize| {
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            // null is the field left out
            o.insert("type".into(), json!(["string", "null"]));
            o.insert("minLength".into(), json!(1));
            o.insert("maxLength".into(), json!(max));
            o.insert("pattern".into(), json!(NOT_BLANK));
        }
        v
    };
    let customer_ref = bounded(prop(&item, "customer_ref"), MAX_CUSTOMER_REF_CHARS);
    let channel = bounded(prop(&texts, "channel"), MAX_CHANNEL_CHARS);
    let item_channel = bounded(prop(&item, "channel"), MAX_CHANNEL_CHARS);
    let key = prop(&item, "idempotency_key");
    let id = json!({"oneOf": [{"$ref": "#/components/schemas/ItemId"}, {"type": "null"}]});
    let segments = prop(&texts, "segments");
    let object = |props: Value, required: &[&str], description: &str| json!({"type": "object", "description": description, "properties": props, "required": required, "additionalProperties": false});
    let batch = |item_ref: &str, extra: Value| {
        let mut props = json!({
            "items": {"type": "array", "minItems": 1, "maxItems": s.max_items, "items": {"$ref": item_ref},
                "description": format!("The texts (1 to {}).", s.max_items)},
            "segments": segments,
        });
        if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        props
    };
    // /v1/flags and /v1/segment: texts only.
    schemas.insert("TextItem".into(), object(json!({"id": id, "text": text}), &["text"], "One text of a batch."));
    schemas.insert(
        "OneText".into(),
        object(
            json!({"text": text, "id": id, "segments": segments}),
            &["text"],
            "One text, with an optional id echoed back.",
        ),
    );
    schemas.insert(
        "TextBatch".into(),
        object(batch("#/components/schemas/TextItem", json!({})), &["items"], "A batch of texts."),
    );
    schemas.insert(
        "TextsRequest".into(),
        json!({"description": "Either one text (`text`) or a batch (`items`), not both.",
            "oneOf": [{"$ref": "#/components/schemas/OneText"}, {"$ref": "#/components/schemas/TextBatch"}]}),
    );
    // /v1/classify: also who sent it, the channel and the idempotency key.
    schemas.insert(
        "ItemIn".into(),
        object(
            json!({"id": id, "text": text, "customer_ref": customer_ref, "channel": item_channel, "idempotency_key": key}),
            &["text"],
            "One text of a classify batch. Idempotency keys must differ between the items of one request.",
        ),
    );
    schemas.insert(
        "ClassifyText".into(),
        object(
            json!({"text": text, "id": id, "customer_ref": customer_ref, "channel": channel, "idempotency_key": key, "segments": segments}),
            &["text"],
            "One text to classify.",
        ),
    );
    schemas.insert(
        "ClassifyBatch".into(),
        object(batch("#/components/schemas/ItemIn", json!({"channel": channel})), &["items"], "A batch to classify."),
    );
    schemas.insert(
        "ClassifyRequest".into(),
        json!({"description": "Either one text (`text`) or a batch (`items`), not both.",
            "oneOf": [{"$ref": "#/components/schemas/ClassifyText"}, {"$ref": "#/components/schemas/ClassifyBatch"}]}),
    );
    let body = |name: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}});
    doc["paths"]["/v1/classify"]["post"]["requestBody"] = body("ClassifyRequest");
    for p in ["/v1/flags", "/v1/segment"] {
        doc["paths"][p]["post"]["requestBody"] = body("TextsRequest");
    }
    // The other bodies: unknown fields are refused (serde `deny_unknown_fields`).
    let schemas = doc["components"]["schemas"].as_object_mut().expect("components.schemas");
    for name in ["MessageIn", "PatchIn", "EraseRequest"] {
        if let Some(o) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            o.insert("additionalProperties".into(), json!(false));
        }
    }
    // Message texts as classify texts; timestamps RFC 3339.
    if let Some(m) = schemas["MessageIn"]["properties"].as_object_mut() {
        m.insert("text".into(), text);
        if let Some(t) = m.get_mut("timestamp").and_then(Value::as_object_mut) {
            t.insert("format".into(), json!("date-time"));
        }
    }
    // A change names the version it was read at (`If-Match` is the header alternative, described, not generated).
    if let Some(p) = schemas.get_mut("PatchIn").and_then(Value::as_object_mut) {
        p.insert("required".into(), json!(["version"]));
        if let Some(v) = p["properties"]["version"].as_object_mut() {
            v.insert("type".into(), json!("integer"));
        }
        for f in ["assignee", "note"] {
            if let Some(o) = p["properties"][f].as_object_mut() {
                o.insert("maxLength".into(), json!(super::reviews::MAX_NOTE_CHARS));
            }
        }
    }
    if let Some(o) = schemas["EraseRequest"]["properties"]["customer_ref"].as_object_mut() {
        o.insert("pattern".into(), json!(NOT_BLANK));
    }
    // The event stream: each SSE event names its type, and its `data` is one `Event` as JSON.
    let schemas = doc["components"]["schemas"].as_object_mut().expect("components.schemas");
    schemas.insert(
        "SseEvent".into(),
        json!({"type": "object", "description": "One Server-Sent Event of the stream (`event`, `id`, `data` lines).",
            "properties": {
                "event": {"type": "string", "enum": ["snapshot", "message", "closed"]},
                "id": {"type": "string", "description": "The last message's `seq` (absent on `closed`)."},
                "data": {"type": "string", "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/Event"}, "description": "The `Event`, as one line of JSON."},
                "retry": {"type": "integer"}
            },
            "required": ["event", "data"]}),
    );
    if let Some(c) = doc["paths"]["/v1/conversations/{id}/events"]["get"]["responses"]["200"]["content"]
        ["text/event-stream"]
        .as_object_mut()
    {
        c.insert("schema".into(), json!({"$ref": "#/components/schemas/SseEvent"}));
    }
    // Conversation ids.
    for (path, _) in
        doc["paths"].clone().as_object().into_iter().flatten().filter(|(p, _)| p.starts_with("/v1/conversations/"))
    {
        for op in doc["paths"][path].as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            for p in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                if p["name"] == "id" && p["in"] == "path" {
                    p["schema"] = json!({"type": "string", "pattern": CONVERSATION_ID});
                }
            }
        }
    }
}
