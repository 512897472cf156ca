//! Rule evaluation and parsing edge cases.
use super::*;
use crate::flags::FlagHit;

const DAY: Duration = Duration::from_secs(86_400);

fn hit(flag: Flag, severity: u8, negated: bool) -> FlagHit {
    FlagHit { term: "t".into(), flag, severity, text: "t".into(), start: 0, end: 1, negated }
}

fn report(hits: Vec<FlagHit>) -> FlagReport {
    let mut flags: Vec<Flag> = hits.iter().map(|h| h.flag).collect();
    flags.sort();
    flags.dedup();
    let max_severity = hits.iter().map(|h| h.severity).max().unwrap_or(0);
    FlagReport { hits, flags, max_severity, needs_review: false }
}

fn facts<'a>(flags: &'a FlagReport, category: &'a str, escalation: u8, prior: Option<u32>) -> Facts<'a> {
    Facts { flags, category, escalation, prior_contacts: prior, repeat_window: DAY }
}

fn shipped() -> TriageRules {
    TriageRules::parse(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../lexicons/triage.toml")))
        .expect("shipped rules parse")
}

const HEAD: &str = "version = \"t-1\"\n[default]\npriority = \"P4\"\nroute = \"standard\"\n";

fn rules(body: &str) -> TriageRules {
    TriageRules::parse(&format!("{HEAD}{body}")).unwrap()
}

fn parse_err(body: &str) -> RulesError {
    TriageRules::parse(&format!("{HEAD}{body}")).unwrap_err()
}

#[test]
fn no_match_gives_the_default_and_no_reasons() {
    let r = shipped();
    let none = report(vec![]);
    let t = r.evaluate(&facts(&none, "product", 0, None));
    assert_eq!((t.priority, t.route.as_str()), (Priority::P4, "standard"));
    assert!(t.reasons.is_empty());
    assert_eq!(t.rules_version, r.version);
    assert_eq!(t.prior_contacts, None);
}

#[test]
fn shipped_defaults() {
    let r = shipped();
    let eval = |hits: Vec<FlagHit>, cat: &str, level: u8, prior: Option<u32>| {
        let rep = report(hits);
        let t = r.evaluate(&facts(&rep, cat, level, prior));
        (t.priority, t.route)
    };
    use Flag::*;
    use Priority::*;
    assert_eq!(eval(vec![hit(CollectiveAction, 2, false)], "service", 3, None), (P1, "compliance".into()));
    assert_eq!(
        eval(vec![hit(SelfHarmViolence, 3, true)], "service", 0, None),
        (P1, "compliance".into()),
        "negated self-harm still P1"
    );
    assert_eq!(eval(vec![hit(Litigation, 2, false)], "product", 0, None), (P2, "compliance".into()));
    assert_eq!(eval(vec![hit(Litigation, 2, true)], "product", 0, None), (P4, "standard".into()), "我不想起诉");
    assert_eq!(
        eval(vec![hit(Media, 1, false)], "product", 0, None),
        (P4, "standard".into()),
        "a weak mention is no threat"
    );
    assert_eq!(
        eval(vec![hit(Regulator, 2, false)], "information_security", 0, None),
        (P2, "compliance".into()),
        "tie: the earlier rule's route"
    );
    assert_eq!(eval(vec![], "information_security", 0, None), (P2, "security".into()));
    assert_eq!(eval(vec![hit(PrivacyBreach, 2, false)], "product", 0, None), (P2, "security".into()));
    assert_eq!(eval(vec![hit(PrivacyBreach, 2, true)], "product", 0, None), (P4, "standard".into()));
    assert_eq!(eval(vec![], "service", 2, None), (P3, "senior_agent".into()));
    assert_eq!(eval(vec![], "service", 1, None), (P4, "standard".into()));
    assert_eq!(eval(vec![], "service", 0, Some(1)), (P3, "senior_agent".into()));
    assert_eq!(eval(vec![], "service", 0, Some(0)), (P4, "standard".into()));
    assert_eq!(eval(vec![hit(PoliceCrime, 2, false)], "service", 0, None), (P2, "compliance".into()), "a crime report");
    assert_eq!(
        eval(vec![hit(CollectionAbuse, 3, false)], "service", 0, None),
        (P2, "compliance".into()),
        "violent collection"
    );
    assert_eq!(
        eval(vec![hit(CollectionAbuse, 1, false)], "service", 0, None),
        (P4, "standard".into()),
        "a weak mention"
    );
    // repeat contact never lowers a higher priority
    assert_eq!(eval(vec![hit(CollectiveAction, 2, false)], "service", 0, Some(3)), (P1, "compliance".into()));
}

#[test]
fn highest_priority_wins_and_every_match_is_a_reason_in_file_order() {
    let r = rules(
        r#"
[[rules]]
name = "angry"
min_escalation = 2
priority = "P3"
route = "senior_agent"

[[rules]]
name = "crisis"
flags_any = ["collective_action"]
priority = "P1"
route = "compliance"

[[rules]]
name = "loud"
min_escalation = 3
priority = "P1"
route = "crisis_team"
"#,
    );
    let rep = report(vec![hit(Flag::CollectiveAction, 2, false)]);
    let t = r.evaluate(&facts(&rep, "service", 3, None));
    assert_eq!(t.priority, Priority::P1);
    assert_eq!(t.route, "compliance", "tie at P1: the first P1 rule in file order decides");
    assert_eq!(
        t.reasons,
        vec![
            "P3: escalation 3 (rule angry)".to_string(),
            "P1: collective_action flag (rule crisis)".to_string(),
            "P1: escalation 3 (rule loud)".to_string(),
        ]
    );
}

#[test]
fn a_lower_priority_rule_first_in_file_does_not_decide_the_route() {
    let r = rules(
        "[[rules]]\nname = \"a\"\nmin_escalation = 0\npriority = \"P3\"\nroute = \"x\"\n\n[[rules]]\nname = \"b\"\nmin_escalation = 0\npriority = \"P2\"\nroute = \"y\"\n",
    );
    let rep = report(vec![]);
    let t = r.evaluate(&facts(&rep, "product", 0, None));
    assert_eq!((t.priority, t.route.as_str()), (Priority::P2, "y"));
    assert_eq!(t.reasons.len(), 2);
}

#[test]
fn negated_hits_count_only_when_asked() {
    let base = "name = \"r\"\nflags_any = [\"litigation\"]\npriority = \"P2\"\nroute = \"compliance\"\n";
    let strict = rules(&format!("[[rules]]\n{base}"));
    let lenient = rules(&format!("[[rules]]\n{base}count_negated = true\n"));
    let negated = report(vec![hit(Flag::Litigation, 2, true)]);
    assert_eq!(strict.evaluate(&facts(&negated, "product", 0, None)).priority, Priority::P4);
    let t = lenient.evaluate(&facts(&negated, "product", 0, None));
    assert_eq!(t.priority, Priority::P2);
    assert_eq!(t.reasons, vec!["P2: litigation (negated) flag (rule r)".to_string()]);
    // one negated and one plain hit of the same flag: the plain one qualifies, not shown as negated
    let both = report(vec![hit(Flag::Litigation, 2, true), hit(Flag::Litigation, 2, false)]);
    assert_eq!(
        strict.evaluate(&facts(&both, "product", 0, None)).reasons,
        vec!["P2: litigation flag (rule r)".to_string()]
    );
    assert_eq!(
        lenient.evaluate(&facts(&both, "product", 0, None)).reasons,
        vec!["P2: litigation flag (rule r)".to_string()]
    );
}

#[test]
fn severity_threshold_is_inclusive_and_applies_per_hit() {
    let r = rules("[[rules]]\nname = \"r\"\nflags_any = [\"media\", \"regulator\"]\nmin_severity = 2\npriority = \"P2\"\nroute = \"compliance\"\n");
    let eval = |hits| {
        let rep = report(hits);
        r.evaluate(&facts(&rep, "product", 0, None))
    };
    assert_eq!(eval(vec![hit(Flag::Media, 1, false)]).priority, Priority::P4);
    assert_eq!(eval(vec![hit(Flag::Media, 2, false)]).priority, Priority::P2);
    assert_eq!(eval(vec![hit(Flag::Media, 3, false)]).priority, Priority::P2);
    // a severe hit of an unlisted flag does not lift a weak listed one
    assert_eq!(eval(vec![hit(Flag::Media, 1, false), hit(Flag::Litigation, 3, false)]).priority, Priority::P4);
    // a severe but negated hit does not qualify
    assert_eq!(eval(vec![hit(Flag::Media, 3, true), hit(Flag::Media, 1, false)]).priority, Priority::P4);
    let t = eval(vec![hit(Flag::Regulator, 2, false), hit(Flag::Media, 3, false), hit(Flag::Litigation, 3, false)]);
    assert_eq!(t.reasons, vec!["P2: regulator + media flags at severity >= 2 (rule r)".to_string()]);
}

#[test]
fn min_severity_alone_means_any_flag() {
    let r = rules("[[rules]]\nname = \"severe\"\nmin_severity = 3\npriority = \"P2\"\nroute = \"compliance\"\n");
    let rep = report(vec![hit(Flag::PoliceCrime, 3, false)]);
    let t = r.evaluate(&facts(&rep, "product", 0, None));
    assert_eq!(t.reasons, vec!["P2: police_crime flag at severity >= 3 (rule severe)".to_string()]);
    let rep = report(vec![hit(Flag::PoliceCrime, 2, false)]);
    assert_eq!(r.evaluate(&facts(&rep, "product", 0, None)).priority, Priority::P4);
}

#[test]
fn flags_all_needs_every_flag_and_conditions_combine_with_and() {
    let r = rules(
        "[[rules]]\nname = \"r\"\nflags_all = [\"litigation\", \"media\"]\nmin_escalation = 2\ncategory_any = [\"service\"]\npriority = \"P1\"\nroute = \"legal\"\n",
    );
    let both = report(vec![hit(Flag::Litigation, 2, false), hit(Flag::Media, 2, false)]);
    let one = report(vec![hit(Flag::Litigation, 2, false)]);
    assert_eq!(
        r.evaluate(&facts(&both, "service", 2, None)).reasons,
        vec!["P1: litigation + media flags, category service, escalation 2 (rule r)".to_string()]
    );
    assert_eq!(r.evaluate(&facts(&one, "service", 3, None)).priority, Priority::P4);
    assert_eq!(r.evaluate(&facts(&both, "product", 3, None)).priority, Priority::P4, "category");
    assert_eq!(r.evaluate(&facts(&both, "service", 1, None)).priority, Priority::P4, "escalation");
}

#[test]
fn repeat_contact_conditions() {
    let r = rules(
        "[[rules]]\nname = \"again\"\nrepeat_contact = true\npriority = \"P3\"\nroute = \"senior_agent\"\n\n[[rules]]\nname = \"often\"\nmin_prior_contacts = 3\npriority = \"P2\"\nroute = \"retention\"\n",
    );
    let rep = report(vec![]);
    let eval = |prior| r.evaluate(&facts(&rep, "product", 0, prior));
    assert_eq!(eval(None).priority, Priority::P4, "no customer_ref: unknown, not a repeat");
    assert_eq!(eval(Some(0)).priority, Priority::P4);
    let t = eval(Some(1));
    assert_eq!((t.priority, t.prior_contacts), (Priority::P3, Some(1)));
    assert_eq!(t.reasons, vec!["P3: repeat contact (1 earlier within 24 h) (rule again)".to_string()]);
    assert_eq!(eval(Some(2)).priority, Priority::P3);
    let t = eval(Some(3));
    assert_eq!((t.priority, t.route.as_str(), t.reasons.len()), (Priority::P2, "retention", 2));
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("[[rules]]\nname = \"r\"\nflags_any = [\"lawsuit\"]\npriority = \"P2\"\nroute = \"x\"\n", 7, "lawsuit"),
        ("[[rules]]\nname = \"r\"\nmin_severity = 4\npriority = \"P2\"\nroute = \"x\"\n", 7, "min_severity must be 1, 2 or 3"),
        ("[[rules]]\nname = \"r\"\nmin_escalation = 5\npriority = \"P2\"\nroute = \"x\"\n", 7, "min_escalation"),
        ("[[rules]]\nname = \"r\"\nmin_escalation = 2\npriority = \"P5\"\nroute = \"x\"\n", 8, "P5"),
        ("[[rules]]\nname = \"r\"\nmin_escalation = 2\npriority = \"P2\"\nroute = \"Senior Agent\"\n", 9, "route"),
        ("[[rules]]\nname = \"r\"\ncategory_any = [\"billing\"]\npriority = \"P2\"\nroute = \"x\"\n", 7, "unknown category"),
        ("[[rules]]\nname = \"r\"\nmin_escalaton = 2\npriority = \"P2\"\nroute = \"x\"\n", 7, "min_escalaton"),
        ("[[rules]]\nname = \"r\"\npriority = \"P2\"\nroute = \"x\"\n", 5, "no condition"),
        ("[[rules]]\nname = \"r\"\ncount_negated = true\npriority = \"P2\"\nroute = \"x\"\n", 5, "count_negated needs"),
        ("[[rules]]\nname = \"r\"\nflags_any = []\npriority = \"P2\"\nroute = \"x\"\n", 5, "flags_any is empty"),
        ("[[rules]]\nname = \"r\"\nrepeat_contact = false\npriority = \"P2\"\nroute = \"x\"\n", 5, "repeat_contact = false"),
        ("[[rules]]\nname = \"r\"\nmin_prior_contacts = 0\npriority = \"P2\"\nroute = \"x\"\n", 7, "min_prior_contacts"),
        ("[[rules]]\nname = \"r\"\nmin_escalation = 1\npriority = \"P2\"\nroute = \"x\"\n\n[[rules]]\nname = \"r\"\nmin_escalation = 2\npriority = \"P3\"\nroute = \"x\"\n", 11, "duplicate rule name"),
        ("[[rules]]\nname = \"r\"\nmin_escalation = 2\npriority = \"P2\"\n", 5, "route"),
        ("[[rules]]\nname = \"r\"\nmin_escalation = = 2\n", 7, ""),
    ];
    for (body, line, want) in cases {
        let e = parse_err(body);
        assert_eq!(e.line, Some(*line), "{body}\n→ {e}");
        assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        assert!(e.message.contains(want), "{e} should mention {want:?}");
    }
    let e = TriageRules::parse("[default]\npriority = \"P4\"\nroute = \"standard\"\n").unwrap_err();
    assert!(e.message.contains("version"), "{e}");
    let e = TriageRules::parse("version = \"  \"\n[default]\npriority = \"P4\"\nroute = \"standard\"\n").unwrap_err();
    assert_eq!(e.line, Some(1));
}

#[test]
fn rules_record_their_line() {
    let r = shipped();
    assert!(r.rules.len() >= 6);
    let raw = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../lexicons/triage.toml"));
    for rule in &r.rules {
        let at = raw.lines().nth(rule.line - 1).unwrap();
        assert_eq!(at.trim(), "[[rules]]", "rule {} at line {}", rule.name, rule.line);
    }
}

#[test]
fn human_windows() {
    assert_eq!(human(DAY), "24 h");
    assert_eq!(human(Duration::from_secs(600)), "10 min");
    assert_eq!(human(Duration::from_secs(90)), "90 s");
}

#[test]
fn store_policy_from_the_store_section_and_store_rules() {
    let review = FlagReport { needs_review: true, ..report(vec![hit(Flag::Litigation, 2, false)]) };
    let none = report(vec![]);
    let stored =
        |r: &TriageRules, rep: &FlagReport, cat: &str, level: u8| r.evaluate(&facts(rep, cat, level, None)).store;

    // No [store] section: the defaults (needs review, or level 2 and above).
    let d = rules("");
    assert_eq!(d.store, StorePolicy::default());
    assert!(stored(&d, &review, "service", 0));
    assert!(!stored(&d, &none, "service", 1));
    assert!(stored(&d, &none, "service", 2));

    // The shipped file states the defaults explicitly.
    assert_eq!(shipped().store, StorePolicy::default());

    // [store] replaces them; 4 means never by level.
    let r = rules("[store]\nneeds_review = false\nmin_escalation = 4\n");
    assert_eq!(r.store, StorePolicy { needs_review: false, min_escalation: 4 });
    assert!(!stored(&r, &review, "service", 3));

    // A rule with store = true keeps what it matches, whatever [store] says.
    let r = rules(
        "[store]\nneeds_review = false\nmin_escalation = 4\n\n[[rules]]\nname = \"infosec\"\ncategory_any = [\"information_security\"]\npriority = \"P2\"\nroute = \"security\"\nstore = true\n",
    );
    assert!(stored(&r, &none, "information_security", 0));
    assert!(!stored(&r, &none, "service", 3));

    // The deprecated settings replace the file's values.
    let o = StoreOverride { needs_review: None, min_escalation: Some(0) };
    assert_eq!(o.apply(r.store), StorePolicy { needs_review: false, min_escalation: 0 });
    assert!(StoreOverride::default().is_empty());
    assert_eq!(StoreOverride::default().apply(r.store), r.store);

    // Errors name their line.
    for (body, line, want) in [
        ("[store]\nmin_escalation = 5\n", 6, "[store] min_escalation"),
        ("[store]\nneeds_reveiw = true\n", 6, "needs_reveiw"),
        ("[store]\nneeds_review = \"yes\"\n", 6, ""),
    ] {
        let e = parse_err(body);
        assert_eq!(e.line, Some(line), "{body}\n→ {e}");
        assert!(e.message.contains(want), "{e} should mention {want:?}");
    }
}

#[test]
fn always_review_stands_for_the_always_reviewed_flags_negated_or_not() {
    let r = rules("[[rules]]\nname = \"crisis\"\nalways_review = true\npriority = \"P1\"\nroute = \"compliance\"\n");
    let always: Vec<Flag> = Flag::ALL.into_iter().filter(|f| f.always_review()).collect();
    assert_eq!(always, vec![Flag::CollectiveAction, Flag::SelfHarmViolence]);
    assert_eq!(r.rules[0].flags_any.as_deref(), Some(&always[..]));
    assert!(r.rules[0].count_negated);
    for flag in Flag::ALL {
        for negated in [false, true] {
            let rep = report(vec![hit(flag, 1, negated)]);
            let t = r.evaluate(&facts(&rep, "service", 0, None));
            assert_eq!(t.priority == Priority::P1, flag.always_review(), "{flag} negated={negated}");
        }
    }
    let rep = report(vec![hit(Flag::SelfHarmViolence, 3, true)]);
    assert_eq!(
        r.evaluate(&facts(&rep, "service", 0, None)).reasons,
        vec!["P1: self_harm_violence (negated) flag (rule crisis)".to_string()]
    );
    // the shipped crisis rule is this condition
    let shipped = shipped();
    let crisis = shipped.rules.iter().find(|r| r.name == "crisis").unwrap();
    assert_eq!((crisis.flags_any.as_deref(), crisis.count_negated), (Some(&always[..]), true));

    for (body, want) in [
        ("always_review = false\n", "always_review = false"),
        ("always_review = true\nflags_any = [\"media\"]\n", "one or the other"),
        ("always_review = true\ncount_negated = false\n", "one or the other"),
    ] {
        let e = parse_err(&format!("[[rules]]\nname = \"r\"\n{body}priority = \"P1\"\nroute = \"x\"\n"));
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains(want), "{e} should mention {want:?}");
    }
}

// ---- Property tests (issue 14): the parser never panics, errors carry their line ----

mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// An error's line, when it has one, is a line of the file (or the one after its end).
    fn check_line(raw: &str, e: &RulesError) -> Result<(), TestCaseError> {
        let lines = raw.split('\n').count();
        if let Some(l) = e.line {
            prop_assert!(l >= 1 && l <= lines, "line {} of a {}-line file: {}", l, lines, e);
            prop_assert!(e.to_string().starts_with(&format!("line {l}: ")), "{}", e);
        }
        prop_assert!(!e.message.trim().is_empty(), "empty message");
        Ok(())
    }

    /// Lines of plausible TOML: the rules file's own keys, values of the right and
    /// the wrong type, tables, broken syntax.
    fn toml_line() -> impl Strategy<Value = String> {
        let key = select(
            &[
                "version",
                "name",
                "priority",
                "route",
                "flags_any",
                "flags_all",
                "min_severity",
                "count_negated",
                "min_escalation",
                "category_any",
                "repeat_contact",
                "min_prior_contacts",
                "always_review",
                "store",
                "needs_review",
                "bogus",
            ][..],
        );
        let value = select(
            &[
                "\"t-1\"",
                "\"\"",
                "\"  \"",
                "\"P1\"",
                "\"P4\"",
                "\"P9\"",
                "\"standard\"",
                "\"Senior Agent\"",
                "[\"litigation\"]",
                "[\"media\", \"regulator\"]",
                "[]",
                "[\"lawsuit\"]",
                "[\"service\"]",
                "0",
                "1",
                "3",
                "4",
                "-1",
                "9999999999999",
                "true",
                "false",
                "1.5",
                "\"起诉\"",
                "{ a = 1 }",
                "[1, \"x\"]",
                "",
            ][..],
        );
        prop_oneof![
            3 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
            1 => select(&["[default]", "[store]", "[[rules]]", "[rules]", "[[default]]", "[store", "# c", ""][..])
                .prop_map(String::from),
            1 => "\\PC{0,12}",
        ]
    }

    proptest! {
        /// Any string: Ok, or an error with a message and (when it has one) a real line.
        #[test]
        fn any_text_parses_or_names_a_line(raw in any::<String>()) {
            if let Err(e) = TriageRules::parse(&raw) {
                check_line(&raw, &e)?;
            }
        }

        /// Plausible rules files (the shipped head, then lines of the format's keys and
        /// values): the same, and every accepted file evaluates without panicking.
        #[test]
        fn rules_like_text_parses_or_names_a_line(
            head in any::<bool>(),
            lines in prop::collection::vec(toml_line(), 0..30),
        ) {
            let raw = format!("{}{}\n", if head { HEAD } else { "" }, lines.join("\n"));
            match TriageRules::parse(&raw) {
                Err(e) => check_line(&raw, &e)?,
                Ok(r) => {
                    let flags = report(vec![hit(Flag::Media, 2, false), hit(Flag::SelfHarmViolence, 3, true)]);
                    for esc in 0..=3 {
                        let t = r.evaluate(&facts(&flags, "service", esc, Some(2)));
                        if t.reasons.is_empty() {
                            prop_assert_eq!((t.priority, &t.route), (r.default_priority, &r.default_route));
                        }
                    }
                }
            }
        }
    }
}
