//! The OpenAPI document: every route and schema of the API.

use utoipa::OpenApi;

use super::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "kesu", description = "Chinese customer-complaint triage: category, escalation and legal-risk flags.", license(name = "MIT OR Apache-2.0")),
    paths(routes::classify, routes::flags, routes::segment, routes::healthz, routes::readyz, routes::info, routes::metrics, routes::openapi),
    tags((name = "classify"), (name = "flags"), (name = "segment"), (name = "ops"))
)]
pub struct ApiDoc;

/// The document as served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
