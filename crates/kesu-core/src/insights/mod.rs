//! The judgement over the whole stream, with no database in it: alert rules
//! and their detectors ([`alerts`]), and the online clustering and keywords
//! of hot spots ([`hotspots`]). The server's insights worker feeds them from
//! the store's aggregates.
pub mod alerts;
pub mod hotspots;
