//! Administration: reloading the word lists, triage rules and API keys
//! without a restart (`POST /admin/reload`, admin role; SIGHUP).
//!
//! A reload re-reads `legal_risk.tsv`, `user_dict.txt` and `triage.toml`
//! from the lexicon folder and the API keys (`KESU_API_KEYS_FILE`, with
//! `KESU_API_KEYS` as given at start) and swaps them in together (all or
//! nothing); a request already running finishes on the snapshot it started
//! with. A broken file is refused (422 naming the file and line) and the
//! previous lists and keys keep serving. A key no longer configured is
//! refused from the next request on, its console sessions with it. Every
//! attempt is logged (versions, counts, the error's file and line; never
//! complaint text or keys).

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use actix_web::{web, HttpResponse};

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::types::ReloadReport;
use super::AppState;

/// Failed reload attempts (successes are counted by the snapshot's generation).
#[derive(Default)]
pub struct ReloadLog {
    inner: Mutex<(u64, Option<String>)>,
}

impl ReloadLog {
    fn failed(&self, error: String) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        g.1 = Some(error);
    }

    /// Failed attempts since start and the last one's error.
    pub fn failures(&self) -> (u64, Option<String>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `t` as RFC 3339 in UTC.
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Reload now (blocking: call on the blocking pool). `trigger` names the
/// cause in the log (`http`, `sighup`).
pub fn reload_now(state: &AppState, trigger: &'static str) -> Result<ReloadReport, ApiError> {
    let t0 = Instant::now();
    // The key file first: broken, it refuses the whole reload (nothing changes).
    let keys = match state.guard.prepare_reload() {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => {
            state.metrics.reloads.with_label_values(&["error"]).inc();
            let message = e.to_string();
            tracing::warn!(trigger, file = %e.file(), line = e.line(), error = %message,
                "reload refused (API keys); the previous word lists and keys keep serving");
            state.reloads.failed(message.clone());
            return Err(ApiError::invalid_file(ErrorCode::InvalidApiKeys, e.file().to_string(), e.line(), message));
        }
    };
    match state.pipeline.reload() {
        Ok(l) => {
            let api_keys = keys.map(|k| {
                let n = k.len();
                let ended = state.guard.install(k);
                if n == 0 {
                    tracing::warn!(trigger, "the reloaded key files have no keys: only the open routes answer");
                }
                tracing::info!(trigger, keys = n, sessions_ended = ended, "API keys reloaded");
                n
            });
            let took_ms = t0.elapsed().as_secs_f64() * 1e3;
            state.metrics.reloads.with_label_values(&["ok"]).inc();
            let report = ReloadReport {
                count: l.generation,
                loaded_at: rfc3339(l.loaded_at),
                lexicon_version: l.flagger.version().to_string(),
                lexicon_terms: l.flagger.term_count(),
                user_dict_words: l.segmenter.user_words(),
                rules_version: l.triage.version.clone(),
                rule_count: l.triage.rules.len(),
                api_keys,
                took_ms,
            };
            tracing::info!(trigger, count = report.count, lexicon_version = %report.lexicon_version, lexicon_terms = report.lexicon_terms,
                user_dict_words = report.user_dict_words, rules_version = %report.rules_version, rule_count = report.rule_count,
                took_ms, "word lists and triage rules reloaded");
            Ok(report)
        }
        Err(e) => {
            state.metrics.reloads.with_label_values(&["error"]).inc();
            let message = e.to_string();
            if let kesu_core::pipeline::ReloadError::List(l) = &e {
                tracing::warn!(trigger, file = %l.file.display(), line = l.line, error = %l.message, "reload refused; the previous word lists keep serving");
            } else {
                tracing::warn!(trigger, error = %message, "reload refused; the previous word lists keep serving");
            }
            state.reloads.failed(message);
            Err(e.into())
        }
    }
}

/// Reload the word lists, triage rules and API keys (`legal_risk.tsv`,
/// `user_dict.txt`, `triage.toml`, `KESU_API_KEYS_FILE`) together, without a
/// restart: all or nothing. A key removed from the key file is refused at once,
/// its console sessions too.
#[utoipa::path(post, path = "/admin/reload", tag = "admin",
    responses(
        (status = 200, description = "Reloaded: the versions now in force", body = ReloadReport),
        (status = 422, description = "A file is broken (`invalid_lexicon`, `invalid_user_dict`, `invalid_triage_rules`, `invalid_api_keys`; `file` and `line` say where); nothing changed", body = ErrorBody),
    ))]
pub async fn reload(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let st = state.clone();
    let report = web::block(move || reload_now(&st, "http"))
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))??;
    Ok(HttpResponse::Ok().json(report))
}

/// Reload on every SIGHUP for as long as `state` lives (Unix). Registers the
/// handler before returning, so a SIGHUP right after start is not fatal.
/// Call from within a Tokio runtime.
#[cfg(unix)]
pub fn reload_on_sighup(state: &web::Data<AppState>) -> std::io::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let weak = std::sync::Arc::downgrade(&state.clone().into_inner());
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(st) = weak.upgrade() else { break };
            // the outcome is logged and counted by reload_now
            let _ = tokio::task::spawn_blocking(move || reload_now(&st, "sighup")).await;
        }
    });
    Ok(())
}

#[cfg(not(unix))]
pub fn reload_on_sighup(_state: &web::Data<AppState>) -> std::io::Result<()> {
    Ok(())
}
