//! The records on the three topics: complaint records in, results and dead
//! letters out.
//!
//! An input record's value is one JSON object:
//!
//! ```json
//! {"id": 17, "text": "...", "customer_ref": "C-1", "channel": "app",
//!  "tags": {"region": "sh"}, "timestamp": "2026-12-04T08:00:00+08:00",
//!  "idempotency_key": "app-17"}
//! ```
//!
//! Only `text` is required. Fields kesu does not know are ignored (producers
//! may carry more). `timestamp` is an RFC 3339 time or integer Unix
//! milliseconds. `customer_ref`, `channel` and `idempotency_key` follow the
//! HTTP API's rules ([`kesu_server::api::texts::check_fields`]). A record that
//! breaks a rule is a [`DeadLetter`], never dropped.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use kesu_server::api::error::ErrorCode;
use kesu_server::api::texts::{check_event_ms, check_fields, check_tags, event_time, IntakeItem};
use kesu_server::api::types::ItemId;
use kesu_server::settings::ServerSettings;

pub use kesu_server::api::texts::{MAX_TAGS, MAX_TAG_NAME_CHARS, MAX_TAG_VALUE_CHARS};

/// Where a record was read: echoed in its result or dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Source {
    /// The record's own idempotency key when it names none: unique per
    /// record of the input topic, so a re-read record is a replay.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.topic, self.partition, self.offset)
    }
}

/// A record's event time, as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Timestamp {
    /// Unix milliseconds.
    Millis(i64),
    /// RFC 3339.
    Text(String),
}

#[derive(Deserialize)]
struct Wire {
    id: Option<ItemId>,
    text: String,
    customer_ref: Option<String>,
    channel: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    timestamp: Option<Timestamp>,
    idempotency_key: Option<String>,
}

/// A valid complaint record.
#[derive(Debug, Clone)]
pub struct Complaint {
    pub source: Source,
    /// The message key, copied to the result (so results partition like the input).
    pub key: Option<Vec<u8>>,
    pub id: Option<ItemId>,
    pub tags: BTreeMap<String, String>,
    pub timestamp: Option<Timestamp>,
    /// The record's value as read (for its dead letter, should the store refuse it).
    pub value: Vec<u8>,
    /// What the intake path classifies and stores; its idempotency key is
    /// the record's own or else [`Source::key`].
    pub item: IntakeItem,
}

/// Why a record could not be processed: its dead letter carries this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The HTTP API's error code for the same fault (`invalid_json`, `empty_text`, ...).
    pub code: String,
    pub message: String,
}

impl Rejection {
    fn new(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection { code: code.as_str().to_string(), message: message.into() }
    }
}

/// Parse and check one record's value.
pub fn parse(
    source: Source,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    s: &ServerSettings,
) -> Result<Complaint, Rejection> {
    let Some(payload) = payload else {
        return Err(Rejection::new(ErrorCode::InvalidJson, "the record has no value (a tombstone)"));
    };
    let text = std::str::from_utf8(payload).map_err(|e| {
        Rejection::new(ErrorCode::InvalidUtf8, format!("the value is not UTF-8 (at byte {})", e.valid_up_to()))
    })?;
    let w: Wire = serde_json::from_str(text).map_err(|e| {
        let code = if e.is_data() { ErrorCode::InvalidRequest } else { ErrorCode::InvalidJson };
        Rejection::new(code, format!("the value is not a complaint record: {e}"))
    })?;
    let at = |f: &str| f.to_string();
    check_fields(&at, &w.text, w.customer_ref.as_deref(), w.channel.as_deref(), w.idempotency_key.as_deref(), s)
        .map_err(|e| Rejection { code: e.code.as_str().to_string(), message: e.message })?;
    let reject =
        |e: kesu_server::api::error::ApiError| Rejection { code: e.code.as_str().to_string(), message: e.message };
    check_tags(&at, &w.tags).map_err(reject)?;
    let received_at = match &w.timestamp {
        None => None,
        Some(Timestamp::Text(t)) => Some(event_time("timestamp", t, s).map_err(reject)?),
        Some(Timestamp::Millis(ms)) => Some(check_event_ms("timestamp", *ms, s).map_err(reject)?),
    };
    let caller_id = w.id.as_ref().map(|id| match id {
        ItemId::Int(n) => n.to_string(),
        ItemId::Str(s) => s.clone(),
    });
    let idempotency_key = Some(w.idempotency_key.unwrap_or_else(|| source.key()));
    Ok(Complaint {
        key: key.map(<[u8]>::to_vec),
        value: payload.to_vec(),
        id: w.id,
        item: IntakeItem {
            text: w.text,
            customer_ref: w.customer_ref,
            channel: w.channel,
            caller_id,
            idempotency_key,
            tags: w.tags.clone(),
            received_at,
        },
        tags: w.tags,
        timestamp: w.timestamp,
        source,
    })
}

/// The value of a result record.
#[derive(Debug, Serialize)]
pub struct ResultRecord<'a> {
    pub id: &'a Option<ItemId>,
    pub source: &'a Source,
    pub result: &'a kesu_core::pipeline::Classified,
    /// Its review id when the store keeps it.
    pub review_id: &'a Option<String>,
    /// Read before (a re-delivered record): classified again, stored and counted once.
    pub replayed: bool,
    pub model_version: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: &'a Option<Timestamp>,
}

/// The value of a dead-letter record: the error, where the record was read,
/// and its value (as text when it is UTF-8, else base64).
///
/// A value over [`MAX_DEAD_LETTER_PAYLOAD`] bytes is cut there (at a char
/// boundary) with `payload_truncated`, its length and SHA-256, so that a dead
/// letter always fits under the brokers' default 1 MB message limit (escaping
/// makes JSON at most 6 times the bytes it holds); the whole record stays in
/// the input topic at `source`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeadLetter {
    pub error: Rejection,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub payload_truncated: bool,
    /// The whole value's length and SHA-256 (hex), when it was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
}

/// Most bytes of a record's value a dead letter carries.
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 128 * 1024;

impl DeadLetter {
    pub fn new(error: Rejection, source: Source, payload: Option<&[u8]>) -> DeadLetter {
        let whole = payload.unwrap_or_default();
        let truncated = whole.len() > MAX_DEAD_LETTER_PAYLOAD;
        let kept = match std::str::from_utf8(whole) {
            Ok(t) if truncated => {
                let mut end = MAX_DEAD_LETTER_PAYLOAD;
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                &whole[..end]
            }
            _ if truncated => &whole[..MAX_DEAD_LETTER_PAYLOAD],
            _ => whole,
        };
        let (text, b64) = match (payload, std::str::from_utf8(whole)) {
            (None, _) => (None, None),
            (Some(_), Ok(_)) => (Some(String::from_utf8_lossy(kept).into_owned()), None),
            (Some(_), Err(_)) => (None, Some(base64::engine::general_purpose::STANDARD.encode(kept))),
        };
        let (bytes, sha) = if truncated {
            use sha2::Digest;
            (Some(whole.len()), Some(hex::encode(sha2::Sha256::digest(whole))))
        } else {
            (None, None)
        };
        DeadLetter {
            error,
            source,
            payload: text,
            payload_base64: b64,
            payload_truncated: truncated,
            payload_bytes: bytes,
            payload_sha256: sha,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Source {
        Source { topic: "complaints".into(), partition: 2, offset: 41 }
    }

    fn code(payload: Option<&[u8]>) -> String {
        match parse(src(), None, payload, &ServerSettings::default()) {
            Ok(_) => "ok".into(),
            Err(r) => r.code,
        }
    }

    #[test]
    fn accepts_and_rejects() {
        let long = format!(r#"{{"text": "{}"}}"#, "长".repeat(ServerSettings::default().max_text_chars + 1));
        let many_tags = format!(
            r#"{{"text": "x", "tags": {{{}}}}}"#,
            (0..=MAX_TAGS).map(|i| format!(r#""t{i}": "v""#)).collect::<Vec<_>>().join(",")
        );
        let cases: &[(Option<&[u8]>, &str)] = &[
            (Some(br#"{"text": "\u8d26\u53f7\u88ab\u76d7"}"#), "ok"),
            (Some(br#"{"id": 7, "text": "x", "extra": [1, 2], "tags": {"region": "sh"}}"#), "ok"),
            (Some(br#"{"text": "x", "timestamp": 1764800000000}"#), "ok"),
            (Some(br#"{"text": "x", "timestamp": "2026-12-04T08:00:00+08:00"}"#), "ok"),
            (Some(br#"{"text": "x", "timestamp": "yesterday"}"#), "invalid_timestamp"),
            (None, "invalid_json"),
            (Some(b"\xff\xfe"), "invalid_utf8"),
            (Some(b"{\"text\": "), "invalid_json"),
            (Some(b"[1, 2]"), "invalid_request"),
            (Some(br#"{"id": 1}"#), "invalid_request"),
            (Some(br#"{"text": 5}"#), "invalid_request"),
            (Some(br#"{"text": "  "}"#), "empty_text"),
            (Some(long.as_bytes()), "text_too_long"),
            (Some(br#"{"text": "x", "customer_ref": " "}"#), "invalid_customer_ref"),
            (Some(br#"{"text": "x", "channel": ""}"#), "invalid_channel"),
            (Some(br#"{"text": "x", "idempotency_key": "has space"}"#), "invalid_idempotency_key"),
            (Some(br#"{"text": "x", "tags": {"bad name": "v"}}"#), "invalid_request"),
            (Some(br#"{"text": "x", "tags": {"n": 3}}"#), "invalid_request"),
            (Some(many_tags.as_bytes()), "invalid_request"),
        ];
        for (payload, want) in cases {
            assert_eq!(code(*payload), *want, "{:?}", payload.map(String::from_utf8_lossy));
        }
    }

    #[test]
    fn idempotency_key_is_the_records_or_its_offset() {
        let s = ServerSettings::default();
        let c = parse(src(), Some(b"C-1"), Some(br#"{"text": "x", "customer_ref": "C-1"}"#), &s).unwrap();
        assert_eq!(c.item.idempotency_key.as_deref(), Some("complaints:2:41"));
        assert_eq!(c.key.as_deref(), Some(&b"C-1"[..]));
        let c = parse(src(), None, Some(br#"{"id": "a", "text": "x", "idempotency_key": "k-1"}"#), &s).unwrap();
        assert_eq!(c.item.idempotency_key.as_deref(), Some("k-1"));
        assert_eq!(c.item.caller_id.as_deref(), Some("a"));
    }

    #[test]
    fn dead_letters_keep_the_value() {
        let d = DeadLetter::new(Rejection::new(ErrorCode::InvalidJson, "x"), src(), Some(b"not json"));
        assert_eq!(d.payload.as_deref(), Some("not json"));
        let d = DeadLetter::new(Rejection::new(ErrorCode::InvalidUtf8, "x"), src(), Some(b"\xff"));
        assert_eq!(d.payload_base64.as_deref(), Some("/w=="));
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["source"]["offset"], 41);
        assert_eq!(v["error"]["code"], "invalid_utf8");
        assert!(v.get("payload_truncated").is_none());
        // Over the cap: cut at a char boundary, with the whole value's length and hash.
        let big = "长".repeat(MAX_DEAD_LETTER_PAYLOAD); // 3 bytes each
        let d = DeadLetter::new(Rejection::new(ErrorCode::TextTooLong, "x"), src(), Some(big.as_bytes()));
        let kept = d.payload.as_deref().unwrap();
        assert!(kept.len() <= MAX_DEAD_LETTER_PAYLOAD && kept.len() > MAX_DEAD_LETTER_PAYLOAD - 3);
        assert!(big.starts_with(kept));
        assert!(d.payload_truncated);
        assert_eq!(d.payload_bytes, Some(big.len()));
        assert_eq!(d.payload_sha256.as_deref().map(str::len), Some(64));
        let control = "\u{1}".repeat(MAX_DEAD_LETTER_PAYLOAD * 4);
        let d = DeadLetter::new(Rejection::new(ErrorCode::InvalidJson, "x"), src(), Some(control.as_bytes()));
        assert!(serde_json::to_string(&d).unwrap().len() < 1_000_000, "fits the default message limit");
        let d = DeadLetter::new(Rejection::new(ErrorCode::InvalidUtf8, "x"), src(), Some(&vec![0xff; 300_000]));
        assert_eq!(d.payload_base64.as_deref().map(str::len), Some(MAX_DEAD_LETTER_PAYLOAD.div_ceil(3) * 4));
    }
}
