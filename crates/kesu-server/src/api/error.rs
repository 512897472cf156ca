//! Every API error, and the one place that maps errors to HTTP statuses.
//!
//! The body is always `{"error": {"code": "...", "message": "..."}}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Every error code the API answers with: one variant per row of the
/// README's error table (a test checks the two against each other), each with
/// its HTTP status. Every 503 also carries `Retry-After` with
/// `KESU_RETRY_AFTER_SECS` (set where the response leaves the app, `super::observe`).
macro_rules! error_codes {
    ($($variant:ident = $code:literal => $status:ident,)*) => {
        /// A stable, machine-readable error code (`invalid_json`, `overloaded`, ...).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the README table's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears in the JSON body.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidJson = "invalid_json" => BAD_REQUEST,
    InvalidUtf8 = "invalid_utf8" => BAD_REQUEST,
    BodyTooLarge = "body_too_large" => PAYLOAD_TOO_LARGE,
    TooManyItems = "too_many_items" => PAYLOAD_TOO_LARGE,
    TextTooLong = "text_too_long" => PAYLOAD_TOO_LARGE,
    FieldTooLong = "field_too_long" => PAYLOAD_TOO_LARGE,
    UnsupportedMediaType = "unsupported_media_type" => UNSUPPORTED_MEDIA_TYPE,
    EmptyText = "empty_text" => UNPROCESSABLE_ENTITY,
    EmptyBatch = "empty_batch" => UNPROCESSABLE_ENTITY,
    InvalidRequest = "invalid_request" => UNPROCESSABLE_ENTITY,
    InvalidCustomerRef = "invalid_customer_ref" => UNPROCESSABLE_ENTITY,
    InvalidLexicon = "invalid_lexicon" => UNPROCESSABLE_ENTITY,
    InvalidUserDict = "invalid_user_dict" => UNPROCESSABLE_ENTITY,
    InvalidTriageRules = "invalid_triage_rules" => UNPROCESSABLE_ENTITY,
    InvalidAlertRules = "invalid_alert_rules" => UNPROCESSABLE_ENTITY,
    InvalidApiKeys = "invalid_api_keys" => UNPROCESSABLE_ENTITY,
    InvalidTimestamp = "invalid_timestamp" => UNPROCESSABLE_ENTITY,
    InvalidConversationId = "invalid_conversation_id" => UNPROCESSABLE_ENTITY,
    UnknownConversation = "unknown_conversation" => NOT_FOUND,
    Unauthorized = "unauthorized" => UNAUTHORIZED,
    Forbidden = "forbidden" => FORBIDDEN,
    RateLimited = "rate_limited" => TOO_MANY_REQUESTS,
    UnknownItem = "unknown_item" => NOT_FOUND,
    VersionConflict = "version_conflict" => CONFLICT,
    InvalidTransition = "invalid_transition" => CONFLICT,
    MissingVersion = "missing_version" => UNPROCESSABLE_ENTITY,
    InvalidQuery = "invalid_query" => UNPROCESSABLE_ENTITY,
    InvalidCursor = "invalid_cursor" => UNPROCESSABLE_ENTITY,
    InvalidChannel = "invalid_channel" => UNPROCESSABLE_ENTITY,
    InvalidIdempotencyKey = "invalid_idempotency_key" => UNPROCESSABLE_ENTITY,
    IdempotencyKeyReused = "idempotency_key_reused" => UNPROCESSABLE_ENTITY,
    IdempotencyConflict = "idempotency_conflict" => CONFLICT,
    StoreUnavailable = "store_unavailable" => SERVICE_UNAVAILABLE,
    StoreDisabled = "store_disabled" => SERVICE_UNAVAILABLE,
    NotFound = "not_found" => NOT_FOUND,
    MethodNotAllowed = "method_not_allowed" => METHOD_NOT_ALLOWED,
    Overloaded = "overloaded" => SERVICE_UNAVAILABLE,
    Timeout = "timeout" => SERVICE_UNAVAILABLE,
    NotReady = "not_ready" => SERVICE_UNAVAILABLE,
    TooManyConversations = "too_many_conversations" => SERVICE_UNAVAILABLE,
    TooManySubscribers = "too_many_subscribers" => SERVICE_UNAVAILABLE,
    Internal = "internal" => INTERNAL_SERVER_ERROR,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered to an API client: its code, a human-readable message
/// and, for a word list or rules file, the file and line at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    /// `Retry-After` seconds, filled in from the settings where the error leaves the app.
    pub retry_after: Option<u64>,
    /// The `Allow` header of a 405: the methods the path answers.
    pub allow: Option<String>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), file: None, line: None, retry_after: None, allow: None }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidJson, message)
    }
    pub fn invalid_utf8(at: usize) -> Self {
        ApiError::new(ErrorCode::InvalidUtf8, format!("request body is not valid UTF-8 (at byte {at})"))
    }
    pub fn body_too_large(limit: usize) -> Self {
        ApiError::new(ErrorCode::BodyTooLarge, format!("request body is larger than {limit} bytes"))
    }
    pub fn unsupported_media_type(got: &str) -> Self {
        ApiError::new(ErrorCode::UnsupportedMediaType, format!("content type must be application/json, got {got:?}"))
    }
    pub fn overloaded() -> Self {
        ApiError::new(ErrorCode::Overloaded, "the server is busy; retry later (see Retry-After)")
    }
    pub fn timeout(ms: u64) -> Self {
        ApiError::new(ErrorCode::Timeout, format!("the request took longer than {ms} ms"))
    }
    pub fn not_ready() -> Self {
        ApiError::new(ErrorCode::NotReady, "the model is not loaded")
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("no route for {what}"))
    }
    pub fn unknown_conversation(id: &str) -> Self {
        ApiError::new(
            ErrorCode::UnknownConversation,
            format!("no live conversation {id:?} (never opened, deleted or expired)"),
        )
    }
    pub fn unknown_item(id: &str) -> Self {
        ApiError::new(ErrorCode::UnknownItem, format!("no stored item {id:?}"))
    }
    /// 405 for a known path; `allow` lists the methods it answers (the `Allow` header).
    pub fn method_not_allowed(allow: &str) -> Self {
        ApiError {
            allow: Some(allow.to_string()),
            ..ApiError::new(ErrorCode::MethodNotAllowed, format!("method not allowed; this path answers {allow}"))
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Forbidden, message)
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorCode::Internal, format!("internal error: {message}"))
    }
    /// A word list or rules file that cannot be loaded (reload refused; the previous version keeps serving).
    pub fn invalid_file(code: ErrorCode, file: String, line: Option<usize>, message: String) -> Self {
        ApiError { code, message, file: Some(file), line, retry_after: None, allow: None }
    }
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
    /// The file at fault (`invalid_lexicon`, `invalid_user_dict`, `invalid_triage_rules`, `invalid_api_keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its 1-based line, when the problem is on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status_code());
        b.insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if let Some(secs) = self.retry_after {
            b.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let Some(allow) = &self.allow {
            b.insert_header((header::ALLOW, allow.as_str()));
        }
        if self.code == ErrorCode::Unauthorized {
            b.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"kesu\""));
        }
        b.json(ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_string(),
                message: self.message.clone(),
                file: self.file.clone(),
                line: self.line,
            },
        })
    }
}

impl From<kesu_core::pipeline::PipelineError> for ApiError {
    fn from(e: kesu_core::pipeline::PipelineError) -> Self {
        match e {
            kesu_core::pipeline::PipelineError::NoModel => ApiError::not_ready(),
            // Only seen by a caller that is gone; say what happened all the same.
            kesu_core::pipeline::PipelineError::Cancelled => {
                ApiError::new(ErrorCode::Timeout, "the request's deadline passed; its work was cancelled")
            }
            kesu_core::pipeline::PipelineError::Model(m) => ApiError::internal(m),
        }
    }
}

impl From<kesu_store::StoreError> for ApiError {
    fn from(e: kesu_store::StoreError) -> Self {
        use kesu_store::StoreError as S;
        match e {
            S::NotFound(id) => ApiError::unknown_item(&id),
            S::Conflict { .. } => ApiError::new(ErrorCode::VersionConflict, e.to_string()),
            S::Transition { .. } => ApiError::new(ErrorCode::InvalidTransition, e.to_string()),
            S::Cursor(_) => ApiError::new(ErrorCode::InvalidCursor, e.to_string()),
            S::Query(m) => ApiError::new(ErrorCode::InvalidQuery, m),
            S::KeyTaken(k) => ApiError::new(
                ErrorCode::IdempotencyConflict,
                format!("idempotency key {k:?} is being used by a concurrent request; nothing was stored; retry"),
            ),
            S::Db(err) => {
                tracing::error!(error = %err, "store unavailable");
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "the complaint store is unavailable; nothing was stored or changed",
                )
            }
        }
    }
}

impl From<kesu_core::pipeline::ReloadError> for ApiError {
    fn from(e: kesu_core::pipeline::ReloadError) -> Self {
        use kesu_core::lists::ListFile;
        match e {
            kesu_core::pipeline::ReloadError::List(l) => {
                let code = match l.kind {
                    ListFile::LegalRisk => ErrorCode::InvalidLexicon,
                    ListFile::UserDict => ErrorCode::InvalidUserDict,
                    ListFile::Triage => ErrorCode::InvalidTriageRules,
                    ListFile::Alerts => ErrorCode::InvalidAlertRules,
                };
                ApiError::invalid_file(code, l.file.display().to_string(), l.line, l.to_string())
            }
            e @ kesu_core::pipeline::ReloadError::NoSource => ApiError::internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's error table: (status, code) of every row, in order.
    fn readme_table() -> Vec<(u16, String)> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let section = readme.split("### Errors").nth(1).expect("README has an Errors section");
        let mut rows = Vec::new();
        for line in
            section.lines().skip_while(|l| !l.starts_with("| status")).skip(2).take_while(|l| l.starts_with('|'))
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let status: u16 = cells[1][..3].parse().unwrap_or_else(|_| panic!("status of {line:?}"));
            for code in cells[2].split(',') {
                rows.push((status, code.trim().trim_matches('`').to_string()));
            }
        }
        rows
    }

    #[test]
    fn the_codes_are_the_readme_table() {
        let table = readme_table();
        let ours: Vec<(u16, String)> =
            ErrorCode::ALL.iter().map(|c| (c.status().as_u16(), c.as_str().to_string())).collect();
        let mut a = table.clone();
        let mut b = ours.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "ErrorCode and the README's error table differ");
    }

    #[test]
    fn the_body_has_the_code_and_message_and_401_the_challenge() {
        let e = ApiError::unauthorized("an API key is required");
        let r = e.error_response();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let r = ApiError::invalid_file(ErrorCode::InvalidTriageRules, "triage.toml".into(), Some(3), "bad".into())
            .error_response();
        assert_eq!(r.status(), 422);
    }
}
