//! Text normalisation for matching, with a map back to the original text.
//!
//! [`Normalized::new`] turns a text into a *compact matching form*:
//!
//! 0. *ignorable* characters are dropped wherever they occur (see
//!    [`is_ignorable`]): every Default_Ignorable_Code_Point (soft hyphen,
//!    zero-width characters, bidi marks and overrides, invisible operators,
//!    variation selectors, tag characters, ...), control characters other than
//!    whitespace (NUL, DEL, C1 controls) and nonspacing or enclosing combining
//!    marks (General_Category Mn, Me). `起\u{ad}诉`, `起\u{200e}诉` and `起\u{301}诉`
//!    read as `起诉`. They are dropped before the traditional→simplified step,
//!    so a text with ignorables inserted anywhere has exactly the matching form
//!    of the text without them;
//! 1. every character is folded with Unicode NFKC (full-width → half-width:
//!    `１２３１５` → `12315`, `Ａ` → `A`, ideographic space → space),
//! 2. lower-cased,
//! 3. converted from traditional to simplified Chinese (OpenCC's `t2s`
//!    tables via the `ferrous-opencc` crate: `起訴` → `起诉`),
//! 4. *separator* characters are dropped (see [`is_separator`]), so that
//!    obfuscations such as `起*诉`, `起 诉` and `律-师-函` read as `起诉`, `律师函`.
//!
//! Every character of the matching form remembers the index of the original
//! character it came from, so a match in the matching form maps back to an
//! exact span of the original text (see [`Normalized::original_span`]). A
//! span starts at the original char of its first matching-form char and ends
//! after the original char of its last: it never starts or ends with an
//! ignorable or separator char, and contains those that lie between (the span
//! is contiguous in the original). A combining mark right after the last char
//! is therefore not part of the span.
//!
//! All offsets in this module are **Unicode scalar value (char) offsets**,
//! not bytes and not UTF-16 units.

use std::sync::OnceLock;

use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};
use unicode_normalization::UnicodeNormalization;

/// True for characters that people insert inside a word to dodge keyword
/// filters, and that carry no meaning of their own inside a term: whitespace
/// (including ideographic spaces), `* - _ . · • / \ | ~ ^ # + = '`
/// and their full-width forms (folded by NFKC before this test), and emoji /
/// pictographs. (Zero-width characters, U+FEFF and variation selectors are
/// [ignorable](is_ignorable) and dropped before this test.)
///
/// Chinese sentence punctuation (`，。！？；：`) is NOT a separator: it ends a
/// clause, and a "term" across it is not one.
pub fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '*' | '-'
                | '_'
                | '.'
                | '·'
                | '•'
                | '/'
                | '\\'
                | '|'
                | '~'
                | '^'
                | '#'
                | '+'
                | '='
                | '\''
                | '`'
                | '"'
                | '×'
                | '※'
                | '★'
                | '☆'
                | '○'
                | '●'
                | '◆'
                | '♥'
                | '—'
                | '–'
                | '…'
        )
        || is_pictograph(c)
}

/// True for characters that are invisible or do not stand on their own, and
/// that [`Normalized::new`] drops wherever they occur:
///
/// * every `Default_Ignorable_Code_Point` (U+00AD soft hyphen, U+034F, U+061C,
///   U+115F/U+1160/U+3164 Hangul fillers, U+180B–U+180F, U+200B–U+200F,
///   U+202A–U+202E, U+2060–U+206F, U+FE00–U+FE0F, U+FEFF, U+E0000–U+E0FFF tags
///   and variation selectors, ...),
/// * control characters (General_Category Cc) other than whitespace: NUL,
///   BEL, DEL, the C1 controls; tab, newline, CR, form feed, vertical tab and
///   NEL stay whitespace, i.e. [separators](is_separator),
/// * nonspacing and enclosing combining marks (General_Category Mn, Me:
///   U+0301, U+20DD, U+20E3, ...). Spacing marks (Mc) are kept.
///
/// The properties come from the Unicode Character Database via the
/// `icu_properties` crate, not from a hand list.
pub fn is_ignorable(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control() && !c.is_whitespace();
    }
    if matches!(c, '\u{4e00}'..='\u{9fff}') || c.is_whitespace() {
        return false; // the common case in this domain; whitespace is never ignorable
    }
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || matches!(
            CodePointMapData::<GeneralCategory>::new().get(c),
            GeneralCategory::Control | GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
        )
}

fn is_pictograph(c: char) -> bool {
    matches!(c as u32,
        0x1F300..=0x1FAFF   // pictographs, emoticons, transport, supplemental symbols
        | 0x2600..=0x27BF   // misc symbols, dingbats
        | 0x1F1E6..=0x1F1FF // regional indicators
    )
}

fn t2s() -> &'static ferrous_opencc::OpenCC {
    static T2S: OnceLock<ferrous_opencc::OpenCC> = OnceLock::new();
    T2S.get_or_init(|| {
        ferrous_opencc::OpenCC::from_config(ferrous_opencc::config::BuiltinConfig::T2s)
            .expect("the built-in OpenCC t2s configuration is compiled into the binary")
    })
}

/// Fold one character (NFKC, lower case) into `out`; a char may become several.
fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    for n in std::iter::once(c).nfkc() {
        for l in n.to_lowercase() {
            out.push(l);
        }
    }
}

/// A text in matching form plus the map back to the original.
#[derive(Debug, Clone)]
pub struct Normalized {
    /// The matching form (ignorables removed, folded, simplified, separators removed).
    pub text: String,
    /// For each char of `text`, the char index in the original it came from.
    origin: Vec<usize>,
    /// For each char of `text`, its byte offset in `text` (plus one final entry
    /// equal to `text.len()`), to turn byte matches into char positions.
    byte_pos: Vec<usize>,
    /// Number of chars in the original text.
    original_chars: usize,
}

impl Normalized {
    /// Normalise `original` into matching form. Never fails; empty in → empty out.
    pub fn new(original: &str) -> Self {
        // 0+1+2: drop ignorables, fold each char, remembering where each folded char came from.
        let mut folded = String::with_capacity(original.len());
        let mut folded_origin = Vec::with_capacity(original.len());
        let mut buf = String::new();
        let mut original_chars = 0;
        for (i, c) in original.chars().enumerate() {
            original_chars = i + 1;
            if is_ignorable(c) {
                continue;
            }
            buf.clear();
            fold_char(c, &mut buf);
            for f in buf.chars() {
                // Folding can yield marks too: NFKC turns ´ into a space and U+0301,
                // İ lower-cases to i and U+0307.
                if is_ignorable(f) {
                    continue;
                }
                folded.push(f);
                folded_origin.push(i);
            }
        }
        // 3: traditional → simplified. OpenCC converts phrase by phrase; its
        // t2s phrases keep their length, so the result aligns char by char.
        // If it ever does not, fall back to converting char by char.
        let simplified = if folded.chars().any(is_cjk) { to_simplified_aligned(&folded) } else { folded };
        // 4: drop separators.
        let mut text = String::with_capacity(simplified.len());
        let mut origin = Vec::with_capacity(folded_origin.len());
        let mut byte_pos = Vec::with_capacity(folded_origin.len() + 1);
        for (c, &o) in simplified.chars().zip(folded_origin.iter()) {
            if is_separator(c) {
                continue;
            }
            byte_pos.push(text.len());
            text.push(c);
            origin.push(o);
        }
        byte_pos.push(text.len());
        Normalized { text, origin, byte_pos, original_chars }
    }

    /// Number of chars in the matching form.
    pub fn len(&self) -> usize {
        self.origin.len()
    }

    /// True when the matching form is empty.
    pub fn is_empty(&self) -> bool {
        self.origin.is_empty()
    }

    /// Char index in the matching form of the char starting at byte `b` of
    /// `self.text` (`b == text.len()` gives `len()`).
    pub fn char_at_byte(&self, b: usize) -> usize {
        self.byte_pos.partition_point(|&p| p < b)
    }

    /// The original char span `[start, end)` that the matching-form char span
    /// `[start, end)` came from. `start < end <= len()` is required.
    pub fn original_span(&self, start: usize, end: usize) -> (usize, usize) {
        debug_assert!(start < end && end <= self.len());
        let s = self.origin[start];
        let e = self.origin[end - 1] + 1;
        (s, e.min(self.original_chars))
    }

    /// Original char index of matching-form char `i`.
    pub fn origin_of(&self, i: usize) -> usize {
        self.origin[i]
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

fn to_simplified_aligned(folded: &str) -> String {
    let converted = t2s().convert(folded);
    if converted.chars().count() == folded.chars().count() {
        return converted;
    }
    let mut out = String::with_capacity(folded.len());
    let mut tmp = [0u8; 4];
    for c in folded.chars() {
        let s = t2s().convert(c.encode_utf8(&mut tmp));
        let mut it = s.chars();
        match (it.next(), it.next()) {
            (Some(one), None) => out.push(one),
            _ => out.push(c),
        }
    }
    out
}

/// Slice `text` by char offsets `[start, end)`.
pub fn char_slice(text: &str, start: usize, end: usize) -> &str {
    let mut it = text.char_indices().map(|(b, _)| b).chain(std::iter::once(text.len()));
    let b0 = it.by_ref().nth(start).unwrap_or(text.len());
    let b1 = if end > start { it.nth(end - start - 1).unwrap_or(text.len()) } else { b0 };
    &text[b0..b1]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn span_text(orig: &str, n: &Normalized, needle: &str) -> String {
        let b = n.text.find(needle).expect("needle in matching form");
        let (s, e) = (n.char_at_byte(b), n.char_at_byte(b + needle.len()));
        let (os, oe) = n.original_span(s, e);
        char_slice(orig, os, oe).to_string()
    }

    #[test]
    fn full_width_digits_and_letters_fold_to_ascii() {
        let n = Normalized::new("打１２３１５投诉ＡＢＣ");
        assert_eq!(n.text, "打12315投诉abc");
        assert_eq!(span_text("打１２３１５投诉ＡＢＣ", &n, "12315"), "１２３１５");
    }

    #[test]
    fn case_folds() {
        assert_eq!(Normalized::new("CCTV 315").text, "cctv315");
    }

    #[test]
    fn traditional_becomes_simplified_and_keeps_offsets() {
        let orig = "我要起訴你們，還要找記者";
        let n = Normalized::new(orig);
        assert_eq!(n.text, "我要起诉你们,还要找记者");
        assert_eq!(span_text(orig, &n, "起诉"), "起訴");
        assert_eq!(span_text(orig, &n, "记者"), "記者");
    }

    #[test]
    fn separators_inside_words_are_dropped() {
        for (orig, term) in [
            ("起*诉", "起诉"),
            ("起 诉", "起诉"),
            ("律-师-函", "律师函"),
            ("报\u{200b}警", "报警"),
            ("曝😡光", "曝光"),
            ("起＊诉", "起诉"),
        ] {
            let n = Normalized::new(orig);
            assert_eq!(n.text, term, "{orig}");
            assert_eq!(span_text(orig, &n, term), orig);
        }
    }

    #[test]
    fn sentence_punctuation_is_kept() {
        assert_eq!(Normalized::new("起，诉").text, "起,诉");
    }

    #[test]
    fn offsets_are_chars_with_emoji_and_mixed_scripts() {
        let orig = "😀😀 abc 我要報警!!";
        let n = Normalized::new(orig);
        let b = n.text.find("报警").unwrap();
        let (s, e) = n.original_span(n.char_at_byte(b), n.char_at_byte(b + "报警".len()));
        assert_eq!((s, e), (9, 11));
        assert_eq!(char_slice(orig, s, e), "報警");
    }

    #[test]
    fn expanding_characters_map_to_their_one_original_char() {
        // NFKC expands ㈱ into three chars; all map back to the one original char.
        let n = Normalized::new("㈱x");
        assert_eq!(n.text, "(株)x");
        assert_eq!(n.original_span(0, 3), (0, 1));
    }

    #[test]
    fn empty_and_separator_only() {
        assert!(Normalized::new("").is_empty());
        assert!(Normalized::new(" * - ").is_empty());
    }

    #[test]
    fn char_slice_handles_bounds() {
        assert_eq!(char_slice("我们abc", 1, 3), "们a");
        assert_eq!(char_slice("我们", 2, 2), "");
        assert_eq!(char_slice("我们", 0, 9), "我们");
    }

    // ---- Issue 14: invisible, control and combining characters ----

    /// Invisible, control and combining characters, written down from the
    /// Unicode data independently of the implementation: Default_Ignorable_Code_Point
    /// ranges, controls other than whitespace, and Mn/Me marks of several scripts.
    pub(crate) const IGNORABLE_RANGES: &[(u32, u32)] = &[
        (0x0000, 0x0008),
        (0x000e, 0x001f),
        (0x007f, 0x0084),
        (0x0086, 0x009f),
        (0x00ad, 0x00ad),
        (0x0300, 0x036f),
        (0x0483, 0x0489),
        (0x0591, 0x05bd),
        (0x061c, 0x061c),
        (0x064b, 0x065f),
        (0x115f, 0x1160),
        (0x17b4, 0x17b5),
        (0x180b, 0x180f),
        (0x1ab0, 0x1abd),
        (0x1dc0, 0x1dff),
        (0x200b, 0x200f),
        (0x202a, 0x202e),
        (0x2060, 0x206f),
        (0x20d0, 0x20f0),
        (0x302a, 0x302d),
        (0x3164, 0x3164),
        (0xfe00, 0xfe0f),
        (0xfe20, 0xfe2f),
        (0xfeff, 0xfeff),
        (0xffa0, 0xffa0),
        (0xfff0, 0xfff8),
        (0x1bca0, 0x1bca3),
        (0x1d167, 0x1d169),
        (0x1d173, 0x1d17a),
        (0xe0000, 0xe0fff),
    ];

    /// One char from [`IGNORABLE_RANGES`].
    pub(crate) fn ignorable() -> impl Strategy<Value = char> {
        select(IGNORABLE_RANGES).prop_flat_map(|(lo, hi)| (lo..=hi).prop_map(|u| char::from_u32(u).unwrap()))
    }

    #[test]
    fn ignorables_controls_and_marks_are_dropped() {
        for (orig, want) in [
            ("起\u{00ad}诉", "起诉"),
            ("起\u{200e}\u{200f}\u{202e}\u{2062}诉", "起诉"),
            ("起\u{034f}\u{0301}\u{20dd}诉", "起诉"),
            ("起\u{fe00}\u{e0100}\u{e0020}\u{e007f}诉", "起诉"),
            ("起\u{0000}\u{0007}\u{007f}\u{009f}诉", "起诉"),
            ("c\u{0301}ctv", "cctv"),
            // keycap digits: VS16 and the enclosing keycap (Me) go, the digit stays
            ("1\u{fe0f}\u{20e3}1\u{fe0f}\u{20e3}0\u{fe0f}\u{20e3}", "110"),
            ("\u{00ad}\u{0000}\u{0301}", ""),
        ] {
            let n = Normalized::new(orig);
            assert_eq!(n.text, want, "{orig:?}");
            if !want.is_empty() {
                assert_eq!(
                    span_text(orig, &n, want),
                    orig.trim_matches(|c: char| Normalized::new(&c.to_string()).is_empty())
                );
            }
        }
    }

    #[test]
    fn whitespace_controls_stay_separators() {
        // tab, newline, CR, form feed, vertical tab, NEL are whitespace: dropped as separators,
        // as before (they are controls, but not ignorable)
        assert_eq!(Normalized::new("起\t\n\r\u{000c}\u{000b}\u{0085}诉").text, "起诉");
        assert!(!is_ignorable('\t') && !is_ignorable('\n') && !is_ignorable('\u{0085}') && !is_ignorable(' '));
    }

    #[test]
    fn the_test_ranges_are_ignorable() {
        for &(lo, hi) in IGNORABLE_RANGES {
            for u in lo..=hi {
                let c = char::from_u32(u).unwrap();
                assert!(is_ignorable(c), "U+{u:04X}");
            }
        }
        for c in ['a', 'A', '1', ' ', '起', '，', '😡', '\u{3000}', '\u{0903}' /* Mc: spacing mark */] {
            assert!(!is_ignorable(c), "U+{:04X}", c as u32);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Inserting ignorable chars anywhere in any text leaves its matching
        /// form unchanged, and every matching-form char still maps back to
        /// the same original char.
        #[test]
        fn inserted_ignorables_change_nothing(
            text in prop::collection::vec(
                prop_oneof![
                    any::<char>(),
                    (0x4e00u32..=0x9fff).prop_map(|u| char::from_u32(u).unwrap()),
                    (0x20u32..0x7f).prop_map(|u| char::from_u32(u).unwrap()),
                ],
                0..16,
            ),
            inserts in prop::collection::vec(prop::collection::vec(ignorable(), 0..3), 17),
        ) {
            let clean: String = text.iter().collect();
            let mut obf = String::new();
            let mut map = Vec::new();
            for (i, &c) in text.iter().enumerate() {
                obf.extend(inserts[i].iter());
                map.push(obf.chars().count());
                obf.push(c);
            }
            obf.extend(inserts[text.len()].iter());
            let (nc, no) = (Normalized::new(&clean), Normalized::new(&obf));
            prop_assert_eq!(&no.text, &nc.text);
            for i in 0..nc.len() {
                prop_assert_eq!(no.origin_of(i), map[nc.origin_of(i)]);
            }
        }
    }
}
