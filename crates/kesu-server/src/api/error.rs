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
    #[error("no stored item {0:?}")]
    UnknownItem(String),
    /// Optimistic-concurrency conflict (409).
    #[error("{message}")]
    Conflict { message: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No API key, or one that is not configured (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid key without the role the route needs (403).
    #[error("{0}")]
    Forbidden(String),
    /// A word list or rules file that cannot be loaded (reload refused; the previous version keeps serving).
    #[error("{message}")]
    InvalidFile { code: &'static str, file: String, line: Option<usize>, message: String },
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
    /// The file at fault (`invalid_lexicon`, `invalid_user_dict`, `invalid_triage_rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its 1-based line, when the problem is on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
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
            ApiError::UnknownItem(_) => "unknown_item",
            ApiError::Conflict { .. } => "version_conflict",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::InvalidFile { code, .. } => code,
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
            ApiError::Invalid { .. } | ApiError::InvalidFile { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded { .. } | ApiError::Timeout { .. } | ApiError::NotReady | ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) | ApiError::UnknownConversation(_) | ApiError::UnknownItem(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
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
            ApiError::Unauthorized(_) => {
                b.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"kesu\""));
            }
            _ => {}
        }
        let (file, line) = match self {
            ApiError::InvalidFile { file, line, .. } => (Some(file.clone()), *line),
            _ => (None, None),
        };
        b.json(ErrorBody { error: ErrorDetail { code: self.code().to_string(), message: self.to_string(), file, line } })
    }
}

impl From<kesu_core::pipeline::PipelineError> for ApiError {
    fn from(e: kesu_core::pipeline::PipelineError) -> Self {
        match e {
            kesu_core::pipeline::PipelineError::NoModel => ApiError::NotReady,
            kesu_core::pipeline::PipelineError::Model(m) => ApiError::Internal(m.to_string()),
        }
    }
}

impl From<kesu_store::StoreError> for ApiError {
    fn from(e: kesu_store::StoreError) -> Self {
        use kesu_store::StoreError as S;
        match e {
            S::NotFound(id) => ApiError::UnknownItem(id),
            S::Conflict { .. } => ApiError::Conflict { message: e.to_string() },
            S::Transition { .. } => ApiError::invalid("invalid_transition", e.to_string()),
            S::Cursor(_) => ApiError::invalid("invalid_cursor", e.to_string()),
            S::Db(err) => {
                tracing::error!(error = %err, "store unavailable");
                ApiError::Unavailable { code: "store_unavailable", message: "the complaint store is unavailable; nothing was stored or changed".into(), retry_after: 5 }
            }
        }
    }
}

impl From<kesu_core::pipeline::ReloadError> for ApiError {
    fn from(e: kesu_core::pipeline::ReloadError) -> Self {
        match e {
            kesu_core::pipeline::ReloadError::List(l) => {
                ApiError::InvalidFile { code: l.kind.error_code(), file: l.file.display().to_string(), line: l.line, message: l.to_string() }
            }
            e @ kesu_core::pipeline::ReloadError::NoSource => ApiError::Internal(e.to_string()),
        }
    }
}
