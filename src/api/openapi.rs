//! The OpenAPI document: every route and schema of the API.

use utoipa::OpenApi;

use super::{admin, conversations, reviews, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "kesu", description = "Chinese customer-complaint triage: category, escalation and legal-risk flags.", license(name = "MIT OR Apache-2.0")),
    paths(routes::classify, routes::flags, routes::segment,
        conversations::post_message, conversations::get_conversation, conversations::delete_conversation, conversations::events, conversations::console,
        reviews::list, reviews::get, reviews::patch, reviews::history, reviews::export, reviews::false_positive_terms,
        routes::healthz, routes::readyz, routes::info, routes::metrics, routes::openapi, admin::reload),
    tags((name = "classify"), (name = "flags"), (name = "segment"), (name = "conversations"), (name = "reviews"), (name = "ops"), (name = "admin"))
)]
pub struct ApiDoc;

/// The document as served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
