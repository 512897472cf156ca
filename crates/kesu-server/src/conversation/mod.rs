//! Live conversations: per-message emotion tags, a smoothed escalation trend
//! and alerts that tell an agent a conversation is heating up.
//!
//! This module knows nothing about HTTP. [`Conversation`] is the state of one
//! conversation and [`Conversation::record`] is the only way it changes: it
//! takes one message (a customer message with its classification, or an agent
//! message, which is recorded but never scored) and returns the recorded
//! message with the alerts it fired. [`Registry`] holds the live
//! conversations with a time-to-live and a cap, and fans events out to
//! subscribers.
//!
//! ## Alert rules ([`AlertRules`])
//! All levels are on the escalation scale 0 calm … 3 escalating. A customer
//! message's *expected level* is Σ level × probability; the *trend* is its
//! exponentially weighted moving average (`trend = α·expected + (1−α)·trend`,
//! starting from 0 before the first customer message).
//! * `level_crossed`: the trend rises from below `level` to `level` or above.
//!   It fires again only after the trend has fallen below `level` first.
//! * `fast_rise`: the trend is at least `rise` above its minimum over the
//!   previous `rise_window` customer messages (so never on the first one). At
//!   most once per `rise_window` customer messages.
//! * `consecutive_negative`: `consecutive` customer messages in a row at level
//!   1 (dissatisfied) or worse. Agent messages do not break the run; a calm
//!   customer message does, and re-arms the rule.
//! * `threat_flag`: a non-negated hit of one of `threat_flags` (by default
//!   litigation, regulator, media, self_harm_violence), once per flag per
//!   conversation. Negated hits (我不想起诉) are reported on the message but do
//!   not alert.
//!
//! Once any alert has fired the conversation's `handoff_recommended` stays
//! true (common practice: a customer who kept complaining goes to a senior
//! handler and stays there).

pub mod registry;

pub use registry::{Event, Live, OpenError, Registry};

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

use kesu_core::flags::{Flag, FlagReport};
use kesu_core::pipeline::{CategoryResult, Classified, EmotionResult};

/// Who wrote a message (its JSON field is `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    Customer,
    Agent,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::Customer => "customer",
            Speaker::Agent => "agent",
        }
    }
}

/// The alert rules; see the module documentation for their exact meaning.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertRules {
    /// Smoothing factor α of the trend, in (0, 1]; 1 = no smoothing.
    pub alpha: f32,
    /// `level_crossed` threshold on the trend (0..=3).
    pub level: f32,
    /// `fast_rise`: rise of the trend that alerts, in levels.
    pub rise: f32,
    /// `fast_rise`: customer messages looked back over.
    pub rise_window: usize,
    /// `consecutive_negative`: run length that alerts (0 = off).
    pub consecutive: u32,
    /// Flags whose non-negated hits alert.
    pub threat_flags: Vec<Flag>,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            alpha: 0.5,
            level: 2.0,
            rise: 1.0,
            rise_window: 3,
            consecutive: 3,
            threat_flags: vec![Flag::Litigation, Flag::Regulator, Flag::Media, Flag::SelfHarmViolence],
        }
    }
}

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    LevelCrossed,
    FastRise,
    ConsecutiveNegative,
    ThreatFlag,
}

impl AlertKind {
    /// The serialised name (`level_crossed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::LevelCrossed => "level_crossed",
            AlertKind::FastRise => "fast_rise",
            AlertKind::ConsecutiveNegative => "consecutive_negative",
            AlertKind::ThreatFlag => "threat_flag",
        }
    }
}

/// One alert, with a human-readable reason.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Alert {
    pub kind: AlertKind,
    /// The message that fired it.
    pub seq: u64,
    /// E.g. "trend 2.3 crossed level 2.0", "3 dissatisfied-or-worse customer messages in a row".
    pub reason: String,
    /// For `threat_flag`: the flags that fired.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
    /// RFC 3339 time the alert fired.
    pub at: String,
}

/// One recorded message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    /// Position in the conversation, from 1, in arrival order.
    pub seq: u64,
    pub role: Speaker,
    pub text: String,
    /// The caller's timestamp (RFC 3339), if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// RFC 3339 time kesu recorded the message.
    pub received_at: String,
    /// Customer messages only: the emotion tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emotion: Option<EmotionResult>,
    /// Customer messages only: what the message is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<CategoryResult>,
    /// Customer messages only: legal-risk flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<FlagReport>,
    /// Customer messages only: the trend after this message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trend: Option<f32>,
    /// Alerts this message fired.
    pub alerts: Vec<Alert>,
    /// Customer messages the store rule keeps: the stored item's review id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_id: Option<String>,
}

/// Overall state, for colouring a conversation in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ConversationStatus)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No customer dissatisfaction now.
    Calm,
    /// The last customer message was dissatisfied or worse, or the trend is at least 1.
    Watch,
    /// An alert has fired: hand over to a senior handler.
    Alert,
}

/// The highest level a customer message reached.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Peak {
    pub level: u8,
    pub seq: u64,
}

/// The state of one conversation (without its messages).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct State {
    pub id: String,
    pub status: Status,
    /// True once any alert has fired (sticky).
    pub handoff_recommended: bool,
    pub messages: u64,
    pub customer_messages: u64,
    /// Level of the latest customer message.
    pub last_level: Option<u8>,
    /// Smoothed escalation trend, 0..=3.
    pub trend: f32,
    pub peak: Option<Peak>,
    /// Current run of dissatisfied-or-worse customer messages.
    pub consecutive_negative: u32,
    /// Every alert so far (the newest `max_alerts` are kept).
    pub alerts: Vec<Alert>,
    pub created_at: String,
    pub last_activity_at: String,
}

/// A conversation's state with its newest messages.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct View {
    pub state: State,
    /// The newest messages kept in memory (at most `max_messages`), oldest first.
    pub messages: Vec<Message>,
}

/// What a new message did: the recorded message and the state after it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recorded {
    pub message: Message,
    pub state: State,
}

/// The scored part of a customer message.
pub struct Scored {
    pub emotion: EmotionResult,
    pub category: CategoryResult,
    pub flags: FlagReport,
}

impl From<Classified> for Scored {
    fn from(c: Classified) -> Self {
        Scored { emotion: c.emotion, category: c.category, flags: c.flags }
    }
}

/// One conversation.
pub struct Conversation {
    state: State,
    messages: VecDeque<Message>,
    max_messages: usize,
    max_alerts: usize,
    /// Trend after each of the last `rise_window` customer messages.
    recent_trends: VecDeque<f32>,
    /// Customer messages since the last `fast_rise` alert.
    since_rise: usize,
    alerted_flags: BTreeSet<Flag>,
    closed: bool,
    /// Bytes the kept messages hold (estimate: [`message_bytes`]).
    kept_bytes: usize,
    /// Most bytes kept; older messages go first (the newest is always kept).
    max_bytes: usize,
    /// The registry's total of every conversation's `kept_bytes`.
    total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Bytes one kept message is counted as: its text and timestamp plus a fixed
/// allowance for its scores, flags and alerts.
pub fn message_bytes(text: &str, timestamp: Option<&str>) -> usize {
    const OVERHEAD: usize = 1024;
    text.len() + timestamp.map_or(0, str::len) + OVERHEAD
}

impl Drop for Conversation {
    fn drop(&mut self) {
        self.total.fetch_sub(self.kept_bytes, std::sync::atomic::Ordering::SeqCst);
    }
}

/// RFC 3339 text of `t`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl Conversation {
    pub fn new(id: &str, max_messages: usize, max_alerts: usize, now: OffsetDateTime) -> Conversation {
        let t = rfc3339(now);
        Conversation {
            state: State {
                id: id.to_string(),
                status: Status::Calm,
                handoff_recommended: false,
                messages: 0,
                customer_messages: 0,
                last_level: None,
                trend: 0.0,
                peak: None,
                consecutive_negative: 0,
                alerts: Vec::new(),
                created_at: t.clone(),
                last_activity_at: t,
            },
            messages: VecDeque::new(),
            max_messages: max_messages.max(1),
            max_alerts: max_alerts.max(1),
            recent_trends: VecDeque::new(),
            since_rise: usize::MAX,
            alerted_flags: BTreeSet::new(),
            closed: false,
            kept_bytes: 0,
            max_bytes: usize::MAX,
            total: Default::default(),
        }
    }

    /// Keep at most `max_bytes` of messages (the newest always), counted
    /// into `total` as well (the registry's sum over conversations).
    pub fn with_byte_limit(mut self, max_bytes: usize, total: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Self {
        self.max_bytes = max_bytes.max(1);
        total.fetch_add(self.kept_bytes, std::sync::atomic::Ordering::SeqCst);
        self.total.fetch_sub(self.kept_bytes, std::sync::atomic::Ordering::SeqCst);
        self.total = total;
        self
    }

    /// Bytes the kept messages hold.
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn view(&self) -> View {
        View { state: self.state.clone(), messages: self.messages.iter().cloned().collect() }
    }

    /// True once the registry dropped this conversation (expired or deleted).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// Record one message. `scored` must be `Some` for a customer message and
    /// is ignored for an agent message (agent text is never scored as
    /// customer emotion). Messages get consecutive `seq` numbers in the order
    /// this is called.
    /// The `seq` the next recorded message will get.
    pub fn next_seq(&self) -> u64 {
        self.state.messages + 1
    }

    /// Attach a stored item's review id to kept message `seq`.
    pub fn set_review_id(&mut self, seq: u64, review_id: Option<String>) {
        if let Some(m) = self.messages.iter_mut().rev().find(|m| m.seq == seq) {
            m.review_id = review_id;
        }
    }

    pub fn record(
        &mut self,
        role: Speaker,
        text: String,
        timestamp: Option<String>,
        scored: Option<Scored>,
        rules: &AlertRules,
        now: OffsetDateTime,
    ) -> Recorded {
        let at = rfc3339(now);
        self.state.messages += 1;
        self.state.last_activity_at = at.clone();
        let seq = self.state.messages;
        let mut msg = Message {
            seq,
            role,
            text,
            timestamp,
            received_at: at.clone(),
            emotion: None,
            category: None,
            flags: None,
            trend: None,
            alerts: Vec::new(),
            review_id: None,
        };
        if let (Speaker::Customer, Some(s)) = (role, scored) {
            msg.alerts = self.score(seq, &s, rules, &at);
            msg.trend = Some(self.state.trend);
            msg.emotion = Some(s.emotion);
            msg.category = Some(s.category);
            msg.flags = Some(s.flags);
        }
        self.state.status = if self.state.handoff_recommended {
            Status::Alert
        } else if self.state.consecutive_negative > 0 || self.state.trend >= 1.0 {
            Status::Watch
        } else {
            Status::Calm
        };
        let add = message_bytes(&msg.text, msg.timestamp.as_deref());
        self.kept_bytes += add;
        self.total.fetch_add(add, std::sync::atomic::Ordering::SeqCst);
        self.messages.push_back(msg.clone());
        while self.messages.len() > self.max_messages || (self.kept_bytes > self.max_bytes && self.messages.len() > 1) {
            let Some(old) = self.messages.pop_front() else { break };
            let sub = message_bytes(&old.text, old.timestamp.as_deref());
            self.kept_bytes -= sub;
            self.total.fetch_sub(sub, std::sync::atomic::Ordering::SeqCst);
        }
        Recorded { message: msg, state: self.state.clone() }
    }

    /// Update the customer-emotion state with one scored message; return the alerts it fired.
    fn score(&mut self, seq: u64, s: &Scored, rules: &AlertRules, at: &str) -> Vec<Alert> {
        let st = &mut self.state;
        let level = s.emotion.level;
        let expected: f32 = s.emotion.probabilities.iter().enumerate().map(|(i, p)| i as f32 * p).sum();
        let alpha = rules.alpha.clamp(f32::EPSILON, 1.0);
        let before = st.trend;
        st.trend = alpha * expected + (1.0 - alpha) * before;
        st.customer_messages += 1;
        st.last_level = Some(level);
        if st.peak.is_none_or(|p| level > p.level) {
            st.peak = Some(Peak { level, seq });
        }
        let mut alerts = Vec::new();
        let mut fire = |kind, reason: String, flags: Vec<Flag>| {
            alerts.push(Alert { kind, seq, reason, flags, at: at.to_string() })
        };

        if before < rules.level && st.trend >= rules.level {
            fire(
                AlertKind::LevelCrossed,
                format!("trend {:.2} crossed level {:.1} (message level {level})", st.trend, rules.level),
                vec![],
            );
        }

        let low = self.recent_trends.iter().copied().fold(f32::INFINITY, f32::min);
        self.since_rise = self.since_rise.saturating_add(1);
        if !self.recent_trends.is_empty() && st.trend - low >= rules.rise && self.since_rise > rules.rise_window {
            fire(
                AlertKind::FastRise,
                format!(
                    "trend rose {:.2} levels (from {:.2} to {:.2}) within {} customer messages",
                    st.trend - low,
                    low,
                    st.trend,
                    rules.rise_window
                ),
                vec![],
            );
            self.since_rise = 0;
        }
        if rules.rise_window > 0 {
            if self.recent_trends.len() == rules.rise_window {
                self.recent_trends.pop_front();
            }
            self.recent_trends.push_back(st.trend);
        }

        if level >= 1 {
            st.consecutive_negative += 1;
            if rules.consecutive > 0 && st.consecutive_negative == rules.consecutive {
                fire(
                    AlertKind::ConsecutiveNegative,
                    format!("{} dissatisfied-or-worse customer messages in a row", rules.consecutive),
                    vec![],
                );
            }
        } else {
            st.consecutive_negative = 0;
        }

        let threats: Vec<&kesu_core::flags::FlagHit> =
            s.flags.hits.iter().filter(|h| !h.negated && rules.threat_flags.contains(&h.flag)).collect();
        let new_flags: BTreeSet<Flag> =
            threats.iter().map(|h| h.flag).filter(|f| !self.alerted_flags.contains(f)).collect();
        if !new_flags.is_empty() {
            self.alerted_flags.extend(new_flags.iter().copied());
            let mut terms: Vec<String> = threats
                .iter()
                .filter(|h| new_flags.contains(&h.flag))
                .map(|h| format!("{} “{}”", h.flag.as_str(), h.text))
                .collect();
            terms.dedup();
            fire(AlertKind::ThreatFlag, format!("threat: {}", terms.join(", ")), new_flags.into_iter().collect());
        }

        if !alerts.is_empty() {
            st.handoff_recommended = true;
            st.alerts.extend(alerts.iter().cloned());
            let excess = st.alerts.len().saturating_sub(self.max_alerts);
            st.alerts.drain(..excess);
        }
        alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kesu_core::flags::FlagHit;

    fn scored(level: u8, hits: Vec<(Flag, &str, bool)>) -> Scored {
        let mut probabilities = vec![0.0; 4];
        probabilities[level as usize] = 1.0;
        let hits: Vec<FlagHit> = hits
            .into_iter()
            .map(|(flag, t, negated)| FlagHit {
                term: t.into(),
                flag,
                severity: 2,
                text: t.into(),
                start: 0,
                end: t.chars().count(),
                negated,
            })
            .collect();
        let mut flags: Vec<Flag> = hits.iter().map(|h| h.flag).collect();
        flags.dedup();
        Scored {
            emotion: EmotionResult { level, tag: String::new(), probabilities, escalation_score: level as f32 / 3.0 },
            category: CategoryResult { label: "service".into(), scores: Default::default() },
            flags: FlagReport { hits, flags, max_severity: 2, needs_review: false },
        }
    }

    fn conv() -> Conversation {
        Conversation::new("c1", 4, 100, OffsetDateTime::UNIX_EPOCH)
    }

    fn say(c: &mut Conversation, level: u8, rules: &AlertRules) -> Vec<AlertKind> {
        c.record(Speaker::Customer, "x".into(), None, Some(scored(level, vec![])), rules, OffsetDateTime::UNIX_EPOCH)
            .message
            .alerts
            .iter()
            .map(|a| a.kind)
            .collect()
    }

    #[test]
    fn calm_conversation_raises_nothing() {
        let (mut c, r) = (conv(), AlertRules::default());
        for _ in 0..10 {
            assert!(say(&mut c, 0, &r).is_empty());
        }
        assert_eq!(c.state().status, Status::Calm);
        assert!(!c.state().handoff_recommended);
        assert_eq!(c.state().trend, 0.0);
    }

    #[test]
    fn trend_is_an_ewma_of_expected_level() {
        let (mut c, r) = (conv(), AlertRules::default());
        say(&mut c, 2, &r);
        assert!((c.state().trend - 1.0).abs() < 1e-6);
        say(&mut c, 2, &r);
        assert!((c.state().trend - 1.5).abs() < 1e-6);
        say(&mut c, 0, &r);
        assert!((c.state().trend - 0.75).abs() < 1e-6);
    }

    #[test]
    fn consecutive_negative_fires_at_n_and_rearms_after_a_calm_message() {
        let r = AlertRules { rise: 99.0, level: 9.0, ..AlertRules::default() };
        let mut c = conv();
        assert!(say(&mut c, 1, &r).is_empty());
        // agent messages neither count nor break the run
        c.record(Speaker::Agent, "抱歉".into(), None, None, &r, OffsetDateTime::UNIX_EPOCH);
        assert!(say(&mut c, 1, &r).is_empty());
        assert_eq!(say(&mut c, 1, &r), vec![AlertKind::ConsecutiveNegative]);
        assert!(say(&mut c, 2, &r).is_empty(), "fires once per run");
        assert_eq!(c.state().consecutive_negative, 4);
        say(&mut c, 0, &r);
        assert_eq!(c.state().consecutive_negative, 0);
        say(&mut c, 1, &r);
        say(&mut c, 1, &r);
        assert_eq!(say(&mut c, 1, &r), vec![AlertKind::ConsecutiveNegative]);
    }

    #[test]
    fn level_crossing_fires_on_the_way_up_only() {
        let r = AlertRules { rise: 99.0, consecutive: 0, ..AlertRules::default() };
        let mut c = conv();
        assert!(say(&mut c, 3, &r).is_empty()); // trend 1.5
        assert_eq!(say(&mut c, 3, &r), vec![AlertKind::LevelCrossed]); // 2.25
        assert!(say(&mut c, 3, &r).is_empty()); // 2.625: still above
        say(&mut c, 0, &r); // 1.31
        assert_eq!(say(&mut c, 3, &r), vec![AlertKind::LevelCrossed]); // 2.16
    }

    #[test]
    fn fast_rise_fires_once_per_window() {
        let r = AlertRules { level: 9.0, consecutive: 0, ..AlertRules::default() };
        let mut c = conv();
        say(&mut c, 0, &r);
        say(&mut c, 0, &r);
        assert!(say(&mut c, 1, &r).is_empty()); // 0.5
        assert_eq!(say(&mut c, 3, &r), vec![AlertKind::FastRise]); // 1.75, min 0
        assert!(say(&mut c, 3, &r).is_empty(), "suppressed within the window"); // 2.375
        assert!(say(&mut c, 3, &r).is_empty());
        assert!(say(&mut c, 3, &r).is_empty()); // window of flat high trend: no rise
    }

    #[test]
    fn threat_flags_fire_once_per_flag_and_ignore_negated_hits() {
        let r = AlertRules { level: 9.0, rise: 99.0, consecutive: 0, ..AlertRules::default() };
        let mut c = conv();
        let say_flags = |c: &mut Conversation, hits| {
            c.record(Speaker::Customer, "x".into(), None, Some(scored(1, hits)), &r, OffsetDateTime::UNIX_EPOCH)
                .message
                .alerts
        };
        assert!(say_flags(&mut c, vec![(Flag::Litigation, "起诉", true)]).is_empty(), "negated");
        assert!(say_flags(&mut c, vec![(Flag::PoliceCrime, "报警", false)]).is_empty(), "not a threat flag by default");
        let a = say_flags(&mut c, vec![(Flag::Regulator, "12315", false), (Flag::Litigation, "起诉", false)]);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].flags, vec![Flag::Litigation, Flag::Regulator]);
        assert!(a[0].reason.contains("12315") && a[0].reason.contains("起诉"), "{}", a[0].reason);
        assert!(say_flags(&mut c, vec![(Flag::Regulator, "12315", false)]).is_empty(), "once per flag");
        assert_eq!(say_flags(&mut c, vec![(Flag::Media, "曝光", false)])[0].flags, vec![Flag::Media]);
        assert!(c.state().handoff_recommended);
        assert_eq!(c.state().status, Status::Alert);
    }

    #[test]
    fn agent_messages_are_recorded_not_scored_and_history_is_bounded() {
        let (mut c, r) = (conv(), AlertRules::default());
        let rec = c.record(
            Speaker::Agent,
            "您好".into(),
            Some("2026-11-23T10:00:00+08:00".into()),
            Some(scored(3, vec![])),
            &r,
            OffsetDateTime::UNIX_EPOCH,
        );
        assert!(rec.message.emotion.is_none() && rec.message.trend.is_none());
        assert_eq!((rec.state.messages, rec.state.customer_messages), (1, 0));
        assert_eq!(rec.state.trend, 0.0);
        for _ in 0..6 {
            say(&mut c, 1, &r);
        }
        let v = c.view();
        assert_eq!(v.messages.len(), 4, "max_messages kept");
        assert_eq!(v.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5, 6, 7]);
        assert_eq!(v.state.messages, 7);
        assert_eq!(v.state.peak.unwrap().seq, 2);
    }

    #[test]
    fn kept_messages_are_bounded_in_bytes_and_the_newest_is_always_kept() {
        let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = AlertRules::default();
        let mut c =
            Conversation::new("b", 100, 10, OffsetDateTime::UNIX_EPOCH).with_byte_limit(3 * 1024 + 300, total.clone());
        let text = "长".repeat(100); // 300 bytes + 1 KiB each
        for _ in 0..5 {
            c.record(Speaker::Agent, text.clone(), None, None, &r, OffsetDateTime::UNIX_EPOCH);
        }
        let v = c.view();
        assert_eq!(v.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5], "two fit in 3 KiB + 300");
        assert_eq!(c.kept_bytes(), 2 * (300 + 1024));
        assert_eq!(total.load(std::sync::atomic::Ordering::SeqCst), c.kept_bytes());
        let huge = "x".repeat(10_000);
        c.record(Speaker::Agent, huge, None, None, &r, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(c.view().messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![6], "the newest stays");
        drop(c);
        assert_eq!(total.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
