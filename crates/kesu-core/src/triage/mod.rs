//! Triage: a priority (P1..P4) and a route for every classified text, from
//! the rules in `lexicons/triage.toml` ([`rules`]) and the repeat-contact
//! tracker ([`contacts`]).

pub mod contacts;
pub mod rules;

pub use contacts::{ContactError, ContactStore, MemoryContacts};
pub use rules::{Facts, Priority, Rule, RulesError, StoreOverride, StorePolicy, Triage, TriageRules};
