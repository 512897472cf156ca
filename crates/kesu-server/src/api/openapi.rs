//! The OpenAPI document: every route and schema of the API.

use utoipa::OpenApi;

use super::{admin, conversations, reviews, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "kesu", description = "Chinese customer-complaint triage: category, escalation and legal-risk flags.", license(name = "MIT OR Apache-2.0")),
    paths(routes::classify, routes::flags, routes::segment,
        conversations::post_message, conversations::get_conversation, conversations::delete_conversation, conversations::events, conversations::console,
        reviews::list, reviews::get, reviews::patch, reviews::history, reviews::export, reviews::false_positive_terms, reviews::console,
        routes::healthz, routes::readyz, routes::info, routes::metrics, routes::openapi, admin::reload),
    tags((name = "classify"), (name = "flags"), (name = "segment"), (name = "conversations"), (name = "reviews"), (name = "ops"), (name = "admin"))
)]
pub struct ApiDoc;

/// The document as served at `/openapi.json`: with the API-key scheme
/// (`Authorization: Bearer <key>`) required on every route that
/// [`crate::auth::required_role`] does not leave open, and the role named in
/// the operation's description.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
    let mut doc = ApiDoc::openapi();
    let comps = doc.components.get_or_insert_with(Default::default);
    comps.add_security_scheme("api_key", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("a kesu API key (`kesu keys add`)")).build()));
    for (path, item) in doc.paths.paths.iter_mut() {
        let Some(need) = crate::auth::required_role(path) else { continue };
        let role = need.map(|r| format!("Needs an API key with the `{r}` role (or `admin`)."));
        for op in [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put].into_iter().flatten() {
            op.security = Some(vec![SecurityRequirement::new("api_key", Vec::<String>::new())]);
            let note = role.clone().unwrap_or_else(|| "Needs any valid API key.".into());
            op.description = Some(match op.description.take() {
                Some(d) => format!("{d}\n\n{note}"),
                None => note,
            });
        }
    }
    doc
}
