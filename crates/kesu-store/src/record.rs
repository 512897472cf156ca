//! What the store keeps of one classified item, built from the classify
//! result: the text PII-masked (by default), the result with its flag spans
//! re-read from the masked text, and the columns the review queue filters on.

use super::NewItem;
use kesu_core::pipeline::Classified;
use kesu_core::text::pii;

/// Where an item came from (all optional, caller-supplied).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The caller's id for the item (as text).
    pub caller_id: Option<String>,
    pub channel: Option<String>,
    pub customer_ref: Option<String>,
}

/// The stored form of `text` classified as `result`.
///
/// Guarantees, with `mask_pii` (the default everywhere):
/// * the stored text is [`pii::mask`]ed: phone, ID-card, bank-card numbers and
///   e-mail addresses are replaced char for char, so the text keeps its length
///   in chars and every flag span `start..end` still points at the same
///   characters;
/// * every flag hit's `text` is re-read from the masked text at its span, so no
///   part of the stored result holds an unmasked number;
/// * segments (jieba tokens, which may hold personal data) are not stored;
/// * the caller's id, channel and `customer_ref` are masked the same way (a
///   phone number used as a customer reference is personal data too).
pub fn new_item(text: &str, result: &Classified, origin: Origin, mask_pii: bool) -> NewItem {
    let m = |s: String| if mask_pii { pii::mask(&s).text } else { s };
    let stored = m(text.to_string());
    let chars: Vec<char> = stored.chars().collect();
    let mut r = result.clone();
    r.segments = None;
    for h in &mut r.flags.hits {
        if h.start <= h.end && h.end <= chars.len() {
            h.text = chars[h.start..h.end].iter().collect();
        }
    }
    let value = serde_json::to_value(&r).unwrap_or(serde_json::Value::Null);
    NewItem {
        caller_id: origin.caller_id.map(m),
        channel: origin.channel.map(m),
        customer_ref_given: origin.customer_ref.clone(),
        customer_ref: origin.customer_ref.map(m),
        text: stored,
        result: value,
        flags: r.flags.flags.iter().map(|f| f.as_str().to_string()).collect(),
        max_severity: r.flags.max_severity,
        category: r.category.label.clone(),
        escalation: r.emotion.level,
        priority: r.triage.priority.to_string(),
        route: r.triage.route.clone(),
    }
}

/// What the insights aggregates count of `result` ([`crate::insights`]):
/// its labels and flags, the channel and tag values [`pii::mask`]ed when
/// `mask_pii`, at `at_ms` (the caller's event time, else now).
pub fn counted(
    result: &Classified,
    channel: Option<&str>,
    tags: &std::collections::BTreeMap<String, String>,
    at_ms: Option<i64>,
    mask_pii: bool,
) -> crate::insights::Counted {
    let m = |s: &str| if mask_pii { pii::mask(s).text } else { s.to_string() };
    crate::insights::Counted {
        at_ms: at_ms.unwrap_or_else(crate::now_ms),
        category: result.category.label.clone(),
        escalation: result.emotion.level,
        priority: result.triage.priority.to_string(),
        route: result.triage.route.clone(),
        channel: channel.map(m),
        flags: result.flags.flags.iter().map(|f| f.as_str().to_string()).collect(),
        tags: tags.iter().map(|(k, v)| (k.clone(), m(v))).collect(),
        embedding: result.embedding.clone(),
        words: Vec::new(),
        stored: None,
    }
}
