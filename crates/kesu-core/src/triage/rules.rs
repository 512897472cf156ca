//! The triage rules file (`lexicons/triage.toml`): parsing, validation and
//! evaluation. The file's comment header documents the format; the README's
//! "Triage" section is the same text in prose.
//!
//! Evaluation: every rule whose conditions ALL hold matches. The result's
//! priority is the highest (P1 > P2 > P3 > P4) among the matching rules; its
//! route is that of the FIRST matching rule (file order) with that priority;
//! `reasons` lists one line per matching rule, in file order. No match: the
//! file's `[default]` (P4 standard in the shipped file) and no reasons.
//!
//! The same file says what the complaint store keeps ([`StorePolicy`]: its
//! `[store]` section and each rule's `store = true`); the verdict carries the
//! answer ([`Triage::store`]), so HTTP classify, conversations and
//! `kesu classify --store` all keep exactly what the loaded rules say.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::flags::{Flag, FlagReport};
use crate::model::CATEGORY_LABELS;

/// Priority of a complaint: P1 is the highest (handle first), P4 the lowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        })
    }
}

/// The triage verdict of one classified text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Triage {
    /// `P1` (highest) .. `P4`: the highest priority among the matching rules.
    pub priority: Priority,
    /// Where the complaint goes (e.g. `standard`, `senior_agent`, `compliance`,
    /// `security`): the route of the first matching rule (file order) of that priority.
    pub route: String,
    /// One line per matching rule, in file order: `"<priority>: <what matched> (rule <name>)"`.
    /// Empty when no rule matched (the default applies).
    pub reasons: Vec<String>,
    /// The `version` of the triage rules file that decided.
    pub rules_version: String,
    /// Earlier contacts of the request's `customer_ref` within the repeat-contact
    /// window; absent without a `customer_ref` (or when tracking is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior_contacts: Option<u32>,
    /// Whether the complaint store keeps this item ([`StorePolicy`]); not part of the JSON.
    #[serde(skip)]
    pub store: bool,
}

/// What the complaint store keeps: an item that needs review (when
/// `needs_review`), an item at `min_escalation` or above (4 = never by
/// level), and an item that a rule with `store = true` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StorePolicy {
    pub needs_review: bool,
    pub min_escalation: u8,
}

impl Default for StorePolicy {
    /// Needs review, or escalation 2 (angry) or above.
    fn default() -> Self {
        StorePolicy { needs_review: true, min_escalation: 2 }
    }
}

/// Values of the deprecated settings `KESU_STORE_NEEDS_REVIEW` and
/// `KESU_STORE_MIN_ESCALATION`: when given, they replace the rules file's
/// `[store]` values on every load and reload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreOverride {
    pub needs_review: Option<bool>,
    pub min_escalation: Option<u8>,
}

impl StoreOverride {
    pub fn is_empty(&self) -> bool {
        self.needs_review.is_none() && self.min_escalation.is_none()
    }

    /// `policy` with the given values replaced.
    pub fn apply(&self, policy: StorePolicy) -> StorePolicy {
        StorePolicy {
            needs_review: self.needs_review.unwrap_or(policy.needs_review),
            min_escalation: self.min_escalation.unwrap_or(policy.min_escalation),
        }
    }
}

/// What the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub flags: &'a FlagReport,
    /// The primary category label.
    pub category: &'a str,
    /// The escalation level 0..3.
    pub escalation: u8,
    /// Earlier contacts of the same customer within the window (`None`: unknown).
    pub prior_contacts: Option<u32>,
    /// The repeat-contact window (for the reason text).
    pub repeat_window: Duration,
}

/// A rules file that failed to parse or validate (the file parsers' one error type).
pub type RulesError = crate::parse::ParseError;

/// One rule, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub priority: Priority,
    pub route: String,
    pub flags_any: Option<Vec<Flag>>,
    pub flags_all: Option<Vec<Flag>>,
    pub min_severity: Option<u8>,
    pub count_negated: bool,
    pub min_escalation: Option<u8>,
    pub category_any: Option<Vec<String>>,
    /// Minimum earlier contacts within the window (`repeat_contact = true` is 1).
    pub min_prior_contacts: Option<u32>,
    /// The store keeps what this rule matches (`store = true`).
    pub store: bool,
    /// 1-based line of the rule in the file.
    pub line: usize,
}

/// A parsed, validated rules file. Immutable; swapped whole on reload.
#[derive(Debug, Clone)]
pub struct TriageRules {
    pub version: String,
    pub default_priority: Priority,
    pub default_route: String,
    pub rules: Vec<Rule>,
    /// What the complaint store keeps (`[store]`, default [`StorePolicy::default`]).
    pub store: StorePolicy,
}

impl Default for TriageRules {
    /// No rules: everything is P4 `standard`.
    fn default() -> Self {
        TriageRules {
            version: "none".into(),
            default_priority: Priority::P4,
            default_route: "standard".into(),
            rules: vec![],
            store: StorePolicy::default(),
        }
    }
}

// ---- parsing -------------------------------------------------------------

/// A route name: 1–64 chars of `a-z 0-9 _`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
struct Route(String);

impl TryFrom<String> for Route {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("route {s:?} must be 1-64 chars of a-z, 0-9 and _"));
        }
        Ok(Route(s))
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
struct Severity(u8);

impl TryFrom<i64> for Severity {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match v {
            1..=3 => Ok(Severity(v as u8)),
            _ => Err(format!("min_severity must be 1, 2 or 3, found {v}")),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
struct Level(u8);

impl TryFrom<i64> for Level {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match v {
            0..=3 => Ok(Level(v as u8)),
            _ => Err(format!("min_escalation must be 0, 1, 2 or 3, found {v}")),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
struct StoreLevel(u8);

impl TryFrom<i64> for StoreLevel {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match v {
            0..=4 => Ok(StoreLevel(v as u8)),
            _ => Err(format!("[store] min_escalation must be 0..3, or 4 for never by level, found {v}")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    needs_review: Option<bool>,
    min_escalation: Option<StoreLevel>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
struct Count(u32);

impl TryFrom<i64> for Count {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match u32::try_from(v) {
            Ok(n) if n >= 1 => Ok(Count(n)),
            _ => Err(format!("min_prior_contacts must be a whole number >= 1, found {v}")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
struct Category(String);

impl TryFrom<String> for Category {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if CATEGORY_LABELS.contains(&s.as_str()) {
            Ok(Category(s))
        } else {
            Err(format!("unknown category {s:?}, expected one of {}", CATEGORY_LABELS.join(", ")))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefault {
    priority: Priority,
    route: Route,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    priority: Priority,
    route: Route,
    flags_any: Option<Vec<Flag>>,
    flags_all: Option<Vec<Flag>>,
    min_severity: Option<Severity>,
    count_negated: Option<bool>,
    min_escalation: Option<Level>,
    category_any: Option<Vec<Category>>,
    repeat_contact: Option<bool>,
    min_prior_contacts: Option<Count>,
    always_review: Option<bool>,
    store: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Spanned<String>,
    default: RawDefault,
    store: Option<RawStore>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

/// 1-based line of byte offset `at` in `raw`.
fn line_of(raw: &str, at: usize) -> usize {
    raw.as_bytes()[..at.min(raw.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

impl TriageRules {
    /// Parse and validate the TOML text. Errors name the 1-based line.
    pub fn parse(raw: &str) -> Result<TriageRules, RulesError> {
        let file: RawFile = toml::from_str(raw).map_err(|e| RulesError {
            line: e.span().map(|s| line_of(raw, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let at = |span: std::ops::Range<usize>, message: String| RulesError {
            line: Some(line_of(raw, span.start)),
            message,
        };
        let version = file.version.get_ref().trim().to_string();
        if version.is_empty() {
            return Err(at(file.version.span(), "version is empty".into()));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
        for spanned in file.rules {
            let span = spanned.span();
            let line = line_of(raw, span.start);
            let r = spanned.into_inner();
            let err = |m: String| RulesError { line: Some(line), message: format!("rule {:?}: {m}", r.name) };
            if r.name.trim().is_empty() {
                return Err(RulesError { line: Some(line), message: "a rule needs a non-empty name".into() });
            }
            if rules.iter().any(|x| x.name == r.name) {
                return Err(err("duplicate rule name".into()));
            }
            // `always_review = true`: a hit of any flag that always needs review
            // (Flag::always_review, the set that sets needs_review), negated or not.
            let (flags_any, count_negated) = match r.always_review {
                None => (r.flags_any.clone(), r.count_negated),
                Some(false) => {
                    return Err(err("always_review = false is not a condition (leave it out instead)".into()))
                }
                Some(true) if r.flags_any.is_some() || r.count_negated.is_some() => {
                    return Err(err(
                        "always_review = true stands for flags_any and count_negated: give one or the other".into(),
                    ))
                }
                Some(true) => (Some(Flag::ALL.into_iter().filter(|f| f.always_review()).collect()), Some(true)),
            };
            for (key, list) in [("flags_any", &r.flags_any), ("flags_all", &r.flags_all)] {
                if list.as_ref().is_some_and(|l| l.is_empty()) {
                    return Err(err(format!("{key} is empty (leave it out instead)")));
                }
            }
            if r.category_any.as_ref().is_some_and(|l| l.is_empty()) {
                return Err(err("category_any is empty (leave it out instead)".into()));
            }
            let flag_condition = flags_any.is_some() || r.flags_all.is_some() || r.min_severity.is_some();
            if count_negated.is_some() && !flag_condition {
                return Err(err("count_negated needs a flag condition (flags_any, flags_all or min_severity)".into()));
            }
            let min_prior_contacts = match (r.repeat_contact, r.min_prior_contacts) {
                (Some(false), _) => {
                    return Err(err("repeat_contact = false is not a condition (leave it out instead)".into()))
                }
                (_, Some(Count(n))) => Some(n),
                (Some(true), None) => Some(1),
                (None, None) => None,
            };
            if !flag_condition && r.min_escalation.is_none() && r.category_any.is_none() && min_prior_contacts.is_none()
            {
                return Err(err("no condition (flags_any, flags_all, min_severity, min_escalation, category_any, repeat_contact, min_prior_contacts); the fallback is [default]".into()));
            }
            rules.push(Rule {
                name: r.name.clone(),
                priority: r.priority,
                route: r.route.0,
                flags_any,
                flags_all: r.flags_all,
                min_severity: r.min_severity.map(|s| s.0),
                count_negated: count_negated.unwrap_or(false),
                min_escalation: r.min_escalation.map(|l| l.0),
                category_any: r.category_any.map(|l| l.into_iter().map(|c| c.0).collect()),
                min_prior_contacts,
                store: r.store.unwrap_or(false),
                line,
            });
        }
        let d = StorePolicy::default();
        let store = file.store.map_or(d, |s| StorePolicy {
            needs_review: s.needs_review.unwrap_or(d.needs_review),
            min_escalation: s.min_escalation.map_or(d.min_escalation, |l| l.0),
        });
        Ok(TriageRules {
            version,
            default_priority: file.default.priority,
            default_route: file.default.route.0,
            rules,
            store,
        })
    }

    /// Read and parse a rules file (errors carry the line; the caller names the file).
    pub fn load(path: &std::path::Path) -> Result<TriageRules, RulesError> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| RulesError { line: None, message: format!("cannot read: {e}") })?;
        TriageRules::parse(&raw)
    }

    /// The verdict for `facts` (see the module documentation).
    pub fn evaluate(&self, facts: &Facts<'_>) -> Triage {
        let mut best: Option<(Priority, &str)> = None;
        let mut reasons = Vec::new();
        let mut store =
            (self.store.needs_review && facts.flags.needs_review) || facts.escalation >= self.store.min_escalation;
        for rule in &self.rules {
            let Some(what) = rule.matches(facts) else { continue };
            store |= rule.store;
            reasons.push(format!("{}: {} (rule {})", rule.priority, what.join(", "), rule.name));
            if best.is_none_or(|(p, _)| rule.priority < p) {
                best = Some((rule.priority, &rule.route));
            }
        }
        let (priority, route) = best.unwrap_or((self.default_priority, &self.default_route));
        Triage {
            priority,
            route: route.to_string(),
            reasons,
            rules_version: self.version.clone(),
            prior_contacts: facts.prior_contacts,
            store,
        }
    }
}

impl Rule {
    /// `Some(what matched, one phrase per condition)` when every condition holds.
    fn matches(&self, f: &Facts<'_>) -> Option<Vec<String>> {
        let mut what = Vec::new();
        if self.flags_any.is_some() || self.flags_all.is_some() || self.min_severity.is_some() {
            let min_sev = self.min_severity.unwrap_or(1);
            // flags with a qualifying hit: severity >= min, and not negated unless negated hits count
            // (value: true when every qualifying hit of the flag is negated)
            let mut qualifying: Vec<(Flag, bool)> = Vec::new();
            for h in &f.flags.hits {
                if h.severity < min_sev || (h.negated && !self.count_negated) {
                    continue;
                }
                match qualifying.iter_mut().find(|(fl, _)| *fl == h.flag) {
                    Some((_, all_negated)) => *all_negated &= h.negated,
                    None => qualifying.push((h.flag, h.negated)),
                }
            }
            qualifying.sort();
            let has = |fl: &Flag| qualifying.iter().any(|(q, _)| q == fl);
            let shown: Vec<(Flag, bool)> = match (&self.flags_any, &self.flags_all) {
                (any, all) if any.is_some() || all.is_some() => {
                    if let Some(all) = all {
                        if !all.iter().all(has) {
                            return None;
                        }
                    }
                    if let Some(any) = any {
                        if !any.iter().any(has) {
                            return None;
                        }
                    }
                    let named = |fl: &Flag| any.iter().flatten().chain(all.iter().flatten()).any(|x| x == fl);
                    qualifying.iter().copied().filter(|(fl, _)| named(fl)).collect()
                }
                _ => qualifying.clone(),
            };
            if shown.is_empty() {
                return None;
            }
            let names: Vec<String> =
                shown.iter().map(|(fl, neg)| if *neg { format!("{fl} (negated)") } else { fl.to_string() }).collect();
            let mut phrase = format!("{} flag{}", names.join(" + "), if names.len() > 1 { "s" } else { "" });
            if let Some(s) = self.min_severity {
                phrase.push_str(&format!(" at severity >= {s}"));
            }
            what.push(phrase);
        }
        if let Some(cats) = &self.category_any {
            if !cats.iter().any(|c| c == f.category) {
                return None;
            }
            what.push(format!("category {}", f.category));
        }
        if let Some(min) = self.min_escalation {
            if f.escalation < min {
                return None;
            }
            what.push(format!("escalation {}", f.escalation));
        }
        if let Some(min) = self.min_prior_contacts {
            let n = f.prior_contacts?;
            if n < min {
                return None;
            }
            what.push(format!("repeat contact ({n} earlier within {})", human(f.repeat_window)));
        }
        Some(what)
    }
}

/// `86400 s` → `24 h`, `90 s` → `90 s`, `600 s` → `10 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests;
