//! Every API error, and the one place that maps errors to HTTP statuses.
//!
//! The body is always `{"error": {"code": "...", "message": "..."}}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadJson(String),
    #[error("request body is not valid UTF-8 (at byte {0})")]
    InvalidUtf8(usize),
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    #[error("content type must be application/json, got {0:?}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("the server is busy; retry after {retry_after} s")]
    Overloaded { retry_after: u64 },
    #[error("the request took longer than {ms} ms")]
    Timeout { ms: u64, retry_after: u64 },
    #[error("the model is not loaded")]
    NotReady,
    /// A capacity limit other than the inference queue (503 + Retry-After).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String, retry_after: u64 },
    #[error("no route for {0}")]
    NotFound(String),
    #[error("no live conversation {0:?} (never opened, deleted or expired)")]
    UnknownConversation(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON error body.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Machine-readable code and human-readable message.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_json`, `empty_text`, `overloaded`.
    pub code: String,
    pub message: String,
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson(_) => "invalid_json",
            ApiError::InvalidUtf8(_) => "invalid_utf8",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::TooLarge { code, .. } => code,
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Invalid { code, .. } => code,
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Timeout { .. } => "timeout",
            ApiError::NotReady => "not_ready",
            ApiError::Unavailable { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownConversation(_) => "unknown_conversation",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid { code, message: message.into() }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadJson(_) | ApiError::InvalidUtf8(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } | ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded { .. } | ApiError::Timeout { .. } | ApiError::NotReady | ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) | ApiError::UnknownConversation(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status_code());
        match self {
            ApiError::Overloaded { retry_after } | ApiError::Timeout { retry_after, .. } | ApiError::Unavailable { retry_after, .. } => {
                b.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::NotReady => {
                b.insert_header((header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        b.json(ErrorBody { error: ErrorDetail { code: self.code().to_string(), message: self.to_string() } })
    }
}

impl From<crate::pipeline::PipelineError> for ApiError {
    fn from(e: crate::pipeline::PipelineError) -> Self {
        match e {
            crate::pipeline::PipelineError::NoModel => ApiError::NotReady,
            crate::pipeline::PipelineError::Model(m) => ApiError::Internal(m.to_string()),
        }
    }
}
