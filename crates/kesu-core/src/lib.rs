//! kesu's domain, with no HTTP, CLI or database in it: everything that turns
//! one complaint text into a judgement.
//!
//! The folders are the architecture:
//! * [`text`]: normalisation (with offsets back to the original), PII masking and segmentation;
//! * [`flags`]: the legal-risk flagger and its lexicon format;
//! * [`triage`]: priority, route and store rules, repeat-contact tracking;
//! * [`lists`]: the word lists and rules that (re)load together;
//! * [`insights`]: alert rules and detectors, hot-spot clustering and keywords (over the stream);
//! * [`model`]: the quantised BERT encoder and its heads (inference only);
//! * [`pipeline`]: the one place that turns texts into results.
//!
//! Everything here takes plain option structs (e.g. [`pipeline::PipelineOptions`]);
//! the `kesu` binary's configuration builds them. The `schema` feature adds
//! `utoipa::ToSchema` derives to the result types for the server's OpenAPI document.
pub mod flags;
pub mod insights;
pub mod lists;
pub mod model;
pub mod parse;
pub mod pipeline;
pub mod text;
pub mod triage;
