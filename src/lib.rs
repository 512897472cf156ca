//! kesu (客诉): Chinese customer-complaint triage.
//!
//! The folders are the architecture:
//! * [`text`]: normalisation (with offsets back to the original) and segmentation;
//! * [`flags`]: the legal-risk flagger;
//! * [`triage`]: priority and route rules, repeat-contact tracking;
//! * [`lists`]: the word lists and rules that (re)load together;
//! * [`model`]: the quantised BERT encoder and its heads;
//! * [`pipeline`]: the one place that turns texts into results;
//! * [`api`]: HTTP routes, error mapping, metrics and the OpenAPI spec;
//! * [`config`]: the one typed configuration struct;
//! * [`cli`]: the command line (`kesu serve|classify|flags|...`).
pub mod flags;
pub mod lists;
pub mod triage;
pub mod model;
pub mod text;
pub mod api;
pub mod auth;
pub mod config;
pub mod pipeline;
pub mod conversation;
pub mod cli;
pub mod corpus;
pub mod store;
pub mod train;
