//! kesu (客诉): Chinese customer-complaint triage — the `kesu` binary's
//! command line and its one typed configuration, which wire the workspace's
//! crates together:
//! * `kesu-core` (`crates/kesu-core`): text, flags, word lists, triage, model inference, pipeline;
//! * `kesu-store` (`crates/kesu-store`): the complaint store;
//! * `kesu-server` (`crates/kesu-server`): the HTTP service;
//! * `kesu-train` (`crates/kesu-train`): split, training, evaluation, import, reference tools.
//!
//! Here: [`config`] (every setting a flag and a `KESU_*` variable), [`hub`]
//! (`hf://` model references) and [`cli`]
//! (`kesu serve|classify|flags|consume|produce|peek|split|train|eval|import-base|keys`).
pub mod cli;
pub mod config;
pub mod hub;
