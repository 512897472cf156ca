//! Personal-information duties of the store: erasing everything stored for
//! one customer (`POST /v1/customers/erase`, admin) and reading the
//! store-wide audit log of deletions (`GET /v1/audit`, admin), plus the
//! retention sweep that deletes items older than `KESU_STORE_RETENTION_DAYS`.
//!
//! The customer reference travels in the request body, never in a URL, so
//! it is in no access log; the audit log names the customer only by the
//! store's salted hash of the reference.

use std::sync::Weak;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::read_json;
use super::reviews::{actor, parse_query, store};
use super::texts::MAX_CUSTOMER_REF_CHARS;
use super::AppState;

/// Whose data to erase.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The `customer_ref` exactly as it was sent with the items (1-256 chars).
    #[schema(min_length = 1, max_length = 256)]
    pub customer_ref: String,
}

/// Erase every stored item of one customer with its review history (one
/// transaction, audit-logged). Items stored before schema version 2 carry no
/// customer hash and are not found by this; the retention sweep removes them.
#[utoipa::path(post, path = "/v1/customers/erase", tag = "reviews", request_body = EraseRequest,
    responses(
        (status = 200, description = "What was deleted (zero counts for an unknown customer)", body = kesu_store::Deleted),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "customer_ref blank or over 256 chars", body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn erase(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let r: EraseRequest = read_json(&req, body, 64 * 1024).await?;
    let n = r.customer_ref.chars().count();
    if r.customer_ref.trim().is_empty() || n > MAX_CUSTOMER_REF_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidCustomerRef,
            format!("customer_ref must be 1-{MAX_CUSTOMER_REF_CHARS} chars and not blank ({n} chars)"),
        ));
    }
    let who = actor(&req);
    let deleted = store(&state)?.delete_customer(&r.customer_ref, &who).await?;
    // Repeat contacts kept in the store go too (the in-memory tracker keeps
    // only a keyed hash with a timestamp; it ages out within KESU_REPEAT_WINDOW_SECS).
    let pipeline = std::sync::Arc::clone(&state.pipeline);
    let customer = r.customer_ref.clone();
    web::block(move || pipeline.contacts().forget(&customer))
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
        .map_err(|e| {
            tracing::error!(error = %e, "customer's repeat contacts not erased");
            ApiError::new(
                ErrorCode::StoreUnavailable,
                "the customer's items were erased but not yet their repeat contacts; retry",
            )
        })?;
    state.metrics.store_deleted.with_label_values(&["customer"]).inc_by(deleted.items);
    tracing::info!(actor = %who, items = deleted.items, "customer erased");
    Ok(HttpResponse::Ok().json(deleted))
}

/// Audit-log query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Newest entries first, this many (1-500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// The store-wide audit log: customer erasures and retention purges, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "reviews", params(AuditQuery),
    responses(
        (status = 200, body = Vec<kesu_store::AuditEntry>),
        (status = 422, description = "Bad limit", body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn audit(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q: AuditQuery = parse_query(req.query_string())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, format!("limit={limit}; 1-500")));
    }
    Ok(HttpResponse::Ok().json(store(&state)?.audit_log(limit).await?))
}

/// One sweep: delete items past retention and forget expired idempotency keys.
pub async fn sweep(state: &AppState) {
    let Some(store) = &state.store else { return };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let s = &state.settings;
    if s.store_retention_secs > 0 {
        let cutoff = now - (s.store_retention_secs as i64).saturating_mul(1000);
        match store.purge_items(cutoff, "retention").await {
            Ok(0) => {}
            Ok(n) => {
                state.metrics.store_deleted.with_label_values(&["retention"]).inc_by(n);
                tracing::info!(items = n, "retention: stored items past the retention period deleted");
            }
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; retried at the next sweep"),
        }
    }
    let cutoff = now - (s.idempotency_window_secs as i64).saturating_mul(1000);
    if let Err(e) = store.purge_keys(cutoff).await {
        tracing::warn!(error = %e, "expired idempotency keys not purged; retried at the next sweep");
    }
    // Repeat contacts older than the window count for nothing.
    let window = state.pipeline.contacts().window().as_millis().min(i64::MAX as u128) as i64;
    if let Err(e) = store.purge_contacts(now.saturating_sub(window)).await {
        tracing::warn!(error = %e, "expired repeat contacts not purged; retried at the next sweep");
    }
    // Insights buckets past their grain's retention (hours and days keep the counts).
    if let Err(e) = store.purge_insights(now).await {
        tracing::warn!(error = %e, "expired insights buckets not purged; retried at the next sweep");
    }
}

/// Sweep at start and then every [`crate::settings::ServerSettings::store_sweep_every`]
/// while the state lives.
pub fn spawn_sweeper(state: Weak<AppState>, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(st) = state.upgrade() else { break };
            sweep(&st).await;
        }
    });
}
