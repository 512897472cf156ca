//! kesu (客诉): Chinese customer-complaint triage.
pub mod model;
