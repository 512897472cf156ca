//! Alert rules (`lexicons/alerts.toml`, versioned, reloaded with the other
//! lists) and the detectors that judge one bucket against its history.
//!
//! A rule watches one series of the insights aggregates, bucket by bucket:
//! * `volume`: items per bucket;
//! * `negative_index`: the mean escalation level (0-3) of the bucket's items;
//! * `flag`: items with one flag (e.g. a `collective_action` surge);
//! * `emerging_issue`: a hot spot that turned `emerging`.
//!
//! A rule fires on a bucket when it has at least `min_count` items and its
//! value is at least `above` (a threshold) or at least `z` standard
//! deviations over the baseline (an anomaly), whichever are given. The
//! baseline is an EWMA over the previous `history` buckets (`baseline =
//! "ewma"`), or the same bucket of the day over the previous `history` days
//! (`baseline = "seasonal"`, hourly rules). The deviation has a floor (the
//! Poisson deviation `sqrt(mean)` for counts, 0.1 for the index), so a flat
//! history does not turn one extra item into an anomaly. After firing, a rule
//! stays quiet for `cooldown_minutes` of event time.
//!
//! Secrets never go in this file: a webhook target names the environment
//! variable (`secret_env`) or file (`secret_file`) holding its HMAC secret.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The rules file's name in the lexicon folder.
pub const ALERTS_FILE: &str = "alerts.toml";

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Volume,
    NegativeIndex,
    Flag,
    EmergingIssue,
}

/// How a rule's baseline is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    #[default]
    Ewma,
    Seasonal,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

fn hour() -> String {
    "hour".into()
}
fn d_alpha() -> f64 {
    0.2
}
fn d_history() -> usize {
    48
}
fn d_min_count() -> u64 {
    10
}
fn d_cooldown() -> u64 {
    60
}
fn d_timeout() -> u64 {
    5_000
}

/// One rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique; names the rule in the alert log, metrics and webhooks.
    pub name: String,
    pub kind: Kind,
    /// Bucket width: `minute`, `hour` (default) or `day`.
    #[serde(default = "hour")]
    pub grain: String,
    /// The flag a `flag` rule counts.
    #[serde(default)]
    pub flag: Option<String>,
    /// Fire when the value is at least this (a threshold).
    #[serde(default)]
    pub above: Option<f64>,
    /// Fire when the value is at least this many deviations over the baseline (an anomaly).
    #[serde(default)]
    pub z: Option<f64>,
    #[serde(default)]
    pub baseline: Baseline,
    /// EWMA weight of the newest bucket (0-1).
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    /// Buckets (ewma) or days (seasonal) of history the baseline reads.
    #[serde(default = "d_history")]
    pub history: usize,
    /// Fewest items in the bucket (of the rule's series) for the rule to fire.
    #[serde(default = "d_min_count")]
    pub min_count: u64,
    pub severity: Severity,
    /// Quiet time after firing, in minutes of event time.
    #[serde(default = "d_cooldown")]
    pub cooldown_minutes: u64,
    /// Webhook targets (names of `[[target]]`s) that get the alert.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// A webhook that receives alerts (JSON POST, HMAC-SHA256 signed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Environment variable holding the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File whose first line is the signing secret (e.g. a mounted Secret).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Per-attempt timeout.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    version: String,
    #[serde(default)]
    rule: Vec<Rule>,
    #[serde(default)]
    target: Vec<Target>,
}

/// The loaded rules file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertRules {
    /// The file's `version`; empty when there is no file.
    pub version: String,
    pub rules: Vec<Rule>,
    pub targets: Vec<Target>,
}

impl AlertRules {
    /// Parse and check `alerts.toml`. Errors name the rule and what is wrong.
    pub fn parse(raw: &str) -> Result<AlertRules, String> {
        if raw.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("secret ") || l.starts_with("secret=")
        }) {
            return Err("a webhook secret must not be written in the rules file: use secret_env or secret_file".into());
        }
        let r: RawRules = toml::from_str(raw).map_err(|e| e.to_string())?;
        if r.version.trim().is_empty() {
            return Err("`version` is empty".into());
        }
        let mut names = HashSet::new();
        let targets: HashSet<&str> = r.target.iter().map(|t| t.name.as_str()).collect();
        if targets.len() != r.target.len() {
            return Err("two targets share a name".into());
        }
        for t in &r.target {
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                return Err(format!("target {:?}: url must be http:// or https://", t.name));
            }
            if t.secret_env.is_none() && t.secret_file.is_none() {
                return Err(format!("target {:?}: give secret_env or secret_file (webhooks are signed)", t.name));
            }
        }
        for rule in &r.rule {
            let at = |m: &str| format!("rule {:?}: {m}", rule.name);
            if rule.name.is_empty() || !names.insert(rule.name.as_str()) {
                return Err(at("names must be unique and not empty"));
            }
            if !matches!(rule.grain.as_str(), "minute" | "hour" | "day") {
                return Err(at("grain must be minute, hour or day"));
            }
            match (rule.kind, &rule.flag) {
                (Kind::Flag, None) => return Err(at("a flag rule needs `flag`")),
                (Kind::Flag, Some(f)) => {
                    f.parse::<crate::flags::Flag>().map_err(|e| at(&e))?;
                }
                (_, Some(_)) => return Err(at("`flag` is only for kind = \"flag\"")),
                _ => {}
            }
            if rule.kind != Kind::EmergingIssue && rule.above.is_none() && rule.z.is_none() {
                return Err(at("give `above` (a threshold), `z` (an anomaly) or both"));
            }
            if !(rule.alpha > 0.0 && rule.alpha <= 1.0) {
                return Err(at("alpha must be in (0, 1]"));
            }
            if rule.baseline == Baseline::Seasonal && rule.grain != "hour" {
                return Err(at("a seasonal baseline is for hourly rules"));
            }
            if rule.history == 0 || rule.history > 1000 {
                return Err(at("history must be 1-1000"));
            }
            for t in &rule.targets {
                if !targets.contains(t.as_str()) {
                    return Err(at(&format!("unknown target {t:?}")));
                }
            }
        }
        Ok(AlertRules { version: r.version, rules: r.rule, targets: r.target })
    }
}

/// What a detector found for one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    pub fired: bool,
    pub value: f64,
    /// The baseline's mean, when history was read.
    pub expected: Option<f64>,
    /// Deviations over the baseline.
    pub z: Option<f64>,
}

/// Mean and deviation of `history` as `rule` forms its baseline (`None`
/// without history). For seasonal rules `history` is the same bucket of the
/// previous days.
pub fn baseline(rule: &Rule, history: &[f64]) -> Option<(f64, f64)> {
    let first = *history.first()?;
    let (mean, var) = match rule.baseline {
        Baseline::Ewma => {
            let (mut mu, mut var) = (first, 0.0);
            for &x in &history[1..] {
                let d = x - mu;
                mu += rule.alpha * d;
                var = (1.0 - rule.alpha) * (var + rule.alpha * d * d);
            }
            (mu, var)
        }
        Baseline::Seasonal => {
            let n = history.len() as f64;
            let mu = history.iter().sum::<f64>() / n;
            let var = if history.len() > 1 {
                history.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / (n - 1.0)
            } else {
                0.0
            };
            (mu, var)
        }
    };
    let floor = if rule.kind == Kind::NegativeIndex { 0.1 } else { mean.max(1.0).sqrt() };
    Some((mean, var.sqrt().max(floor)))
}

/// Fewest history values an anomaly needs (a quarter of `history`, at
/// least 6 buckets; seasonal: half, at least 3 days): before that only
/// `above` can fire, so the first hours of a new store are no anomaly.
pub fn min_history(rule: &Rule) -> usize {
    match rule.baseline {
        Baseline::Ewma => (rule.history / 4).max(6),
        Baseline::Seasonal => (rule.history / 2).max(3),
    }
}

/// Judge a bucket with value `value` and `count` items against `history`
/// (the rule's previous values, oldest first, none from before the data began).
pub fn detect(rule: &Rule, value: f64, count: u64, history: &[f64]) -> Detection {
    let base = if history.len() >= min_history(rule) { baseline(rule, history) } else { None };
    let z = base.map(|(mu, sd)| (value - mu) / sd);
    let over = rule.above.is_some_and(|a| value >= a);
    let anomalous = matches!((rule.z, z), (Some(k), Some(z)) if z >= k);
    Detection {
        fired: count >= rule.min_count && (over || anomalous),
        value,
        expected: base.map(|b| b.0),
        z: z.map(|z| (z * 100.0).round() / 100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../../../lexicons/alerts.toml");

    fn rule(extra: &str) -> Rule {
        let raw = format!("version = \"t\"\n[[rule]]\nname = \"r\"\nseverity = \"warning\"\n{extra}\n");
        AlertRules::parse(&raw).unwrap().rules.remove(0)
    }

    #[test]
    fn the_shipped_rules_parse() {
        let r = AlertRules::parse(SHIPPED).unwrap();
        assert!(!r.version.is_empty());
        for k in [Kind::Volume, Kind::NegativeIndex, Kind::Flag, Kind::EmergingIssue] {
            assert!(r.rules.iter().any(|x| x.kind == k), "{k:?}");
        }
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let cases = [
            ("[[rule]]\nname = \"a\"\nkind = \"volume\"\nseverity = \"info\"\n", "give `above`"),
            ("[[rule]]\nname = \"a\"\nkind = \"flag\"\nz = 3\nseverity = \"info\"\n", "needs `flag`"),
            (
                "[[rule]]\nname = \"a\"\nkind = \"flag\"\nflag = \"weather\"\nz = 3\nseverity = \"info\"\n",
                "unknown flag",
            ),
            ("[[rule]]\nname = \"a\"\nkind = \"volume\"\nz = 3\ngrain = \"week\"\nseverity = \"info\"\n", "grain"),
            ("[[rule]]\nname = \"a\"\nkind = \"volume\"\nz = 3\nseverity = \"loud\"\n", "severity"),
            (
                "[[rule]]\nname = \"a\"\nkind = \"volume\"\nz = 3\nseverity = \"info\"\ntargets = [\"x\"]\n",
                "unknown target",
            ),
            ("[[rule]]\nname = \"a\"\nkind = \"volume\"\nz = 3\nalpha = 0\nseverity = \"info\"\n", "alpha"),
            ("[[target]]\nname = \"x\"\nurl = \"http://h\"\nsecret = \"s3cret\"\n", "must not be written"),
            ("[[target]]\nname = \"x\"\nurl = \"http://h\"\n", "secret_env or secret_file"),
            ("[[target]]\nname = \"x\"\nurl = \"ftp://h\"\nsecret_env = \"S\"\n", "http"),
        ];
        for (body, want) in cases {
            let e = AlertRules::parse(&format!("version = \"1\"\n{body}")).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        let two = "version = \"1\"\n[[rule]]\nname = \"a\"\nkind = \"volume\"\nz = 3\nseverity = \"info\"\n";
        assert!(AlertRules::parse(&format!("{two}{}", &two[14..])).unwrap_err().contains("unique"));
    }

    #[test]
    fn detectors_table() {
        let vol = rule("kind = \"volume\"\nz = 4\nmin_count = 10");
        let flat = vec![20.0; 48];
        // (value, count, history, fires)
        let cases: &[(f64, u64, &[f64], bool)] = &[
            (20.0, 20, &flat, false),
            (30.0, 30, &flat, false), // +10 over a mean of 20: z = 10 / sqrt(20) = 2.2
            (45.0, 45, &flat, true),  // z = 5.6
            (45.0, 5, &flat, false),  // under min_count
            (45.0, 45, &[], false),   // no history, no anomaly
        ];
        for (value, count, history, fires) in cases {
            assert_eq!(detect(&vol, *value, *count, history).fired, *fires, "{value} {count}");
        }
        let thr = rule("kind = \"negative_index\"\nabove = 1.8\nmin_count = 5");
        assert!(detect(&thr, 1.9, 6, &[]).fired);
        assert!(!detect(&thr, 1.7, 60, &[]).fired);
        assert!(!detect(&thr, 2.5, 4, &[]).fired);
        let d = detect(&vol, 45.0, 45, &flat);
        assert_eq!(d.expected, Some(20.0));
        assert!(d.z.unwrap() > 5.0);
        // a noisy history widens the deviation
        let noisy: Vec<f64> = (0..48).map(|i| if i % 2 == 0 { 5.0 } else { 35.0 }).collect();
        assert!(!detect(&vol, 45.0, 45, &noisy).fired);
        let seasonal = rule("kind = \"volume\"\nz = 4\nbaseline = \"seasonal\"\nhistory = 7");
        assert!(detect(&seasonal, 60.0, 60, &[20.0, 22.0, 18.0, 21.0, 19.0, 20.0, 20.0]).fired);
        assert!(!detect(&seasonal, 24.0, 24, &[20.0, 22.0, 18.0, 21.0, 19.0, 20.0, 20.0]).fired);
        // too little history: no anomaly yet (a threshold still fires)
        assert!(!detect(&vol, 450.0, 450, &flat[..5]).fired);
        assert!(detect(&vol, 450.0, 450, &flat[..12]).fired);
    }
}
