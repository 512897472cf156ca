//! The request log: one `tracing` span per request (tracing-actix-web), with
//! nothing in it that could hold a customer's personal data unmasked.
//!
//! tracing-actix-web's default span records the raw request target and the
//! error's `Debug` form; a phone number in a query (`/v1/reviews?q=138...`)
//! or a conversation id, or a text fragment quoted in an error message, would
//! reach the log as is. This builder records the target percent-decoded and
//! then [`pii::mask`]ed, the error message masked, and no `Debug` details
//! (the crate's own error event, which prints `Debug`, is switched off; this
//! builder logs one line per request instead).
//! Route handlers log counts, ids, codes and timings, never texts.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

use kesu_core::text::pii;

/// The root span builder kesu's `TracingLogger` uses.
pub struct MaskedRootSpan;

/// `target` percent-decoded (lossily) and PII-masked.
pub fn masked_target(target: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(target).decode_utf8_lossy();
    pii::mask(&decoded).text
}

impl RootSpanBuilder for MaskedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let target = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
        let route = request.match_pattern().unwrap_or_default();
        let request_id = request.extensions().get::<RequestId>().map(|r| r.to_string()).unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %masked_target(target),
            http.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, error) = match outcome {
            Ok(r) => (r.status(), r.response().error().map(|e| e.to_string())),
            Err(e) => (e.as_response_error().status_code(), Some(e.to_string())),
        };
        span.record("http.status_code", status.as_u16());
        let msg = error.map(|m| pii::mask(&m).text);
        if let Some(m) = &msg {
            span.record("exception.message", m.as_str());
        }
        // One line per request (the access log); errors with their masked message.
        let code = status.as_u16();
        match msg {
            Some(m) if status.is_server_error() => {
                tracing::warn!(parent: &span, status = code, error = %m, "request failed")
            }
            Some(m) => tracing::info!(parent: &span, status = code, error = %m, "request refused"),
            None => tracing::info!(parent: &span, status = code, "request done"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_decoded_then_masked() {
        let t = masked_target("/v1/reviews?q=13812345678&x=zhang.san%40example.com");
        assert!(!t.contains("13812345678") && !t.contains("zhang.san@"), "{t}");
        assert!(t.starts_with("/v1/reviews?q="));
        assert_eq!(masked_target("/v1/classify"), "/v1/classify");
    }
}
