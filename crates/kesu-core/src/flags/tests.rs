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

// ---- Issue 14: invisible and combining characters inside a term ----

/// One char inserted in the middle of 起诉 (`我要起?诉你们`): the term is still
/// found, and its span runs from 起 to 诉 with the inserted char inside.
#[test]
fn invisible_and_combining_chars_inside_a_term_are_ignored() {
    let f = flagger();
    let mut missed = Vec::new();
    for (c, what) in [
        ('\u{00ad}', "soft hyphen"),
        ('\u{200e}', "left-to-right mark"),
        ('\u{200f}', "right-to-left mark"),
        ('\u{202e}', "right-to-left override"),
        ('\u{2062}', "invisible times"),
        ('\u{034f}', "combining grapheme joiner"),
        ('\u{0301}', "combining acute accent (Mn)"),
        ('\u{20dd}', "combining enclosing circle (Me)"),
        ('\u{fe00}', "variation selector 1"),
        ('\u{e0100}', "variation selector 17"),
        ('\u{e0020}', "tag space"),
        ('\u{e007f}', "cancel tag"),
        ('\u{0000}', "NUL"),
        ('\u{0007}', "BEL"),
        ('\u{007f}', "DEL"),
        ('\u{009f}', "C1 control"),
        ('\u{061c}', "Arabic letter mark"),
        ('\u{3164}', "Hangul filler"),
        ('\u{200b}', "zero-width space (already handled)"),
        ('\u{200c}', "zero-width non-joiner (already handled)"),
        ('\u{200d}', "zero-width joiner (already handled)"),
        ('\u{2060}', "word joiner (already handled)"),
        ('\u{feff}', "BOM (already handled)"),
        ('\u{fe0f}', "variation selector 16 (already handled)"),
    ] {
        let t = format!("我要起{c}诉你们");
        let r = f.scan(&t);
        let want = format!("起{c}诉");
        if terms(&r) != vec![("起诉", Flag::Litigation, want.as_str(), 2, 5, false)] {
            missed.push(format!("U+{:04X} {what}: {:?}", c as u32, terms(&r)));
        }
        check_offsets(&t, &r);
    }
    assert!(missed.is_empty(), "{} chars hide 起诉:\n{}", missed.len(), missed.join("\n"));
}

/// Ignorable chars at the edges of the text, repeated, mixed together and
/// mixed with separators: spans start at the term's first visible char and
/// end after its last (ignorables inside the span are part of it).
#[test]
fn ignorables_at_edges_repeated_and_combined() {
    let f = flagger();
    // (text, [(term, flag, original text, start, end)])
    type Hit = (&'static str, Flag, &'static str, usize, usize);
    let cases: &[(&str, &[Hit])] = &[
        ("\u{00ad}起诉", &[("起诉", Flag::Litigation, "起诉", 1, 3)]),
        ("\u{0000}\u{200e}起诉", &[("起诉", Flag::Litigation, "起诉", 2, 4)]),
        ("起诉\u{00ad}", &[("起诉", Flag::Litigation, "起诉", 0, 2)]),
        // a trailing combining mark is not part of the span: it ends after the last visible char
        ("起诉\u{0301}", &[("起诉", Flag::Litigation, "起诉", 0, 2)]),
        ("起诉\u{e0100}\u{0000}", &[("起诉", Flag::Litigation, "起诉", 0, 2)]),
        ("起\u{00ad}\u{00ad}\u{00ad}诉", &[("起诉", Flag::Litigation, "起\u{00ad}\u{00ad}\u{00ad}诉", 0, 5)]),
        ("起\u{0301}\u{0301}诉", &[("起诉", Flag::Litigation, "起\u{0301}\u{0301}诉", 0, 4)]),
        (
            "我要起\u{200e}\u{0301}\u{e0100}\u{0000}\u{e0020}诉",
            &[("起诉", Flag::Litigation, "起\u{200e}\u{0301}\u{e0100}\u{0000}\u{e0020}诉", 2, 9)],
        ),
        ("起 \u{00ad}*\u{202e} 诉", &[("起诉", Flag::Litigation, "起 \u{00ad}*\u{202e} 诉", 0, 7)]),
        ("发律\u{00ad}师\u{200f}函", &[("律师函", Flag::Litigation, "律\u{00ad}师\u{200f}函", 1, 6)]),
        ("我要起\u{00ad}訴", &[("起诉", Flag::Litigation, "起\u{00ad}訴", 2, 5)]),
        (
            "打1\u{00ad}2\u{200e}3\u{0301}1\u{0000}5投诉",
            &[("12315", Flag::Regulator, "1\u{00ad}2\u{200e}3\u{0301}1\u{0000}5", 1, 10)],
        ),
        ("上c\u{0301}ctv\u{e0020}了", &[("cctv", Flag::Media, "c\u{0301}ctv", 1, 6)]),
        ("打1\u{0000}10", &[("110", Flag::PoliceCrime, "1\u{0000}10", 1, 5)]),
        // an invisible char does not make a boundary: the 110 inside a phone number stays glued
        ("电话138\u{00ad}110\u{200e}12345", &[]),
        ("\u{00ad}\u{200e}\u{0000}\u{0301}", &[]),
    ];
    let mut wrong = Vec::new();
    for &(t, want) in cases {
        let r = f.scan(t);
        let got: Vec<_> = terms(&r).into_iter().map(|(a, b, c, d, e, _)| (a, b, c, d, e)).collect();
        if got != want {
            wrong.push(format!("{t:?}: got {got:?}, want {want:?}"));
        }
        check_offsets(t, &r);
    }
    assert!(wrong.is_empty(), "{} cases wrong:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn negation_sees_through_ignorables() {
    let f = flagger();
    let r = f.scan("我不\u{00ad}想起\u{200e}诉");
    assert_eq!(r.hits.len(), 1);
    assert!(r.hits[0].negated);
    let r = f.scan("就在公安\u{0301}局\u{00ad}旁边的营业厅");
    assert!(r.hits.is_empty(), "{r:?}");
}

// ---- Property tests (proptest) over the shipped lexicon ----

mod properties {
    use super::super::*;
    use crate::text::char_slice;
    use crate::text::normalize::tests::ignorable;
    use proptest::prelude::*;
    use proptest::sample::select;
    use std::sync::OnceLock;

    const SHIPPED: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../lexicons/legal_risk.tsv"));

    fn shipped() -> &'static Flagger {
        static F: OnceLock<Flagger> = OnceLock::new();
        F.get_or_init(|| Flagger::new(&Lexicon::parse(SHIPPED).unwrap(), 2).unwrap())
    }

    /// The shipped lexicon's flag terms, in matching form (what `FlagHit::term` reports).
    fn flag_terms() -> Vec<String> {
        let lx = Lexicon::parse(SHIPPED).unwrap();
        let mut t: Vec<String> = lx
            .rows
            .iter()
            .filter(|r| matches!(r.entry, Entry::Flag { .. }))
            .map(|r| Normalized::new(&r.term).text)
            .collect();
        t.sort();
        t.dedup();
        t
    }

    /// Every char of the shipped terms: context built from them forms real
    /// (and excluded, and longer) terms next to the one under test.
    fn lexicon_chars() -> Vec<char> {
        let mut c: Vec<char> = SHIPPED.lines().filter_map(|l| l.split('\t').next()).flat_map(|t| t.chars()).collect();
        c.sort();
        c.dedup();
        c
    }

    /// Separators the flagger allows inside a term: ASCII ones, and full-width,
    /// typographic and pictographic ones (folded by NFKC or separators themselves).
    const SEPARATORS: &[char] = &[
        ' ', '\t', '\n', '*', '-', '_', '.', '/', '\\', '|', '~', '^', '#', '+', '=', '\'', '`', '"', '\u{3000}',
        '\u{00a0}', '＊', '－', '＿', '／', '—', '–', '…', '·', '•', '★', '○', '×', '😡', '🙏', '\u{2028}',
    ];

    fn insertion() -> impl Strategy<Value = char> {
        prop_oneof![3 => ignorable(), 1 => select(SEPARATORS)]
    }

    /// Surrounding text: arbitrary chars, CJK, ASCII, ignorables and the
    /// lexicon's own chars.
    fn context() -> impl Strategy<Value = Vec<char>> {
        let lex = lexicon_chars();
        prop::collection::vec(
            prop_oneof![
                any::<char>(),
                (0x4e00u32..=0x9fff).prop_map(|u| char::from_u32(u).unwrap()),
                (0x20u32..0x7f).prop_map(|u| char::from_u32(u).unwrap()),
                ignorable(),
                select(lex),
            ],
            0..10,
        )
    }

    /// A term with 0–3 inserted chars in each gap between two of its chars.
    fn obfuscated_term() -> impl Strategy<Value = (String, Vec<Vec<char>>)> {
        select(flag_terms()).prop_flat_map(|t| {
            let gaps = t.chars().count() - 1;
            (Just(t), prop::collection::vec(prop::collection::vec(insertion(), 0..4), gaps))
        })
    }

    /// Checks every hit's span against the original text.
    fn check_hits(original: &str, r: &FlagReport) -> Result<(), TestCaseError> {
        let n = original.chars().count();
        for h in &r.hits {
            prop_assert!(h.start < h.end && h.end <= n, "span out of bounds: {h:?} in {n} chars");
            // char offsets -> byte offsets: both on char boundaries, slice exact
            let b0 = original.char_indices().nth(h.start).map(|(b, _)| b).unwrap();
            let b1 = original.char_indices().nth(h.end).map_or(original.len(), |(b, _)| b);
            prop_assert!(original.is_char_boundary(b0) && original.is_char_boundary(b1));
            prop_assert_eq!(&original[b0..b1], h.text.as_str());
            prop_assert_eq!(char_slice(original, h.start, h.end), h.text.as_str());
            // the span starts at a visible char and ends after one
            let first = h.text.chars().next().unwrap();
            let last = h.text.chars().last().unwrap();
            prop_assert!(!Normalized::new(&first.to_string()).is_empty(), "span starts with an invisible char: {h:?}");
            prop_assert!(!Normalized::new(&last.to_string()).is_empty(), "span ends with an invisible char: {h:?}");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Any lexicon term with ignorables, controls, combining marks or
        /// separators inserted inside it, in any surrounding text, is flagged
        /// as without them; each span covers the term's visible chars exactly
        /// and its original slice normalises to the matched term.
        #[test]
        fn obfuscated_terms_are_found(
            (term, gaps) in obfuscated_term(),
            pre in context(),
            post in context(),
            boundary in select(&["", "，"][..]),
        ) {
            let f = shipped();
            let chars: Vec<char> = term.chars().collect();
            // clean: pre + boundary + term + boundary + post; obf: the same with the insertions.
            // `map[i]` is the char index in obf of char i of clean.
            let (mut clean, mut obf, mut map) = (String::new(), String::new(), Vec::new());
            let both = |c: char, clean: &mut String, obf: &mut String, map: &mut Vec<usize>| {
                map.push(obf.chars().count());
                clean.push(c);
                obf.push(c);
            };
            for c in pre.iter().copied().chain(boundary.chars()) {
                both(c, &mut clean, &mut obf, &mut map);
            }
            let term_start = obf.chars().count();
            for (i, &c) in chars.iter().enumerate() {
                both(c, &mut clean, &mut obf, &mut map);
                if let Some(gap) = gaps.get(i) {
                    obf.extend(gap.iter());
                }
            }
            let term_end = obf.chars().count();
            for c in boundary.chars().chain(post.iter().copied()) {
                both(c, &mut clean, &mut obf, &mut map);
            }

            let rc = f.scan(&clean);
            let ro = f.scan(&obf);
            check_hits(&clean, &rc)?;
            check_hits(&obf, &ro)?;
            // (a) the insertions change nothing but the spans, which map over exactly
            let want: Vec<(String, Flag, u8, usize, usize, bool)> = rc
                .hits
                .iter()
                .map(|h| (h.term.clone(), h.flag, h.severity, map[h.start], map[h.end - 1] + 1, h.negated))
                .collect();
            let got: Vec<(String, Flag, u8, usize, usize, bool)> =
                ro.hits.iter().map(|h| (h.term.clone(), h.flag, h.severity, h.start, h.end, h.negated)).collect();
            prop_assert_eq!(&got, &want, "clean {:?} obf {:?}", clean, obf);
            // ... and between clause punctuation the term itself is always found, spanning
            // from its first char to its last in the original
            if !boundary.is_empty() {
                prop_assert!(
                    ro.hits.iter().any(|h| h.term == term && h.start == term_start && h.end == term_end),
                    "{term:?} not found in {obf:?}: {:?}", ro.hits
                );
            }
            // (b) every hit's original slice normalises to its term
            for h in &ro.hits {
                prop_assert_eq!(&Normalized::new(&h.text).text, &h.term, "{:?}", h);
            }
        }

        /// Any input at all: no panic, every span in bounds, on char
        /// boundaries and exactly the reported text.
        #[test]
        fn any_text_scans_cleanly(s in any::<String>()) {
            let r = shipped().scan(&s);
            check_hits(&s, &r)?;
        }

        /// The same over text dense in lexicon chars and ignorables, so that hits occur.
        #[test]
        fn any_lexicon_heavy_text_scans_cleanly(a in context(), b in context(), c in context()) {
            let s: String = a.into_iter().chain(b).chain(c).collect();
            let r = shipped().scan(&s);
            check_hits(&s, &r)?;
        }
    }
}
