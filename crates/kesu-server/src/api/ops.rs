//! Operations routes: liveness, readiness, `/v1/info`, metrics and the
//! OpenAPI document.

use actix_web::{web, HttpResponse};

use super::error::{ApiError, ErrorBody};
use super::types::*;
use super::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok".into(), model_loaded: None, lexicon_terms: None })
}

/// Readiness: the model and the word lists are loaded.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.pipeline.model().is_none() {
        return Err(ApiError::not_ready());
    }
    Ok(HttpResponse::Ok().json(Health {
        status: "ready".into(),
        model_loaded: Some(true),
        lexicon_terms: Some(state.pipeline.lists().flagger.term_count()),
    }))
}

/// Model version and labels, lexicon version and size, triage rules version, reload state, limits.
#[utoipa::path(get, path = "/v1/info", tag = "ops", responses((status = 200, body = Info)))]
pub async fn info(state: web::Data<AppState>) -> HttpResponse {
    let s = &state.settings;
    let p = &state.pipeline;
    let lists = p.lists();
    let contacts = p.contacts();
    let (failed, last_error) = state.reloads.failures();
    HttpResponse::Ok().json(Info {
        service_version: env!("CARGO_PKG_VERSION").to_string(),
        model: p.model().map(|m| {
            let i = m.info();
            ModelInfoOut {
                version: i.version.clone(),
                path: s.model_path.display().to_string(),
                category_labels: i.category_labels.clone(),
                escalation_labels: i.escalation_labels.clone(),
                max_tokens: i.max_tokens,
                max_windows: i.max_windows,
                escalation_uses_flags: i.escalation_uses_flags,
                metadata: i.metadata.clone(),
            }
        }),
        lexicon: LexiconInfo {
            version: lists.flagger.version().to_string(),
            term_count: lists.flagger.term_count(),
            flags: kesu_core::flags::Flag::ALL.to_vec(),
            user_dict_words: lists.segmenter.user_words(),
        },
        triage: TriageInfo {
            rules_version: lists.triage.version.clone(),
            rule_count: lists.triage.rules.len(),
            repeat_window_secs: contacts.window().as_secs(),
            tracked_customers: contacts.tracked(),
            repeat_capacity: contacts.capacity(),
            repeat_store: contacts.kind().to_string(),
        },
        reload: ReloadInfo {
            count: lists.generation,
            loaded_at: super::admin::rfc3339(lists.loaded_at),
            failed,
            last_error,
        },
        store: StoreInfo {
            database: state.store.as_ref().map(|st| st.url().to_string()),
            store_needs_review: lists.triage.store.needs_review,
            store_min_escalation: lists.triage.store.min_escalation,
            mask_pii: s.store_mask_pii,
        },
        auth: match state.access {
            crate::auth::Access::Open => "open".into(),
            crate::auth::Access::Keys(_) => "keys".into(),
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
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::document(&state.settings))
}
