//! The OpenAPI document, built from the route table ([`super::routes::TABLE`]):
//! each route's operation and schemas, and the API-key requirement with the
//! role the route needs.

use utoipa::OpenApi;

use super::routes::{Access, TABLE};

/// The document's fixed parts (info and tags); the paths come from the route table.
#[derive(OpenApi)]
#[openapi(
    info(title = "kesu", description = "Chinese customer-complaint triage: category, escalation and legal-risk flags.", license(name = "MIT OR Apache-2.0")),
    tags((name = "classify"), (name = "flags"), (name = "segment"), (name = "conversations"), (name = "reviews"), (name = "ops"), (name = "admin"))
)]
pub struct ApiDoc;

/// The document as served at `/openapi.json`: every route of the table, with
/// the API-key scheme (`Authorization: Bearer <key>`) required on every route
/// that is not [`Access::Open`], and the role named in the operation's description.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
    let mut doc = ApiDoc::openapi();
    for r in TABLE.iter() {
        (r.openapi)(&mut doc);
    }
    let comps = doc.components.get_or_insert_with(Default::default);
    comps.add_security_scheme(
        "api_key",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("a kesu API key (`kesu keys add`)"))
                .build(),
        ),
    );
    for r in TABLE.iter() {
        let note = match r.access {
            Access::Open => continue,
            Access::AnyKey => "Needs any valid API key.".to_string(),
            Access::Role(role) => format!("Needs an API key with the `{role}` role (or `admin`)."),
        };
        let Some(item) = doc.paths.paths.get_mut(r.path) else { continue };
        let op = match r.method.as_str() {
            "GET" => item.get.as_mut(),
            "POST" => item.post.as_mut(),
            "PATCH" => item.patch.as_mut(),
            "DELETE" => item.delete.as_mut(),
            "PUT" => item.put.as_mut(),
            _ => None,
        };
        let Some(op) = op else { continue };
        op.security = Some(vec![SecurityRequirement::new("api_key", Vec::<String>::new())]);
        op.description = Some(match op.description.take() {
            Some(d) => format!("{d}\n\n{note}"),
            None => note,
        });
    }
    doc
}
