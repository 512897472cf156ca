use super::*;

const LEX: &str = "# version: test-1
term\tflag\tseverity\tnote
起诉\tlitigation\t2\tsue
律师\tlitigation\t1\tlawyer
律师函\tlitigation\t2\tlawyer's letter
诉讼\tlitigation\t2\tlawsuit
集体诉讼\tcollective_action\t3\tclass action
12315\tregulator\t2\thotline
110\tpolice_crime\t2\tpolice number
报警\tpolice_crime\t2\tcall police
公安\tpolice_crime\t1\tpolice
公安局旁边\texclude\t0\ta place
曝光\tmedia\t2\texpose
cctv\tmedia\t2\tTV
跳楼\tself_harm_violence\t3\tjump
泄露\tprivacy_breach\t2\tleak
";

fn flagger() -> Flagger {
    Flagger::new(&Lexicon::parse(LEX).unwrap(), 2).unwrap()
}

fn terms(r: &FlagReport) -> Vec<(&str, Flag, &str, usize, usize, bool)> {
    r.hits.iter().map(|h| (h.term.as_str(), h.flag, h.text.as_str(), h.start, h.end, h.negated)).collect()
}

fn check_offsets(original: &str, r: &FlagReport) {
    for h in &r.hits {
        let s: String = original.chars().skip(h.start).take(h.end - h.start).collect();
        assert_eq!(s, h.text, "offsets of {h:?}");
    }
}

#[test]
fn plain_hit_with_offsets() {
    let t = "客服不理人，我要起诉你们";
    let r = flagger().scan(t);
    assert_eq!(terms(&r), vec![("起诉", Flag::Litigation, "起诉", 8, 10, false)]);
    assert_eq!(r.flags, vec![Flag::Litigation]);
    assert_eq!(r.max_severity, 2);
    assert!(r.needs_review);
}

#[test]
fn full_width_and_traditional_and_case() {
    let f = flagger();
    for (t, want) in
        [("打１２３１５投诉", "１２３１５"), ("我要起訴", "起訴"), ("上CCTV", "CCTV"), ("上ｃｃｔｖ", "ｃｃｔｖ")]
    {
        let r = f.scan(t);
        assert_eq!(r.hits.len(), 1, "{t}: {r:?}");
        assert_eq!(r.hits[0].text, want);
        check_offsets(t, &r);
    }
}

#[test]
fn obfuscated_terms_report_the_whole_original_span() {
    let f = flagger();
    for (t, want) in [
        ("我要起*诉", "起*诉"),
        ("我要起 诉", "起 诉"),
        ("发律-师-函", "律-师-函"),
        ("去报😡警", "报😡警"),
        ("去報_警", "報_警"),
    ] {
        let r = f.scan(t);
        assert_eq!(r.hits.len(), 1, "{t}: {r:?}");
        assert_eq!(r.hits[0].text, want, "{t}");
        check_offsets(t, &r);
    }
}

#[test]
fn sentence_punctuation_breaks_a_term() {
    assert!(flagger().scan("起，诉").hits.is_empty());
}

#[test]
fn negation_is_reported_and_flag_still_raised() {
    let f = flagger();
    for t in ["我不想起诉", "我们没有报警", "不会去曝光"] {
        let r = f.scan(t);
        assert_eq!(r.hits.len(), 1, "{t}");
        assert!(r.hits[0].negated, "{t}");
        assert!(!r.flags.is_empty());
        assert!(!r.needs_review, "a negated severity-2 hit alone does not need review: {t}");
    }
    let r = f.scan("再不处理就去报警");
    assert!(!r.hits[0].negated);
    assert!(r.needs_review);
}

#[test]
fn self_harm_needs_review_even_when_negated() {
    let r = flagger().scan("我不会跳楼的");
    assert!(r.hits[0].negated);
    assert!(r.needs_review);
}

#[test]
fn ascii_terms_need_boundaries() {
    let f = flagger();
    assert!(f.scan("电话13811012345").hits.is_empty());
    assert!(f.scan("打123156").hits.is_empty());
    assert_eq!(f.scan("我打110了").hits.len(), 1);
    assert_eq!(f.scan("打110!").hits.len(), 1);
    assert!(f.scan("cctvx").hits.is_empty());
    // obfuscated digits still match: separators are not letters or digits
    assert_eq!(f.scan("打1 2 3 1 5").hits.len(), 1);
}

#[test]
fn longest_term_of_a_flag_wins_but_other_flags_nest() {
    let r = flagger().scan("收到律师函，我们要集体诉讼");
    let got: Vec<(&str, Flag)> = r.hits.iter().map(|h| (h.term.as_str(), h.flag)).collect();
    assert_eq!(
        got,
        vec![("律师函", Flag::Litigation), ("集体诉讼", Flag::CollectiveAction), ("诉讼", Flag::Litigation)]
    );
    assert_eq!(r.flags, vec![Flag::Litigation, Flag::CollectiveAction]);
    assert_eq!(r.max_severity, 3);
}

#[test]
fn excluded_phrases_drop_their_hits() {
    let f = flagger();
    assert!(f.scan("就在公安局旁边的营业厅").hits.is_empty());
    assert_eq!(f.scan("我去了公安局报案").hits.len(), 1);
}

#[test]
fn mixed_scripts_and_emoji_offsets() {
    let t = "😀😀Hello 客服!! 你们泄露了我的信息，我要去１２３１５和起訴🙏";
    let r = flagger().scan(t);
    check_offsets(t, &r);
    let got: Vec<&str> = r.hits.iter().map(|h| h.text.as_str()).collect();
    assert_eq!(got, vec!["泄露", "１２３１５", "起訴"]);
}

#[test]
fn very_long_text_is_scanned_to_the_end() {
    let mut t = "服务太差了。".repeat(20_000);
    t.push_str("我要报警");
    let r = flagger().scan(&t);
    assert_eq!(r.hits.len(), 1);
    assert_eq!(r.hits[0].start, 6 * 20_000 + 2);
    check_offsets(&t, &r);
}

#[test]
fn empty_and_clean_texts() {
    let f = flagger();
    assert_eq!(f.scan(""), FlagReport::default());
    let r = f.scan("东西很好，谢谢");
    assert!(r.hits.is_empty() && r.flags.is_empty() && !r.needs_review && r.max_severity == 0);
}

#[test]
fn version_and_term_count() {
    let f = flagger();
    assert_eq!(f.version(), "test-1");
    assert_eq!(f.term_count(), 13);
}
