//! kesu's HTTP service (actix-web) on top of `kesu-core` and `kesu-store`.
//!
//! * [`api`]: the route table ([`api::routes`]), handlers, the closed error
//!   codes ([`api::error`]), admission control, metrics, logging, consoles and
//!   the OpenAPI document;
//! * [`auth`]: API keys and roles;
//! * [`conversation`]: live conversations, their state and alert rules;
//! * [`settings`]: the plain settings the server runs with (the `kesu` binary's
//!   configuration builds them).
pub mod api;
pub mod auth;
pub mod conversation;
pub mod insights;
pub mod settings;
