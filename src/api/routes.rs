//! Route handlers. Each one validates its input, hands CPU work to the
//! blocking pool (model work also through [`Admission`]), and maps every
//! failure to an [`ApiError`].

use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::read_json;
use super::types::*;
use super::AppState;
use crate::pipeline::Classified;

/// A validated request: the items to work on and whether it was a batch.
struct Work {
    batch: bool,
    ids: Vec<Option<ItemId>>,
    texts: Vec<String>,
    segments: bool,
}

fn validate(req: TextsRequest, state: &AppState) -> Result<Work, ApiError> {
    let s = &state.settings;
    let (batch, ids, texts) = match (req.text, req.items) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("invalid_request", "give either `text` or `items`, not both")),
        (None, None) => return Err(ApiError::invalid("invalid_request", "missing `text` (one text) or `items` (a batch)")),
        (Some(t), None) => (false, vec![req.id], vec![t]),
        (None, Some(items)) => {
            if req.id.is_some() {
                return Err(ApiError::invalid("invalid_request", "`id` goes inside each item of `items`"));
            }
            if items.is_empty() {
                return Err(ApiError::invalid("empty_batch", "`items` is empty"));
            }
            if items.len() > s.max_items {
                return Err(ApiError::TooLarge { code: "too_many_items", message: format!("{} items; at most {} per request", items.len(), s.max_items) });
            }
            let ids = items.iter().enumerate().map(|(i, it)| Some(it.id.clone().unwrap_or(ItemId::Int(i as i64)))).collect();
            (true, ids, items.into_iter().map(|it| it.text).collect())
        }
    };
    for (i, t) in texts.iter().enumerate() {
        check_text(&if batch { format!("items[{i}].text") } else { "text".to_string() }, t, s)?;
    }
    Ok(Work { batch, ids, texts, segments: req.segments })
}

/// Check one text against the limits: not blank (422 `empty_text`), at most
/// `max_text_chars` chars (413 `text_too_long`). `at` names it in the message.
pub(super) fn check_text(at: &str, t: &str, s: &crate::config::Settings) -> Result<(), ApiError> {
    if t.trim().is_empty() {
        return Err(ApiError::invalid("empty_text", format!("{at} is empty")));
    }
    let n = t.chars().count();
    if n > s.max_text_chars {
        return Err(ApiError::TooLarge { code: "text_too_long", message: format!("{at} has {n} chars; at most {}", s.max_text_chars) });
    }
    Ok(())
}

/// Run CPU-bound work on the blocking pool.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, ApiError> {
    web::block(f).await.map_err(|e| ApiError::Internal(format!("worker failed: {e}")))
}

/// Classify `texts` with the model: through admission control, on the
/// blocking pool, counted in the metrics. Exactly one result per text, in order.
pub(super) async fn run_classify(state: &AppState, texts: Vec<String>, segments: bool) -> Result<Vec<Classified>, ApiError> {
    if state.pipeline.model().is_none() {
        return Err(ApiError::NotReady);
    }
    let permit = state.admission.admit().await?;
    let pipeline = Arc::clone(&state.pipeline);
    let n = texts.len();
    let results = blocking(move || {
        let _permit = permit;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        pipeline.classify(&refs, segments)
    })
    .await??;
    if results.len() != n {
        return Err(ApiError::Internal(format!("{} results for {n} items", results.len())));
    }
    for r in &results {
        state.metrics.observe_classified(r);
    }
    Ok(results)
}

/// Single or batch classify answer.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ClassifyResponse {
    Single(ClassifyItem),
    Batch(ClassifyBatchResponse),
}

/// Classify one text or a batch: category, emotion/escalation, legal-risk flags.
#[utoipa::path(post, path = "/v1/classify", tag = "classify", request_body = TextsRequest,
    responses(
        (status = 200, description = "One result per input, in input order", body = ClassifyResponse),
        (status = 400, description = "Broken JSON or invalid UTF-8", body = ErrorBody),
        (status = 413, description = "Body, item count or a text over its limit", body = ErrorBody),
        (status = 415, description = "Content type is not application/json", body = ErrorBody),
        (status = 422, description = "Empty text, wrong field types or shape", body = ErrorBody),
        (status = 503, description = "Overloaded, timed out or model not loaded (Retry-After)", body = ErrorBody),
    ))]
pub async fn classify(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let t0 = Instant::now();
    let parsed: TextsRequest = read_json(&req, body, state.settings.max_body_bytes).await?;
    let work = validate(parsed, &state)?;
    let model_version = state.pipeline.model().map(|m| m.info().version.clone()).ok_or(ApiError::NotReady)?;
    let n = work.texts.len();
    let results = run_classify(&state, work.texts, work.segments).await?;
    tracing::info!(items = n, took_ms = t0.elapsed().as_secs_f64() * 1e3, "classified");
    let items: Vec<ClassifyItem> = work.ids.into_iter().zip(results).map(|(id, result)| ClassifyItem { id, result }).collect();
    Ok(if work.batch {
        HttpResponse::Ok().json(ClassifyBatchResponse { items, model_version, took_ms: t0.elapsed().as_secs_f64() * 1e3 })
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
    let (t0, work, reports) = per_text(&req, body, &state, |p, t| p.flags(t)).await?;
    for r in &reports {
        state.metrics.observe_flags(r);
    }
    let items: Vec<FlagsItem> = work.ids.into_iter().zip(reports).map(|(id, flags)| FlagsItem { id, flags }).collect();
    Ok(if work.batch {
        let lexicon_version = state.pipeline.flagger().version().to_string();
        HttpResponse::Ok().json(FlagsBatchResponse { items, lexicon_version, took_ms: t0.elapsed().as_secs_f64() * 1e3 })
    } else {
        HttpResponse::Ok().json(items.into_iter().next().expect("one item"))
    })
}

/// Read and validate a request, then run `f` on each text on the blocking pool
/// (no model, so no admission control). Results are in input order.
async fn per_text<R: Send + 'static>(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
    f: fn(&crate::pipeline::Pipeline, &str) -> R,
) -> Result<(Instant, Work, Vec<R>), ApiError> {
    let t0 = Instant::now();
    let parsed: TextsRequest = read_json(req, body, state.settings.max_body_bytes).await?;
    let mut work = validate(parsed, state)?;
    let pipeline = Arc::clone(&state.pipeline);
    let texts = std::mem::take(&mut work.texts);
    let out = blocking(move || texts.iter().map(|t| f(&pipeline, t)).collect::<Vec<_>>()).await?;
    Ok((t0, work, out))
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
pub async fn segment(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (t0, work, segs) = per_text(&req, body, &state, |p, t| p.segment(t)).await?;
    let items: Vec<SegmentItem> = work.ids.into_iter().zip(segs).map(|(id, segments)| SegmentItem { id, segments }).collect();
    Ok(if work.batch {
        HttpResponse::Ok().json(SegmentBatchResponse { items, took_ms: t0.elapsed().as_secs_f64() * 1e3 })
    } else {
        HttpResponse::Ok().json(items.into_iter().next().expect("one item"))
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok".into(), model_loaded: None, lexicon_terms: None })
}

/// Readiness: the model and the word lists are loaded.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.pipeline.model().is_none() {
        return Err(ApiError::NotReady);
    }
    Ok(HttpResponse::Ok().json(Health { status: "ready".into(), model_loaded: Some(true), lexicon_terms: Some(state.pipeline.flagger().term_count()) }))
}

/// Model version and labels, lexicon version and size, limits.
#[utoipa::path(get, path = "/v1/info", tag = "ops", responses((status = 200, body = Info)))]
pub async fn info(state: web::Data<AppState>) -> HttpResponse {
    let s = &state.settings;
    let p = &state.pipeline;
    HttpResponse::Ok().json(Info {
        service_version: env!("CARGO_PKG_VERSION").to_string(),
        model: p.model().map(|m| {
            let i = m.info();
            ModelInfoOut {
                version: i.version.clone(),
                path: s.resources.model.display().to_string(),
                category_labels: i.category_labels.clone(),
                escalation_labels: i.escalation_labels.clone(),
                max_tokens: i.max_tokens,
                max_windows: i.max_windows,
                metadata: i.metadata.clone(),
            }
        }),
        lexicon: LexiconInfo {
            version: p.flagger().version().to_string(),
            term_count: p.flagger().term_count(),
            flags: crate::flags::Flag::ALL.to_vec(),
            user_dict_words: p.segmenter().user_words(),
        },
        limits: Limits {
            max_body_bytes: s.max_body_bytes,
            max_items: s.max_items,
            max_text_chars: s.max_text_chars,
            request_timeout_ms: s.request_timeout_ms,
            max_concurrent_inference: s.max_concurrent_inference,
            max_queued: s.max_queued,
        },
    })
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.conversations_live.set(state.conversations.len() as i64);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

/// This API's OpenAPI 3 description.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::document())
}
