//! The HTTP service (actix-web): routes, error mapping, admission control,
//! metrics, request ids, reloads and the OpenAPI document.

pub mod admin;
pub mod admission;
pub mod conversations;
pub mod customers;
pub mod error;
pub mod extract;
pub mod insights;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod reviews;
pub mod routes;
pub mod texts;
pub mod types;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{middleware, web, App, HttpMessage, HttpServer};
use tracing_actix_web::{RequestId, TracingLogger};

use crate::conversation::Registry;
use crate::settings::{ServerSettings, StoreSettings};
use admission::Admission;
use error::ApiError;
use kesu_core::pipeline::Pipeline;
use metrics::Metrics;

/// Shared state of all workers.
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub settings: ServerSettings,
    pub metrics: Metrics,
    pub admission: Admission,
    /// Characters in flight on the routes without the model.
    pub text_budget: admission::TextBudget,
    pub conversations: Registry,
    /// The complaint store; `None` when run with `KESU_NO_STORE`.
    pub store: Option<kesu_store::Store>,
    pub reloads: admin::ReloadLog,
    /// API keys and roles; [`crate::auth::Access::Open`] only with `--no-auth`.
    pub access: crate::auth::Access,
    /// The keys in force (reloadable), console sessions and rate limits.
    pub guard: crate::auth::Guard,
}

impl AppState {
    pub fn new(pipeline: Arc<Pipeline>, settings: ServerSettings) -> AppState {
        let admission =
            Admission::new(settings.max_concurrent_inference, settings.max_queued, settings.queue_timeout());
        let text_budget = admission::TextBudget::new(settings.max_inflight_text_chars, settings.queue_timeout());
        let conversations = Registry::new(settings.conversations.limits());
        AppState {
            pipeline,
            settings,
            metrics: Metrics::new(),
            admission,
            text_budget,
            conversations,
            store: None,
            reloads: admin::ReloadLog::default(),
            access: crate::auth::Access::Keys(Default::default()),
            guard: crate::auth::Guard::default(),
        }
    }
}

impl AppState {
    /// Attach the complaint store.
    pub fn with_store(mut self, store: Option<kesu_store::Store>) -> AppState {
        self.store = store;
        self
    }

    /// Set who may call what (a new state requires keys and has none).
    pub fn with_access(mut self, access: crate::auth::Access) -> AppState {
        self.guard = crate::auth::Guard::new(&access);
        self.access = access;
        self
    }
}

/// Open the complaint store the settings name (`None` with `KESU_NO_STORE`):
/// created and migrated on first use.
pub async fn open_store(s: &StoreSettings) -> Result<Option<kesu_store::Store>, kesu_store::StoreError> {
    match &s.database_url {
        None => Ok(None),
        Some(url) => {
            Ok(Some(kesu_store::Store::open(url, s.max_connections).await?.with_insights(s.insights.clone()).await?))
        }
    }
}

/// The repeat-contact store `s` picks ([`crate::settings::RepeatStore`]):
/// `Some` to replace the pipeline's in-memory tracker with the complaint
/// store's (`store`, or `auto` on PostgreSQL), keyed by the configured
/// customer key (`KESU_CUSTOMER_KEY` / `_FILE`, at least 16 bytes) or else
/// the database's salt; `None` to keep memory. Call within the runtime that
/// owns `store`'s connections (its queries run there).
pub fn shared_contacts(
    store: Option<&kesu_store::Store>,
    s: &StoreSettings,
    window: std::time::Duration,
) -> Result<Option<Arc<dyn kesu_core::triage::ContactStore>>, String> {
    use crate::settings::RepeatStore;
    use kesu_store::contacts::{Keying, StoreContacts};
    let store = match (s.repeat_store, store) {
        (RepeatStore::Memory, _) | (RepeatStore::Auto, None) => return Ok(None),
        (RepeatStore::Store, None) => {
            return Err("KESU_REPEAT_STORE=store needs the complaint store (not KESU_NO_STORE)".into())
        }
        (RepeatStore::Auto, Some(st)) if !st.is_postgres() => return Ok(None),
        (_, Some(st)) => st.clone(),
    };
    let secret = match (&s.customer_key, &s.customer_key_file) {
        (Some(k), _) => Some(k.trim().as_bytes().to_vec()),
        (None, Some(path)) => {
            let raw =
                std::fs::read_to_string(path).map_err(|e| format!("KESU_CUSTOMER_KEY_FILE {}: {e}", path.display()))?;
            Some(raw.lines().next().unwrap_or("").trim().as_bytes().to_vec())
        }
        (None, None) => None,
    };
    let keying = match secret {
        Some(k) if k.len() < 16 => return Err(format!("the customer key has {} bytes; give at least 16", k.len())),
        Some(k) => Keying::Secret(Arc::new(k)),
        None => Keying::DatabaseSalt,
    };
    let runtime =
        tokio::runtime::Handle::try_current().map_err(|e| format!("no runtime for the contact store: {e}"))?;
    Ok(Some(Arc::new(StoreContacts::new(store, runtime, window, keying))))
}

/// Let a request in only as its route's [`routes::Access`] says (a path
/// that matches no route needs any valid key, then answers 404): a key or a
/// console session, the role, the key's rate limit ([`crate::auth::Guard::check`]);
/// the caller's [`crate::auth::Principal`] goes into the request's extensions
/// (the audit log's actor).
async fn authorize(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let need = match req.match_pattern().and_then(|p| routes::lookup(req.method(), &p)).map(|r| r.access) {
        Some(routes::Access::Open) => None,
        Some(routes::Access::AnyKey) | None => Some(None),
        Some(routes::Access::Role(r)) => Some(Some(r)),
    };
    if let (Some(st), Some(need)) = (&state, need) {
        st.guard.check(&mut req, need, &st.metrics.rate_limited)?;
    }
    next.call(req).await
}

/// Count, time and time-limit every request; add `x-request-id`,
/// `X-Content-Type-Options: nosniff` (an [`ApiError`] that leaves the app as
/// an error sets it itself), and to every 503 `Retry-After` with
/// `KESU_RETRY_AFTER_SECS` (errors become responses here, so this holds for
/// every error, wherever it arose).
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let t0 = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let pattern = req.match_pattern();
    let limited = pattern.as_deref().and_then(|p| routes::lookup(req.method(), p)).is_some_and(|r| r.deadline);
    let route = pattern.unwrap_or_else(|| "unmatched".to_string());
    let request_id = req.extensions().get::<RequestId>().map(|r| r.to_string());
    let res = match (&state, limited) {
        (Some(st), true) => {
            let ms = st.settings.request_timeout_ms;
            match tokio::time::timeout(st.settings.request_timeout(), next.call(req)).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::timeout(ms).into()),
            }
        }
        _ => next.call(req).await,
    };
    let retry_after = state.as_ref().map(|st| st.settings.retry_after_secs);
    // An error that leaves the app as an error (authorization, the deadline):
    // its 503 gets Retry-After from the settings.
    let res = res.map_err(|e| match (e.as_error::<ApiError>(), retry_after) {
        (Some(a), Some(secs)) if a.code.status() == actix_web::http::StatusCode::SERVICE_UNAVAILABLE => {
            ApiError { retry_after: Some(secs), ..a.clone() }.into()
        }
        _ => e,
    });
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    if let Some(st) = &state {
        st.metrics.observe_request(&route, status, t0.elapsed().as_secs_f64());
    }
    res.map(|mut r| {
        // A handler's error is already a response here.
        if let (503, Some(secs)) = (r.status().as_u16(), retry_after) {
            r.headers_mut().insert(actix_web::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            r.headers_mut().insert(HeaderName::from_static("x-request-id"), id);
        }
        r.headers_mut().insert(actix_web::http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        r
    })
}

/// Start the server on `listener` (bind to port 0 for a random port), a
/// task that expires idle conversations, and (Unix) a SIGHUP handler that
/// reloads the word lists and triage rules. Call from within a Tokio runtime.
pub fn serve(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    admin::reload_on_sighup(&state)?;
    let workers = state.settings.workers.max(1);
    let every = (state.conversations.limits().ttl / 4)
        .clamp(std::time::Duration::from_millis(10), std::time::Duration::from_secs(60));
    let weak = Arc::downgrade(&state.clone().into_inner());
    if state.store.is_some() {
        customers::spawn_sweeper(weak.clone(), state.settings.store_sweep_every());
        crate::insights::spawn(weak.clone(), state.settings.insights);
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(st) = weak.upgrade() else { break };
            let n = st.conversations.sweep();
            if n > 0 {
                tracing::info!(expired = n, live = st.conversations.len(), "idle conversations expired");
            }
        }
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::from_fn(authorize))
            .wrap(middleware::from_fn(observe))
            .wrap(TracingLogger::<logging::MaskedRootSpan>::new())
            .configure(routes::configure)
            .default_service(web::to(|req: actix_web::HttpRequest| async move {
                Err::<actix_web::HttpResponse, _>(ApiError::not_found(format_args!("{} {}", req.method(), req.path())))
            }))
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Start only the operations routes (`/healthz`, `/readyz`, `/metrics`; no
/// keys) on `listener`: the health and metrics port of a process whose work
/// does not come over HTTP (`kesu consume`). Call from within a Tokio runtime.
pub fn serve_ops(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(ops::healthz))
            .route("/readyz", web::get().to(ops::readyz))
            .route("/metrics", web::get().to(ops::metrics))
            .default_service(web::to(|req: actix_web::HttpRequest| async move {
                Err::<actix_web::HttpResponse, _>(ApiError::not_found(format_args!("{} {}", req.method(), req.path())))
            }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
