//! The route table: every route of the service, in one place, with its
//! method, path, handler, access, request deadline and OpenAPI entry.
//!
//! Everything else is derived from this table, never written beside it:
//! * registration on the actix `App` ([`configure`]; a known path with
//!   another method answers 405);
//! * authorization (`super::authorize` looks the matched route up here; a
//!   path that matches no route needs any valid key and then answers 404);
//! * the request deadline (`KESU_REQUEST_TIMEOUT_MS` applies where `deadline`);
//! * metrics labels (the route's path pattern);
//! * the OpenAPI document ([`super::openapi::document`]: each route's
//!   operation, its schemas, and the API-key requirement with the role).
//!
//! To add a route: write the handler with its `#[utoipa::path]` in the
//! module of its job, and add one row here.

use std::sync::LazyLock;

use actix_web::http::Method;
use actix_web::web;

use super::{admin, conversations, customers, error::ApiError, insights, ops, reviews, texts};
use crate::auth::{session, Role};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who can reach the port (health, the OpenAPI document, the static console pages).
    Open,
    /// Any valid API key.
    AnyKey,
    /// A key with this role (or `admin`, which holds every role).
    Role(Role),
}

/// One route.
pub struct Route {
    pub method: Method,
    /// The actix path pattern (`{id}` segments), identical to the OpenAPI path.
    pub path: &'static str,
    pub access: Access,
    /// Whether the whole-request deadline (`KESU_REQUEST_TIMEOUT_MS`) applies.
    pub deadline: bool,
    /// Attaches the handler to an actix route of `method`.
    register: fn(actix_web::Route) -> actix_web::Route,
    /// Adds the route's operation and schemas to the OpenAPI document.
    pub(super) openapi: fn(&mut utoipa::openapi::OpenApi),
    /// The OpenAPI entry's own path and methods (checked against the row in tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) openapi_key: fn() -> (String, Vec<utoipa::openapi::path::HttpMethod>),
}

/// The operation and schemas of the handler whose `#[utoipa::path]` generated `P`.
fn doc<P: utoipa::Path + utoipa::__dev::SchemaReferences>(api: &mut utoipa::openapi::OpenApi) {
    api.paths.add_path_operation(P::path(), P::methods(), P::operation());
    let mut schemas = Vec::new();
    // The same hook utoipa's own `#[derive(OpenApi)]` uses to collect a path's schemas.
    P::schemas(&mut schemas);
    let comps = api.components.get_or_insert_with(Default::default);
    for (name, schema) in schemas {
        comps.schemas.entry(name).or_insert(schema);
    }
}

fn key<P: utoipa::Path>() -> (String, Vec<utoipa::openapi::path::HttpMethod>) {
    (P::path(), P::methods())
}

macro_rules! route {
    // `$doc` is the type `#[utoipa::path]` generated for the handler (`__path_<handler>`).
    ($method:ident $path:literal, $module:ident :: $handler:ident / $doc:ident, $access:expr, deadline = $deadline:literal) => {
        Route {
            method: Method::$method,
            path: $path,
            access: $access,
            deadline: $deadline,
            register: |r| r.to($module::$handler),
            openapi: doc::<$module::$doc>,
            openapi_key: key::<$module::$doc>,
        }
    };
}

use Access::{AnyKey, Open};
const INTAKE: Access = Access::Role(Role::Intake);
const AGENT: Access = Access::Role(Role::Agent);
const REVIEWER: Access = Access::Role(Role::Reviewer);
const ANALYST: Access = Access::Role(Role::Analyst);
const ADMIN: Access = Access::Role(Role::Admin);

/// Every route, in the order of the README's API table.
pub static TABLE: LazyLock<Vec<Route>> = LazyLock::new(|| {
    vec![
        route!(POST "/v1/classify", texts::classify / __path_classify, INTAKE, deadline = true),
        route!(POST "/v1/flags", texts::flags / __path_flags, INTAKE, deadline = true),
        route!(POST "/v1/segment", texts::segment / __path_segment, INTAKE, deadline = true),
        route!(GET "/v1/info", ops::info / __path_info, AnyKey, deadline = true),
        route!(POST "/v1/session", session::create / __path_create, AnyKey, deadline = true),
        route!(DELETE "/v1/session", session::delete / __path_delete, Open, deadline = true),
        route!(POST "/v1/conversations/{id}/messages", conversations::post_message / __path_post_message, AGENT, deadline = true),
        route!(GET "/v1/conversations/{id}/events", conversations::events / __path_events, AGENT, deadline = true),
        route!(GET "/v1/conversations/{id}", conversations::get_conversation / __path_get_conversation, AGENT, deadline = true),
        route!(DELETE "/v1/conversations/{id}", conversations::delete_conversation / __path_delete_conversation, AGENT, deadline = true),
        route!(GET "/v1/reviews", reviews::list / __path_list, REVIEWER, deadline = true),
        route!(GET "/v1/reviews/export", reviews::export / __path_export, REVIEWER, deadline = true),
        route!(GET "/v1/reviews/false-positive-terms", reviews::false_positive_terms / __path_false_positive_terms, REVIEWER, deadline = true),
        route!(GET "/v1/reviews/{id}/history", reviews::history / __path_history, REVIEWER, deadline = true),
        route!(GET "/v1/reviews/{id}", reviews::get / __path_get, REVIEWER, deadline = true),
        route!(PATCH "/v1/reviews/{id}", reviews::patch / __path_patch, REVIEWER, deadline = true),
        route!(GET "/v1/insights/series", insights::series / __path_series, ANALYST, deadline = true),
        route!(GET "/v1/insights/breakdown", insights::breakdown / __path_breakdown, ANALYST, deadline = true),
        route!(GET "/v1/insights/report", insights::report / __path_report, ANALYST, deadline = true),
        route!(GET "/v1/insights/issues", insights::issues / __path_issues, ANALYST, deadline = true),
        route!(GET "/v1/insights/issues/{id}", insights::issue / __path_issue, ANALYST, deadline = true),
        route!(GET "/v1/insights/alerts", insights::alerts / __path_alerts, ANALYST, deadline = true),
        route!(POST "/v1/insights/alerts/{id}/acknowledge", insights::acknowledge / __path_acknowledge, ANALYST, deadline = true),
        route!(POST "/v1/insights/alerts/{id}/resolve", insights::resolve / __path_resolve, ANALYST, deadline = true),
        route!(POST "/v1/customers/erase", customers::erase / __path_erase, ADMIN, deadline = true),
        route!(GET "/v1/audit", customers::audit / __path_audit, ADMIN, deadline = true),
        route!(GET "/console", conversations::console / __path_console, Open, deadline = false),
        route!(GET "/review", reviews::console / __path_console, Open, deadline = false),
        route!(GET "/insights", insights::console / __path_console, Open, deadline = false),
        route!(GET "/healthz", ops::healthz / __path_healthz, Open, deadline = false),
        route!(GET "/readyz", ops::readyz / __path_readyz, Open, deadline = false),
        route!(GET "/metrics", ops::metrics / __path_metrics, ADMIN, deadline = false),
        route!(GET "/openapi.json", ops::openapi / __path_openapi, Open, deadline = false),
        route!(POST "/admin/reload", admin::reload / __path_reload, ADMIN, deadline = false),
    ]
});

/// The route registered for `method` on the path pattern `pattern`; for a
/// known pattern with another method (answered 405), that pattern's first route.
pub fn lookup(method: &Method, pattern: &str) -> Option<&'static Route> {
    let same_path = || TABLE.iter().find(|r| r.path == pattern);
    TABLE.iter().find(|r| r.path == pattern && r.method == *method).or_else(same_path)
}

/// Register every route of [`TABLE`] on an actix `App`: one resource per
/// path (in table order), each method's handler, and 405 for other methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    fn not_allowed(allow: String) -> actix_web::Route {
        web::to(move || {
            let allow = allow.clone();
            async move { Err::<actix_web::HttpResponse, _>(ApiError::method_not_allowed(&allow)) }
        })
    }
    let mut paths: Vec<&'static str> = Vec::new();
    for r in TABLE.iter() {
        if !paths.contains(&r.path) {
            paths.push(r.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        for r in TABLE.iter().filter(|r| r.path == path) {
            resource = resource.route((r.register)(web::method(r.method.clone())));
            if answers_head(r) {
                // actix-http sends no body for HEAD; the headers are GET's.
                resource = resource.route((r.register)(web::method(Method::HEAD)));
            }
        }
        cfg.service(resource.default_service(not_allowed(allowed_methods(path))));
    }
}

/// Whether `r` also answers HEAD: every GET route but the event stream
/// (a HEAD would hold a subscriber slot for nothing).
fn answers_head(r: &Route) -> bool {
    r.method == Method::GET && !r.path.ends_with("/events")
}

/// The `Allow` header of `path`: its methods in table order, HEAD after GET where answered.
pub fn allowed_methods(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for r in TABLE.iter().filter(|r| r.path == path) {
        out.push(r.method.as_str());
        if answers_head(r) {
            out.push("HEAD");
        }
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_matches_its_openapi_entry_and_is_unique() {
        for r in TABLE.iter() {
            let (path, methods) = (r.openapi_key)();
            assert_eq!(path, r.path, "the handler's #[utoipa::path] path");
            let json = serde_json::to_string(&methods).unwrap();
            assert!(
                json.contains(&format!("\"{}\"", r.method.as_str().to_lowercase())),
                "{} {}: OpenAPI methods {json}",
                r.method,
                r.path
            );
            assert_eq!(
                TABLE.iter().filter(|o| o.path == r.path && o.method == r.method).count(),
                1,
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn routes_map_to_access() {
        let access = |m: Method, p: &str| lookup(&m, p).map(|r| r.access);
        assert_eq!(access(Method::GET, "/healthz"), Some(Open));
        assert_eq!(access(Method::GET, "/review"), Some(Open));
        assert_eq!(access(Method::GET, "/v1/info"), Some(AnyKey));
        assert_eq!(access(Method::POST, "/v1/classify"), Some(INTAKE));
        assert_eq!(access(Method::GET, "/v1/conversations/{id}/events"), Some(AGENT));
        assert_eq!(access(Method::GET, "/v1/reviews/export"), Some(REVIEWER));
        assert_eq!(access(Method::GET, "/v1/insights/series"), Some(ANALYST));
        assert_eq!(access(Method::POST, "/admin/reload"), Some(ADMIN));
        assert_eq!(access(Method::GET, "/metrics"), Some(ADMIN));
        assert_eq!(access(Method::POST, "/v1/session"), Some(AnyKey));
        assert_eq!(access(Method::DELETE, "/v1/session"), Some(Open));
        // another method on a known path: that path's access (then 405)
        assert_eq!(access(Method::PUT, "/v1/reviews/{id}"), Some(REVIEWER));
        assert_eq!(access(Method::GET, "/v1/reviewsX"), None);
    }

    #[test]
    fn allow_lists_each_path_s_methods() {
        let cases = [
            ("/healthz", "GET, HEAD"),
            ("/v1/classify", "POST"),
            ("/v1/reviews/{id}", "GET, HEAD, PATCH"),
            ("/v1/conversations/{id}", "GET, HEAD, DELETE"),
            ("/v1/conversations/{id}/events", "GET"),
        ];
        for (path, want) in cases {
            assert_eq!(allowed_methods(path), want, "{path}");
        }
    }

    #[test]
    fn text_routes_have_the_deadline_and_pages_do_not() {
        assert!(TABLE.iter().filter(|r| r.path.starts_with("/v1/")).all(|r| r.deadline));
        assert!(TABLE.iter().filter(|r| !r.path.starts_with("/v1/")).all(|r| !r.deadline));
    }
}
