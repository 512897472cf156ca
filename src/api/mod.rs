//! The HTTP service (actix-web): routes, error mapping, admission control,
//! metrics, request ids and the OpenAPI document.

pub mod admission;
pub mod conversations;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
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

use crate::config::Settings;
use crate::conversation::Registry;
use crate::pipeline::Pipeline;
use admission::Admission;
use error::ApiError;
use metrics::Metrics;

/// Shared state of all workers.
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub settings: Settings,
    pub metrics: Metrics,
    pub admission: Admission,
    pub conversations: Registry,
}

impl AppState {
    pub fn new(pipeline: Arc<Pipeline>, settings: Settings) -> AppState {
        let admission = Admission::new(settings.max_concurrent_inference, settings.max_queued, settings.queue_timeout(), settings.retry_after_secs);
        let conversations = Registry::new(settings.conversations.limits());
        AppState { pipeline, settings, metrics: Metrics::new(), admission, conversations }
    }
}

/// Count, time and time-limit every request; add `x-request-id`.
async fn observe(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let t0 = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_string());
    let request_id = req.extensions().get::<RequestId>().map(|r| r.to_string());
    let limited = route.starts_with("/v1/");
    let res = match (&state, limited) {
        (Some(st), true) => {
            let ms = st.settings.request_timeout_ms;
            match tokio::time::timeout(st.settings.request_timeout(), next.call(req)).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::Timeout { ms, retry_after: st.settings.retry_after_secs }.into()),
            }
        }
        _ => next.call(req).await,
    };
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    if let Some(st) = &state {
        st.metrics.observe_request(&route, status, t0.elapsed().as_secs_f64());
    }
    res.map(|mut r| {
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            r.headers_mut().insert(HeaderName::from_static("x-request-id"), id);
        }
        r
    })
}

/// Register every route on an actix `App`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    fn not_allowed() -> actix_web::Route {
        web::to(|| async { Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed) })
    }
    cfg.service(web::resource("/v1/classify").route(web::post().to(routes::classify)).default_service(not_allowed()))
        .service(web::resource("/v1/flags").route(web::post().to(routes::flags)).default_service(not_allowed()))
        .service(web::resource("/v1/segment").route(web::post().to(routes::segment)).default_service(not_allowed()))
        .service(web::resource("/v1/info").route(web::get().to(routes::info)).default_service(not_allowed()))
        .service(web::resource("/v1/conversations/{id}/messages").route(web::post().to(conversations::post_message)).default_service(not_allowed()))
        .service(web::resource("/v1/conversations/{id}/events").route(web::get().to(conversations::events)).default_service(not_allowed()))
        .service(
            web::resource("/v1/conversations/{id}")
                .route(web::get().to(conversations::get_conversation))
                .route(web::delete().to(conversations::delete_conversation))
                .default_service(not_allowed()),
        )
        .service(web::resource("/console").route(web::get().to(conversations::console)).default_service(not_allowed()))
        .service(web::resource("/healthz").route(web::get().to(routes::healthz)).default_service(not_allowed()))
        .service(web::resource("/readyz").route(web::get().to(routes::readyz)).default_service(not_allowed()))
        .service(web::resource("/metrics").route(web::get().to(routes::metrics)).default_service(not_allowed()))
        .service(web::resource("/openapi.json").route(web::get().to(routes::openapi)).default_service(not_allowed()));
}

/// Start the server on `listener` (bind to port 0 for a random port), and a
/// task that expires idle conversations. Call from within a Tokio runtime.
pub fn serve(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let workers = state.settings.workers.max(1);
    let every = (state.conversations.limits().ttl / 4).clamp(std::time::Duration::from_millis(10), std::time::Duration::from_secs(60));
    let weak = Arc::downgrade(&state.clone().into_inner());
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
            .wrap(middleware::from_fn(observe))
            .wrap(TracingLogger::default())
            .configure(configure)
            .default_service(web::to(|req: actix_web::HttpRequest| async move {
                Err::<actix_web::HttpResponse, _>(ApiError::NotFound(format!("{} {}", req.method(), req.path())))
            }))
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}
