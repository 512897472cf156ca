//! The text routes: `/v1/classify`, `/v1/flags`, `/v1/segment`. Each
//! handler validates its input, hands CPU work to the blocking pool (model
//! work also through [`Admission`]), and maps every failure to an [`ApiError`].

use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::read_json;
use super::types::*;
use super::AppState;
use kesu_core::lists::WordLists;
use kesu_core::pipeline::Classified;

/// A validated request: the items to work on and whether it was a batch.
struct Work {
    batch: bool,
    ids: Vec<Option<ItemId>>,
    texts: Vec<String>,
    /// The items' `customer_ref`s (classify only).
    refs: Vec<Option<String>>,
    /// The items' intake channels (classify only).
    channels: Vec<Option<String>>,
    /// The items' idempotency keys (classify only).
    keys: Vec<Option<String>>,
    /// The items' tags and event times (classify only).
    tags: Vec<std::collections::BTreeMap<String, String>>,
    received: Vec<Option<i64>>,
    segments: bool,
}

/// Longest accepted `idempotency_key`, in chars (printable ASCII only).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// Longest accepted `channel`, in chars.
pub const MAX_CHANNEL_CHARS: usize = 64;

/// Longest accepted `customer_ref`, in chars.
pub const MAX_CUSTOMER_REF_CHARS: usize = 256;

fn validate(req: TextsRequest, state: &AppState) -> Result<Work, ApiError> {
    let s = &state.settings;
    let channel = req.channel;
    let (batch, ids, texts, refs, channels, keys, tags, received) = match (req.text, req.items) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(ErrorCode::InvalidRequest, "give either `text` or `items`, not both"))
        }
        (None, None) => {
            return Err(ApiError::new(ErrorCode::InvalidRequest, "missing `text` (one text) or `items` (a batch)"))
        }
        (Some(t), None) => (
            false,
            vec![req.id],
            vec![t],
            vec![req.customer_ref],
            vec![channel],
            vec![req.idempotency_key],
            vec![req.tags],
            vec![req.received_at],
        ),
        (None, Some(items)) => {
            if req.id.is_some()
                || req.customer_ref.is_some()
                || req.idempotency_key.is_some()
                || !req.tags.is_empty()
                || req.received_at.is_some()
            {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "`id`, `customer_ref`, `idempotency_key`, `tags` and `received_at` go inside each item of `items`",
                ));
            }
            if items.is_empty() {
                return Err(ApiError::new(ErrorCode::EmptyBatch, "`items` is empty"));
            }
            if items.len() > s.max_items {
                return Err(ApiError::new(
                    ErrorCode::TooManyItems,
                    format!("{} items; at most {} per request", items.len(), s.max_items),
                ));
            }
            let ids =
                items.iter().enumerate().map(|(i, it)| Some(it.id.clone().unwrap_or(ItemId::Int(i as i64)))).collect();
            let refs = items.iter().map(|it| it.customer_ref.clone()).collect();
            let channels = items.iter().map(|it| it.channel.clone().or_else(|| channel.clone())).collect();
            let keys = items.iter().map(|it| it.idempotency_key.clone()).collect();
            let tags = items.iter().map(|it| it.tags.clone()).collect();
            let received = items.iter().map(|it| it.received_at.clone()).collect();
            (true, ids, items.into_iter().map(|it| it.text).collect(), refs, channels, keys, tags, received)
        }
    };
    // Every text first (a 413 for a long text wins over a 422 for another item's field), then the rest.
    for (i, t) in texts.iter().enumerate() {
        check_text(&if batch { format!("items[{i}].text") } else { "text".to_string() }, t, s)?;
    }
    for i in 0..texts.len() {
        let at = |field: &str| if batch { format!("items[{i}].{field}") } else { field.to_string() };
        check_fields(&at, &texts[i], refs[i].as_deref(), channels[i].as_deref(), keys[i].as_deref(), s)?;
        check_tags(&at, &tags[i])?;
    }
    let mut received_ms = Vec::with_capacity(received.len());
    for (i, r) in received.iter().enumerate() {
        let at = if batch { format!("items[{i}].received_at") } else { "received_at".to_string() };
        received_ms.push(match r {
            None => None,
            Some(r) => Some(event_time(&at, r, s)?),
        });
    }
    let mut seen_keys = std::collections::HashSet::new();
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            let at = if batch { format!("items[{i}].idempotency_key") } else { "idempotency_key".to_string() };
            if !seen_keys.insert(k.as_str()) {
                return Err(ApiError::new(
                    ErrorCode::InvalidIdempotencyKey,
                    format!("{at} repeats an earlier item's key"),
                ));
            }
        }
    }
    Ok(Work { batch, ids, texts, refs, channels, keys, tags, received: received_ms, segments: req.segments })
}

/// Most tags one item may carry.
pub const MAX_TAGS: usize = 16;
/// Longest tag name (ASCII letters, digits, `_`, `-`, `.`).
pub const MAX_TAG_NAME_CHARS: usize = 64;
/// Longest tag value, in chars.
pub const MAX_TAG_VALUE_CHARS: usize = 128;

/// Check an item's tags (422 `invalid_request`): at most [`MAX_TAGS`], names
/// of 1-[`MAX_TAG_NAME_CHARS`] ASCII letters, digits, `_`, `-` or `.`, values
/// of at most [`MAX_TAG_VALUE_CHARS`] chars.
pub fn check_tags(
    at: &dyn Fn(&str) -> String,
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{}: {} tags; at most {MAX_TAGS}", at("tags"), tags.len()),
        ));
    }
    for (k, v) in tags {
        let name_ok = !k.is_empty()
            && k.len() <= MAX_TAG_NAME_CHARS
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "{}: tag name {k:?}: 1-{MAX_TAG_NAME_CHARS} ASCII letters, digits, '_', '-' or '.'",
                    at("tags")
                ),
            ));
        }
        if v.chars().count() > MAX_TAG_VALUE_CHARS {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("{}: tag {k:?}: the value is over {MAX_TAG_VALUE_CHARS} chars", at("tags")),
            ));
        }
    }
    Ok(())
}

/// An item's event time (unix ms) from its RFC 3339 `received_at` (422
/// `invalid_timestamp` when unparsable or more than `max_clock_skew_secs` ahead).
pub fn event_time(at: &str, received_at: &str, s: &crate::settings::ServerSettings) -> Result<i64, ApiError> {
    let t = time::OffsetDateTime::parse(received_at, &time::format_description::well_known::Rfc3339).map_err(|e| {
        ApiError::new(ErrorCode::InvalidTimestamp, format!("{at} {received_at:?} is not an RFC 3339 time: {e}"))
    })?;
    check_event_ms(at, (t.unix_timestamp_nanos() / 1_000_000) as i64, s)
}

/// [`event_time`] for a time given as unix ms: at most `max_clock_skew_secs`
/// ahead of now, and not before 1970.
pub fn check_event_ms(at: &str, ms: i64, s: &crate::settings::ServerSettings) -> Result<i64, ApiError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let ahead = ms.saturating_sub(now);
    if ahead > (s.max_clock_skew_secs as i64).saturating_mul(1000) {
        return Err(ApiError::new(
            ErrorCode::InvalidTimestamp,
            format!(
                "{at} is {} s in the future; at most {} s of clock skew is allowed",
                ahead / 1000,
                s.max_clock_skew_secs
            ),
        ));
    }
    if ms < 0 {
        return Err(ApiError::new(ErrorCode::InvalidTimestamp, format!("{at} is before 1970")));
    }
    Ok(ms)
}

/// Check one item's fields against the limits, as every intake does (HTTP
/// classify, the Kafka consumer): the text ([`check_text`]), `customer_ref`
/// (1-256 chars, not blank), `channel` (1-64 chars, not blank) and
/// `idempotency_key` (1-128 printable ASCII characters). `at` names a field
/// in the error message.
pub fn check_fields(
    at: &dyn Fn(&str) -> String,
    text: &str,
    customer_ref: Option<&str>,
    channel: Option<&str>,
    idempotency_key: Option<&str>,
    s: &crate::settings::ServerSettings,
) -> Result<(), ApiError> {
    check_text(&at("text"), text, s)?;
    if let Some(r) = customer_ref {
        let n = r.chars().count();
        if r.trim().is_empty() || n > MAX_CUSTOMER_REF_CHARS {
            return Err(ApiError::new(
                ErrorCode::InvalidCustomerRef,
                format!("{} must be 1-{MAX_CUSTOMER_REF_CHARS} chars and not blank ({n} chars)", at("customer_ref")),
            ));
        }
    }
    if let Some(c) = channel {
        let n = c.chars().count();
        if c.trim().is_empty() || n > MAX_CHANNEL_CHARS {
            return Err(ApiError::new(
                ErrorCode::InvalidChannel,
                format!("{} must be 1-{MAX_CHANNEL_CHARS} chars and not blank ({n} chars)", at("channel")),
            ));
        }
    }
    if let Some(k) = idempotency_key {
        if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_CHARS || !k.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::new(
                ErrorCode::InvalidIdempotencyKey,
                format!(
                    "{} must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters (no spaces)",
                    at("idempotency_key")
                ),
            ));
        }
    }
    Ok(())
}

/// Check one text against the limits: not blank (422 `empty_text`), at most
/// `max_text_chars` chars (413 `text_too_long`). `at` names it in the message.
pub fn check_text(at: &str, t: &str, s: &crate::settings::ServerSettings) -> Result<(), ApiError> {
    if t.trim().is_empty() {
        return Err(ApiError::new(ErrorCode::EmptyText, format!("{at} is empty")));
    }
    let n = t.chars().count();
    if n > s.max_text_chars {
        return Err(ApiError::new(ErrorCode::TextTooLong, format!("{at} has {n} chars; at most {}", s.max_text_chars)));
    }
    Ok(())
}

/// Sets its flag when dropped: held by a request's future, so that work on
/// the blocking pool learns that nobody waits for it any more.
#[derive(Default)]
pub(super) struct CancelOnDrop(pub(super) Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Run CPU-bound work on the blocking pool.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, ApiError> {
    web::block(f).await.map_err(|e| ApiError::internal(format!("worker failed: {e}")))
}

/// Classify `texts` with the model: through admission control, on the
/// blocking pool, counted in the metrics. Exactly one result per text, in order.
/// `refs` holds each text's `customer_ref` (may be empty: none), `events`
/// each contact's name for the repeat-contact tracker (may be empty: none).
pub(super) async fn run_classify(
    state: &AppState,
    texts: Vec<String>,
    refs: Vec<Option<String>>,
    events: Vec<Option<String>>,
    segments: bool,
) -> Result<Vec<Classified>, ApiError> {
    if state.pipeline.model().is_none() {
        return Err(ApiError::not_ready());
    }
    let permit = state.admission.admit().await?;
    let pipeline = Arc::clone(&state.pipeline);
    let n = texts.len();
    // Set when this future is dropped (the request's deadline passed or the
    // client went away): the model work stops at its next chunk and frees its slot.
    let cancel = CancelOnDrop::default();
    let flag = Arc::clone(&cancel.0);
    let results = blocking(move || {
        let _permit = permit;
        let items: Vec<kesu_core::pipeline::Input> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| kesu_core::pipeline::Input {
                text: t,
                customer_ref: refs.get(i).and_then(|r| r.as_deref()),
                contact_event: events.get(i).and_then(|e| e.as_deref()),
            })
            .collect();
        let r = pipeline.classify_items_until(&items, segments, &flag);
        if matches!(r, Err(kesu_core::pipeline::PipelineError::Cancelled)) {
            tracing::warn!(items = items.len(), "model work cancelled: its request is gone");
        }
        r
    })
    .await??;
    drop(cancel);
    if results.len() != n {
        return Err(ApiError::internal(format!("{} results for {n} items", results.len())));
    }
    for r in &results {
        state.metrics.observe_classified(r);
    }
    Ok(results)
}

/// Store the items whose triage says so ([`kesu_core::triage::Triage::store`]:
/// the `[store]` section and `store = true` rules of the loaded triage file),
/// all in one transaction, before anything is answered. HTTP classify and
/// conversation messages both store through here. Returns each item's review
/// id (`None`: not stored). A store failure fails the whole request with 503
/// `store_unavailable`, and then nothing of it was stored.
pub(super) async fn store_matching(
    state: &AppState,
    items: Vec<(&str, &Classified, kesu_store::record::Origin)>,
) -> Result<Vec<Option<String>>, ApiError> {
    let n = items.len();
    let mut replays = Replays { scope: String::new(), keys: vec![None; n], seen: vec![None; n] };
    let mask = state.settings.store_mask_pii;
    let counted = items
        .iter()
        .map(|(t, r, o)| {
            with_words(state, t, kesu_store::record::counted(r, o.channel.as_deref(), &Default::default(), None, mask))
        })
        .collect();
    store_keyed(state, items, counted, &mut replays).await
}

/// What the idempotency keys of one request found: per item, its key and
/// the live claim of an earlier request (a replay), if any.
pub(super) struct Replays {
    /// Keys are unique per scope: the API key's name.
    scope: String,
    keys: Vec<Option<String>>,
    seen: Vec<Option<kesu_store::Seen>>,
}

impl Replays {
    fn is_replay(&self, i: usize) -> bool {
        self.seen[i].is_some()
    }

    /// Look the keys up (nothing to do without a store or keys): an earlier
    /// claim with the same text makes the item a replay; one with another
    /// text is 422 `idempotency_key_reused`, before any work is done.
    async fn look_up(&mut self, state: &AppState, texts: &[String]) -> Result<(), ApiError> {
        let Some(store) = &state.store else { return Ok(()) };
        let open: Vec<&str> =
            self.keys.iter().zip(&self.seen).filter(|(_, s)| s.is_none()).filter_map(|(k, _)| k.as_deref()).collect();
        if open.is_empty() {
            return Ok(());
        }
        let found = store.seen_keys(&self.scope, &open, window_start(state)).await?;
        for (i, k) in self.keys.iter().enumerate() {
            let Some(seen) = k.as_deref().and_then(|k| found.get(k)) else { continue };
            if self.seen[i].is_some() {
                continue;
            }
            if seen.text_sha256 != kesu_store::text_sha256(&texts[i]) {
                return Err(ApiError::new(
                    ErrorCode::IdempotencyKeyReused,
                    format!(
                        "idempotency key {:?} was used with a different text within the last {} s; nothing was classified",
                        k.as_deref().unwrap_or(""),
                        state.settings.idempotency_window_secs
                    ),
                ));
            }
            self.seen[i] = Some(seen.clone());
        }
        Ok(())
    }
}

/// The repeat-contact event of an item with an idempotency key: a hash of
/// the key in its scope (no caller text kept).
fn contact_event(scope: &str, key: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(scope.as_bytes());
    h.update([0x1f]);
    h.update(key.as_bytes());
    hex::encode(h.finalize())
}

/// The hot-spot keyword candidates of `text` (jieba words of the PII-masked
/// text), when the item will be clustered; without a store or hot spots, none.
fn with_words(state: &AppState, text: &str, mut c: kesu_store::insights::Counted) -> kesu_store::insights::Counted {
    let clustered = state.store.as_ref().is_some_and(|s| s.insights().enabled && s.insights().hotspots);
    if clustered && !c.embedding.is_empty() {
        let masked = kesu_core::text::pii::mask(text).text;
        let segments = state.pipeline.segment(&masked);
        c.words = kesu_core::insights::hotspots::keyword_candidates(segments.iter().map(|s| s.word.as_str()));
    } else {
        c.embedding.clear();
    }
    c
}

/// Oldest claim time (unix ms) still inside the idempotency window.
fn window_start(state: &AppState) -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    now - (state.settings.idempotency_window_secs as i64).saturating_mul(1000)
}

/// [`store_matching`] with idempotency: items that are not replays are stored
/// (when their triage says so) and their keys claimed, in one transaction; a
/// replay stores nothing and answers the first request's review id. A key
/// claimed concurrently since the lookup turns its item into a replay and the
/// rest is tried again (three times, then 409 `idempotency_conflict`).
async fn store_keyed(
    state: &AppState,
    items: Vec<(&str, &Classified, kesu_store::record::Origin)>,
    counted: Vec<kesu_store::insights::Counted>,
    replays: &mut Replays,
) -> Result<Vec<Option<String>>, ApiError> {
    let mut out = vec![None; items.len()];
    let Some(store) = &state.store else { return Ok(out) };
    let texts: Vec<String> = items.iter().map(|(t, _, _)| t.to_string()).collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut picked = Vec::new();
        let mut rows = Vec::new();
        let mut claims = Vec::new();
        let mut counts = Vec::new();
        for (i, (text, r, origin)) in items.iter().enumerate() {
            if replays.is_replay(i) {
                continue;
            }
            let stored_at = r.triage.store.then(|| {
                rows.push(kesu_store::record::new_item(text, r, origin.clone(), state.settings.store_mask_pii));
                picked.push(i);
                rows.len() - 1
            });
            if let Some(c) = counted.get(i) {
                counts.push(kesu_store::insights::Counted { stored: stored_at, ..c.clone() });
            }
            if let Some(key) = &replays.keys[i] {
                claims.push(kesu_store::KeyClaim {
                    key: key.clone(),
                    text_sha256: kesu_store::text_sha256(text),
                    item: stored_at,
                });
            }
        }
        for (i, seen) in replays.seen.iter().enumerate() {
            out[i] = seen.as_ref().and_then(|s| s.item_id.clone());
        }
        if rows.is_empty() && claims.is_empty() && (counts.is_empty() || !store.insights().enabled) {
            return Ok(out);
        }
        let t0 = Instant::now();
        let stored = store.insert_claimed(&rows, &replays.scope, &claims, window_start(state), &counts, "intake").await;
        state.metrics.observe_store(t0.elapsed().as_secs_f64(), !matches!(stored, Err(kesu_store::StoreError::Db(_))));
        match stored {
            Ok(ids) => {
                for (i, id) in picked.into_iter().zip(ids) {
                    out[i] = Some(id);
                }
                return Ok(out);
            }
            Err(kesu_store::StoreError::KeyTaken(_)) if attempt < 3 => replays.look_up(state, &texts).await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One item for [`classify_and_store`], its fields checked ([`check_fields`]).
#[derive(Debug, Clone)]
pub struct IntakeItem {
    pub text: String,
    pub customer_ref: Option<String>,
    pub channel: Option<String>,
    /// The caller's own id of the item (kept with a stored item).
    pub caller_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// Free tags ([`check_tags`]); the configured names are counted by insights.
    pub tags: std::collections::BTreeMap<String, String>,
    /// Its event time (unix ms, [`check_event_ms`]); insights count it then (default: now).
    pub received_at: Option<i64>,
}

/// What [`classify_and_store`] did with one item.
#[derive(Debug)]
pub struct Intaken {
    pub result: Classified,
    /// Its review id when it is stored (now or, for a replay, the first time).
    pub review_id: Option<String>,
    /// Its idempotency key was claimed before (within the window) with the
    /// same text: classified again, but neither stored nor counted again.
    pub replayed: bool,
}

/// Classify `items` and store those the store rule keeps, with per-item
/// idempotency: the one path of every intake (HTTP classify, the Kafka
/// consumer). Keys are unique per `scope` (an API key's name, a consumer's
/// group) and must not repeat within one call. Exactly one outcome per item,
/// in order; an error means nothing of this call was stored. Errors: 422
/// `idempotency_key_reused` (a key seen with another text), 409
/// `idempotency_conflict` and the 503s (`overloaded`, `store_unavailable`, ...),
/// which are worth retrying. A caller that retries should use
/// [`classify_intake`] and retry only [`Classifying::store`]: classifying
/// again would count the items' repeat contacts again.
pub async fn classify_and_store(
    state: &AppState,
    scope: String,
    items: Vec<IntakeItem>,
    segments: bool,
) -> Result<Vec<Intaken>, ApiError> {
    let mut c = classify_intake(state, scope, items, segments).await?;
    c.store(state).await?;
    Ok(c.outcomes(state))
}

/// Items classified by [`classify_intake`], to be stored by [`Classifying::store`].
pub struct Classifying {
    items: Vec<IntakeItem>,
    results: Vec<Classified>,
    replays: Replays,
    review_ids: Option<Vec<Option<String>>>,
}

/// The first half of [`classify_and_store`]: look the idempotency keys up
/// (a replay adds no repeat contact) and classify. Repeat contacts are
/// recorded here, once.
pub async fn classify_intake(
    state: &AppState,
    scope: String,
    items: Vec<IntakeItem>,
    segments: bool,
) -> Result<Classifying, ApiError> {
    let n = items.len();
    let texts: Vec<String> = items.iter().map(|it| it.text.clone()).collect();
    let mut replays =
        Replays { scope, keys: items.iter().map(|it| it.idempotency_key.clone()).collect(), seen: vec![None; n] };
    replays.look_up(state, &texts).await?;
    let model_refs =
        items.iter().enumerate().map(|(i, it)| it.customer_ref.clone().filter(|_| !replays.is_replay(i))).collect();
    // An item with a key is one contact however often it is classified (a
    // retry after a failed store step, a Kafka record read again).
    let events = replays.keys.iter().map(|k| k.as_deref().map(|k| contact_event(&replays.scope, k))).collect();
    let results = run_classify(state, texts, model_refs, events, segments).await?;
    Ok(Classifying { items, results, replays, review_ids: None })
}

impl Classifying {
    /// Store what the store rule keeps and claim the keys, in one
    /// transaction; on an error nothing was stored, and calling it again
    /// retries (without classifying again).
    pub async fn store(&mut self, state: &AppState) -> Result<(), ApiError> {
        let to_store: Vec<_> = self
            .items
            .iter()
            .zip(&self.results)
            .map(|(it, r)| {
                let origin = kesu_store::record::Origin {
                    caller_id: it.caller_id.clone(),
                    channel: it.channel.clone(),
                    customer_ref: it.customer_ref.clone(),
                };
                (it.text.as_str(), r, origin)
            })
            .collect();
        let mask = state.settings.store_mask_pii;
        let counted = self
            .items
            .iter()
            .zip(&self.results)
            .map(|(it, r)| {
                let c = kesu_store::record::counted(r, it.channel.as_deref(), &it.tags, it.received_at, mask);
                with_words(state, &it.text, c)
            })
            .collect();
        self.review_ids = Some(store_keyed(state, to_store, counted, &mut self.replays).await?);
        Ok(())
    }

    /// One outcome per item, in order (after [`Classifying::store`] succeeded).
    pub fn outcomes(self, state: &AppState) -> Vec<Intaken> {
        let n = self.items.len();
        let replayed: Vec<bool> = (0..n).map(|i| self.replays.is_replay(i)).collect();
        let n_replayed = replayed.iter().filter(|r| **r).count();
        if n_replayed > 0 {
            state.metrics.idempotent_replays.inc_by(n_replayed as u64);
        }
        let review_ids = self.review_ids.unwrap_or_else(|| vec![None; n]);
        self.results
            .into_iter()
            .zip(review_ids)
            .zip(replayed)
            .map(|((result, review_id), replayed)| Intaken { result, review_id, replayed })
            .collect()
    }
}

/// Single or batch classify answer.
// Built once per response and serialised at once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ClassifyResponse {
    Single(ClassifyItem),
    Batch(ClassifyBatchResponse),
}

/// Classify one text or a batch: category, emotion/escalation, legal-risk flags, triage.
#[utoipa::path(post, path = "/v1/classify", tag = "classify", request_body = TextsRequest,
    responses(
        (status = 200, description = "One result per input, in input order", body = ClassifyResponse),
        (status = 400, description = "Broken JSON or invalid UTF-8", body = ErrorBody),
        (status = 413, description = "Body, item count or a text over its limit", body = ErrorBody),
        (status = 415, description = "Content type is not application/json", body = ErrorBody),
        (status = 409, description = "A concurrent request with the same idempotency key was storing at the same moment, three times running (`idempotency_conflict`; nothing stored; retry)", body = ErrorBody),
        (status = 422, description = "Empty text, invalid customer_ref, wrong field types or shape; an idempotency key reused with another text", body = ErrorBody),
        (status = 503, description = "Overloaded, timed out, store unavailable or model not loaded (Retry-After)", body = ErrorBody),
    ))]
pub async fn classify(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t0 = Instant::now();
    let parsed: TextsRequest = read_json(&req, body, state.settings.max_body_bytes).await?;
    let work = validate(parsed, &state)?;
    let model_version = state.pipeline.model().map(|m| m.info().version.clone()).ok_or(ApiError::not_ready())?;
    let n = work.texts.len();
    let Work { batch, ids, texts, refs, channels, keys, tags, received, segments } = work;
    let items = (0..n)
        .zip(texts)
        .zip(refs.into_iter().zip(channels).zip(keys))
        .zip(tags.into_iter().zip(received))
        .map(|(((i, text), ((customer_ref, channel), idempotency_key)), (tags, received_at))| IntakeItem {
            text,
            customer_ref,
            channel,
            caller_id: ids[i].as_ref().map(|id| match id {
                ItemId::Int(n) => n.to_string(),
                ItemId::Str(s) => s.clone(),
            }),
            idempotency_key,
            tags,
            received_at,
        })
        .collect();
    let done = classify_and_store(&state, super::reviews::actor_scope(&req), items, segments).await?;
    tracing::info!(
        items = n,
        replayed = done.iter().filter(|d| d.replayed).count(),
        stored = done.iter().filter(|d| d.review_id.is_some() && !d.replayed).count(),
        took_ms = t0.elapsed().as_secs_f64() * 1e3,
        "classified"
    );
    let items: Vec<ClassifyItem> = ids
        .into_iter()
        .zip(done)
        .map(|(id, d)| ClassifyItem { id, result: d.result, review_id: d.review_id, replayed: d.replayed })
        .collect();
    Ok(if batch {
        HttpResponse::Ok().json(ClassifyBatchResponse {
            items,
            model_version,
            took_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    } else {
        HttpResponse::Ok().json(items.into_iter().next().expect("one item"))
    })
}

/// Single or batch flags answer.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum FlagsResponse {
    Single(FlagsItem),
    Batch(FlagsBatchResponse),
}

/// Legal-risk flags only (no model): the fast path for compliance tooling.
#[utoipa::path(post, path = "/v1/flags", tag = "flags", request_body = TextsRequest,
    responses(
        (status = 200, description = "One result per input, in input order", body = FlagsResponse),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn flags(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (t0, work, lists, reports, _room) = per_text(&req, body, &state, |l, t| l.flagger.scan(t)).await?;
    for r in &reports {
        state.metrics.observe_flags(r);
    }
    let items: Vec<FlagsItem> = work.ids.into_iter().zip(reports).map(|(id, flags)| FlagsItem { id, flags }).collect();
    Ok(if work.batch {
        let lexicon_version = lists.flagger.version().to_string();
        HttpResponse::Ok().json(FlagsBatchResponse {
            items,
            lexicon_version,
            took_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    } else {
        HttpResponse::Ok().json(items.into_iter().next().expect("one item"))
    })
}

/// Read and validate a request, then run `f` on each text on the blocking pool
/// (no model: admitted by the [`super::admission::TextBudget`], whose room is
/// returned too; hold it until the answer is built, since the results are
/// what take the memory), all with one snapshot of the word lists (returned
/// too). Results are in input order.
async fn per_text<R: Send + 'static>(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
    f: fn(&WordLists, &str) -> R,
) -> Result<(Instant, Work, Arc<WordLists>, Vec<R>, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let t0 = Instant::now();
    let parsed: TextsRequest = read_json(req, body, state.settings.max_body_bytes).await?;
    let mut work = validate(parsed, state)?;
    if work.refs.iter().any(Option::is_some) {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "`customer_ref` is only used by /v1/classify"));
    }
    if work.channels.iter().any(Option::is_some) {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "`channel` is only used by /v1/classify"));
    }
    if work.keys.iter().any(Option::is_some) {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "`idempotency_key` is only used by /v1/classify (nothing else stores or counts)",
        ));
    }
    let chars: usize = work.texts.iter().map(|t| t.chars().count()).sum();
    let room = state.text_budget.admit(chars).await?;
    let lists = state.pipeline.lists();
    let texts = std::mem::take(&mut work.texts);
    let snapshot = Arc::clone(&lists);
    let out = blocking(move || texts.iter().map(|t| f(&snapshot, t)).collect::<Vec<_>>()).await?;
    Ok((t0, work, lists, out, room))
}

/// Single or batch segment answer.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SegmentResponse {
    Single(SegmentItem),
    Batch(SegmentBatchResponse),
}

/// Word segmentation only (jieba with kesu's user dictionary).
#[utoipa::path(post, path = "/v1/segment", tag = "segment", request_body = TextsRequest,
    responses(
        (status = 200, description = "One result per input, in input order", body = SegmentResponse),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn segment(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t0, work, _, segs, _room) = per_text(&req, body, &state, |l, t| l.segmenter.segment(t)).await?;
    let items: Vec<SegmentItem> =
        work.ids.into_iter().zip(segs).map(|(id, segments)| SegmentItem { id, segments }).collect();
    Ok(if work.batch {
        HttpResponse::Ok().json(SegmentBatchResponse { items, took_ms: t0.elapsed().as_secs_f64() * 1e3 })
    } else {
        HttpResponse::Ok().json(items.into_iter().next().expect("one item"))
    })
}
