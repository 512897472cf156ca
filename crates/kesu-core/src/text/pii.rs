//! Masking personal data — phone numbers, PRC ID-card numbers, bank-card
//! numbers, e-mail addresses — before a text is stored or logged.
//!
//! Guarantees of [`mask`]:
//! * the masked text has exactly as many chars as the input, and only chars
//!   inside a reported span change (each masked char becomes one `*`), so any
//!   char offset into the original text — a flag hit's `start`/`end` — points
//!   at the same position of the masked text;
//! * separators inside a number (`138-1234-5678`, `6222 0212 …`) are kept;
//!   full-width digits (`１３８…`) are recognised like ASCII ones;
//! * a number glued to other digits (or letters, for ASCII numbers) is not a
//!   match, so order numbers and the like are left alone unless they have the
//!   length and shape of a card number (15–19 digits), which is masked: a
//!   false mask costs less than a leaked card.
//!
//! What stays visible: mobile numbers keep the first 3 and last 4 digits
//! (`138****5678`), ID-card numbers the first 3 and last 4, bank cards the
//! first 6 and last 4 (the PCI rule), landlines the area code and last 4,
//! e-mail addresses the first char of the local part and the domain.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// What a masked span was. (The part of a match whose digits are masked is
/// the named group `m` when a pattern has one, else the whole match.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    IdCard,
    BankCard,
    Phone,
}

/// One masked span, as char offsets `[start, end)` of the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct PiiSpan {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

/// A masked text and what was masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub text: String,
    pub spans: Vec<PiiSpan>,
}

const D: &str = "[0-9０-９]";

struct Rule {
    kind: PiiKind,
    re: Regex,
    /// Digits kept visible at the start and the end (e-mail: chars of the local part kept).
    keep: (usize, usize),
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let r = |kind, pat: String, keep| Rule { kind, re: Regex::new(&pat).expect("valid PII pattern"), keep };
    vec![
        r(PiiKind::Email, r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}".to_string(), (1, 0)),
        // 18-char ID card: 17 digits + digit or X
        r(PiiKind::IdCard, format!("{D}{{17}}[0-9０-９XxＸｘ]"), (3, 4)),
        // bank cards: 15-19 digits, or groups of 4 separated by a space or dash
        r(PiiKind::BankCard, format!("{D}{{4}}(?:[ -]{D}{{4}}){{3}}(?:[ -]?{D}{{1,3}})?|{D}{{15,19}}"), (6, 4)),
        // mobile numbers, optional +86, optional separators 3-4-4
        r(
            PiiKind::Phone,
            format!("(?:(?:\\+|＋)?(?:86|８６)[ -]?)?(?P<m>[1１][3-9３-９]{D}[ -]?{D}{{4}}[ -]?{D}{{4}})"),
            (3, 4),
        ),
        // landlines: area code 0xx/0xxx (kept), a separator or brackets, 7-8 digits
        r(PiiKind::Phone, format!("[(（]?[0０]{D}{{2,3}}[)）]?[ -]?(?P<m>{D}{{7,8}})"), (0, 4)),
    ]
});

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || ('０'..='９').contains(&c)
}

/// Mask every phone number, ID-card number, bank-card number and e-mail
/// address in `text` (see the module documentation for the guarantees).
pub fn mask(text: &str) -> Masked {
    let mut chars: Vec<char> = text.chars().collect();
    let mut taken = vec![false; chars.len()];
    let mut spans = Vec::new();
    // byte offset -> char index
    let mut char_at = vec![0usize; text.len() + 1];
    for (ci, (bi, _)) in text.char_indices().enumerate() {
        char_at[bi] = ci;
    }
    char_at[text.len()] = chars.len();
    for rule in RULES.iter() {
        for caps in rule.re.captures_iter(text) {
            let m = caps.get(0).expect("group 0 is the match");
            let part = caps.name("m").unwrap_or(m);
            let (s, e) = (char_at[m.start()], char_at[m.end()]);
            let (ps, pe) = (char_at[part.start()], char_at[part.end()]);
            let glued = |c: Option<&char>| {
                c.is_some_and(|&c| {
                    is_digit(c)
                        || (rule.kind != PiiKind::Email && c.is_ascii_alphabetic())
                        || (rule.kind == PiiKind::Email && (c.is_ascii_alphanumeric() || c == '.'))
                })
            };
            if glued(s.checked_sub(1).and_then(|i| chars.get(i)))
                || glued(chars.get(e))
                || taken[s..e].iter().any(|&t| t)
            {
                continue;
            }
            match rule.kind {
                PiiKind::Email => {
                    let at = (s..e).find(|&i| chars[i] == '@').expect("an e-mail match has an @");
                    for c in chars.iter_mut().take(at).skip(s + rule.keep.0) {
                        *c = '*';
                    }
                }
                _ => {
                    let digits: Vec<usize> = (ps..pe)
                        .filter(|&i| is_digit(chars[i]) || matches!(chars[i], 'X' | 'x' | 'Ｘ' | 'ｘ'))
                        .collect();
                    let (head, tail) = rule.keep;
                    if digits.len() > head + tail {
                        for &i in &digits[head..digits.len() - tail] {
                            chars[i] = '*';
                        }
                    }
                }
            }
            taken[s..e].iter_mut().for_each(|t| *t = true);
            spans.push(PiiSpan { kind: rule.kind, start: s, end: e });
        }
    }
    spans.sort_by_key(|s| s.start);
    Masked { text: chars.into_iter().collect(), spans }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: &str) -> String {
        mask(t).text
    }

    #[test]
    fn phones() {
        assert_eq!(m("电话13812345678找我"), "电话138****5678找我");
        assert_eq!(m("打138-1234-5678或者138 1234 5678"), "打138-****-5678或者138 **** 5678");
        assert_eq!(m("+86 13812345678"), "+86 138****5678");
        assert_eq!(m("１３８１２３４５６７８"), "１３８＊＊＊＊５６７８".replace('＊', "*"));
        assert_eq!(m("座机010-12345678"), "座机010-****5678");
        assert_eq!(m("（0755）87654321"), "（0755）****4321");
    }

    #[test]
    fn id_and_bank_cards() {
        assert_eq!(m("身份证11010119900307123X"), "身份证110***********123X");
        assert_eq!(m("卡号6222021234567890123被盗刷"), "卡号622202*********0123被盗刷");
        assert_eq!(m("卡号 6222 0212 3456 7890"), "卡号 6222 02** **** 7890");
    }

    #[test]
    fn emails() {
        assert_eq!(m("发到zhang.san@example.com.cn了"), "发到z********@example.com.cn了");
        assert_eq!(m("a@b.co"), "a@b.co");
    }

    #[test]
    fn leaves_other_numbers_alone() {
        for t in [
            "拨打12315投诉",
            "报警110",
            "订单号20231115",
            "花了1380元",
            "工号1422",
            "KF051501056101361930abc",
            "2026-11-23 10:15",
        ] {
            assert_eq!(m(t), t, "{t}");
        }
        // glued to letters: an identifier, not a phone
        assert_eq!(m("ID:x13812345678y"), "ID:x13812345678y");
    }

    #[test]
    fn lengths_and_offsets_are_preserved() {
        let t = "我叫张三，电话１３８１２３４５６７８，身份证110101199003071234，要去12315投诉！邮箱abc@qq.com";
        let out = mask(t);
        assert_eq!(out.text.chars().count(), t.chars().count());
        let (a, b): (Vec<char>, Vec<char>) = (t.chars().collect(), out.text.chars().collect());
        // outside the spans nothing changed; 12315 still sits at the same offsets
        let inside = |i: usize| out.spans.iter().any(|s| (s.start..s.end).contains(&i));
        for i in 0..a.len() {
            if !inside(i) {
                assert_eq!(a[i], b[i], "char {i}");
            }
        }
        let pos = t.chars().collect::<String>().find("12315").unwrap();
        let ci = t[..pos].chars().count();
        assert_eq!(b[ci..ci + 5].iter().collect::<String>(), "12315");
        let kinds: Vec<PiiKind> = out.spans.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![PiiKind::Phone, PiiKind::IdCard, PiiKind::Email]);
        assert!(!out.text.contains("12345678") && !out.text.contains("19900307"));
    }

    // ---- Property tests (issue 14) ----

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use proptest::sample::select;

        /// One digit, ASCII or full-width.
        fn digit() -> impl Strategy<Value = char> {
            // ASCII or full-width, mixed freely within one number
            (0u32..10, any::<bool>()).prop_map(|(d, wide)| {
                if wide {
                    char::from_u32('０' as u32 + d).unwrap()
                } else {
                    char::from_u32('0' as u32 + d).unwrap()
                }
            })
        }

        fn digits(n: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<char>> {
            prop::collection::vec(digit(), n)
        }

        fn sep() -> impl Strategy<Value = &'static str> {
            select(&["", " ", "-"][..])
        }

        fn wide(c: char) -> char {
            char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap()
        }

        /// A number of one kind, as text, with the most digits that may stay visible
        /// and the longest run of visible digits allowed (the longer kept part).
        fn number() -> impl Strategy<Value = (PiiKind, String, usize, usize)> {
            let mobile = (select(&['3', '4', '5', '6', '7', '8', '9'][..]), any::<bool>(), digits(9..=9), sep())
                .prop_map(|(second, w, rest, sp)| {
                    let mut s = String::new();
                    s.push(if w { '１' } else { '1' });
                    s.push(if w { wide(second) } else { second });
                    s.push(rest[0]);
                    s.push_str(sp);
                    s.extend(&rest[1..5]);
                    s.push_str(sp);
                    s.extend(&rest[5..9]);
                    (PiiKind::Phone, s, 7, 4)
                });
            let id_card = (digits(17..=17), select(&['0', '7', 'X', 'x', 'Ｘ', '９'][..]))
                .prop_map(|(d, last)| (PiiKind::IdCard, d.into_iter().chain([last]).collect(), 7, 4));
            let bank_run = digits(15..=19).prop_map(|d| {
                // an 18-char run is an ID card's shape: masked as one (3 + 4 kept)
                let (keep, run) = if d.len() == 18 { (7, 4) } else { (10, 6) };
                (PiiKind::BankCard, d.into_iter().collect(), keep, run)
            });
            let bank_groups = (digits(16..=16), select(&[" ", "-"][..])).prop_map(|(d, sp)| {
                let s = d.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(sp);
                (PiiKind::BankCard, s, 10, 6)
            });
            let landline = (digits(2..=3), select(&["-", " ", ""][..]), digits(7..=8), any::<bool>()).prop_map(
                |(area, sp, local, brackets)| {
                    let area: String = std::iter::once('0').chain(area).collect();
                    let area = if brackets { format!("（{area}）") } else { area };
                    let sp = if brackets { "" } else { sp };
                    // the area code (3-4 digits) and the last 4 stay visible; without a
                    // separator the regex may read one more digit as area code
                    (PiiKind::Phone, format!("{area}{sp}{}", local.iter().collect::<String>()), 8, 4)
                },
            );
            prop_oneof![mobile, id_card, bank_run, bank_groups, landline]
        }

        /// Text around a number: anything but digits and ASCII letters (a number glued to
        /// those is, by design, not masked), with a boundary next to the number.
        fn context() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop_oneof![
                    any::<char>()
                        .prop_filter("no digits or ASCII letters", |c| !is_digit(*c) && !c.is_ascii_alphanumeric()),
                    (0x4e00u32..=0x9fff).prop_map(|u| char::from_u32(u).unwrap()),
                    select(&['，', '。', ' ', '：', ':', '\n', '(', '）', '+'][..]),
                ],
                0..12,
            )
            .prop_map(|v| v.into_iter().collect())
        }

        /// The general invariants of [`mask`] on `text`.
        fn check_mask(text: &str, out: &Masked) -> Result<(), TestCaseError> {
            let (a, b): (Vec<char>, Vec<char>) = (text.chars().collect(), out.text.chars().collect());
            prop_assert_eq!(a.len(), b.len(), "char count changed: {:?} -> {:?}", text, out.text);
            let mut prev_end = 0;
            for s in &out.spans {
                prop_assert!(s.start < s.end && s.end <= a.len(), "span out of bounds {:?}", s);
                prop_assert!(s.start >= prev_end, "spans overlap or are unsorted: {:?}", out.spans);
                prev_end = s.end;
            }
            for i in 0..a.len() {
                if a[i] != b[i] {
                    prop_assert_eq!(b[i], '*', "char {} changed to something other than *", i);
                    prop_assert!(
                        out.spans.iter().any(|s| (s.start..s.end).contains(&i)),
                        "char {} changed outside every span",
                        i
                    );
                }
            }
            Ok(())
        }

        proptest! {
            /// Any string: no panic, the same number of chars, and only chars inside a
            /// reported span change, each to `*`.
            #[test]
            fn any_text_masks_cleanly(s in any::<String>()) {
                check_mask(&s, &mask(&s))?;
            }

            /// The same over digit-heavy text, so that numbers of every kind and their
            /// overlaps occur.
            #[test]
            fn digit_heavy_text_masks_cleanly(
                s in prop::collection::vec(
                    prop_oneof![4 => digit(), 1 => select(&[' ', '-', '+', '(', '）', 'X', '@', 'a', '.', '号'][..])],
                    0..60,
                )
            ) {
                let s: String = s.into_iter().collect();
                check_mask(&s, &mask(&s))?;
            }

            /// A phone, ID-card or bank-card number in any text is masked: at most the
            /// kept head and tail digits stay visible, so no run of more digits than the
            /// kept ones survives, and the text keeps its length.
            #[test]
            fn numbers_in_any_text_are_masked(
                pre in context(),
                (kind, number, keep, max_run) in number(),
                post in context(),
            ) {
                let text = format!("{pre}{number}{post}");
                let out = mask(&text);
                check_mask(&text, &out)?;
                let start = pre.chars().count();
                let end = start + number.chars().count();
                let masked: String = out.text.chars().skip(start).take(end - start).collect();
                let id_char = |c: char| is_digit(c) || matches!(c, 'X' | 'x' | 'Ｘ' | 'ｘ');
                let total = number.chars().filter(|&c| id_char(c)).count();
                let visible = masked.chars().filter(|&c| id_char(c)).count();
                prop_assert!(visible <= keep, "{:?} {:?} -> {:?}: {} of {} digits visible", kind, number, masked, visible, total);
                prop_assert!(masked.chars().filter(|&c| c == '*').count() >= total.saturating_sub(keep));
                // the longest run of visible digits is at most the longer kept part
                let run = masked.split(|c: char| !id_char(c)).map(|r| r.chars().count()).max().unwrap_or(0);
                prop_assert!(run <= max_run, "a run of {} digits survived in {:?}", run, masked);
                prop_assert!(
                    out.spans.iter().any(|s| s.start < end && start < s.end),
                    "no span over {:?}: {:?}", number, out.spans
                );
            }
        }
    }
}
