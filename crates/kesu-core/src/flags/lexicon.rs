//! The legal-risk word list: `lexicons/legal_risk.tsv`.
//!
//! Format: UTF-8, tab-separated. Lines starting with `#` are comments; a
//! comment `# version: <v>` names the list's version. The first non-comment
//! line is the header `term<TAB>flag<TAB>severity<TAB>note`. Each further line is one
//! term with one flag (a term may appear once per flag), a severity 1–3, and a
//! free-text note. The flag `exclude` (severity 0) marks a phrase in which
//! flag terms have an unrelated meaning (公安局旁边): hits inside it are dropped.

use crate::parse::ParseError;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The eight legal-risk flags of the label schema, in canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    Litigation,
    Regulator,
    Media,
    PoliceCrime,
    CollectiveAction,
    PrivacyBreach,
    CollectionAbuse,
    SelfHarmViolence,
}

impl Flag {
    /// All flags in canonical order.
    pub const ALL: [Flag; 8] = [
        Flag::Litigation,
        Flag::Regulator,
        Flag::Media,
        Flag::PoliceCrime,
        Flag::CollectiveAction,
        Flag::PrivacyBreach,
        Flag::CollectionAbuse,
        Flag::SelfHarmViolence,
    ];

    /// A hit of this flag needs review whether negated or not
    /// (`self_harm_violence`, `collective_action`: "我不想活了" is negated by the
    /// heuristic but still needs a person now). The one definition: the
    /// flagger's `needs_review` and the triage condition `always_review = true`
    /// (the shipped `crisis` rule) both read it.
    pub fn always_review(self) -> bool {
        matches!(self, Flag::SelfHarmViolence | Flag::CollectiveAction)
    }

    /// A hit of this flag is a threat or act of taking the matter outside the
    /// company or of harm: escalation level 3 of the label schema (regulator,
    /// media, lawsuit, police, collective action, self-harm or violence).
    /// `privacy_breach` and `collection_abuse` describe what happened, not
    /// where the customer takes it.
    pub fn takes_it_outside(self) -> bool {
        !matches!(self, Flag::PrivacyBreach | Flag::CollectionAbuse)
    }

    /// The schema's name (`police_crime`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Litigation => "litigation",
            Flag::Regulator => "regulator",
            Flag::Media => "media",
            Flag::PoliceCrime => "police_crime",
            Flag::CollectiveAction => "collective_action",
            Flag::PrivacyBreach => "privacy_breach",
            Flag::CollectionAbuse => "collection_abuse",
            Flag::SelfHarmViolence => "self_harm_violence",
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Flag::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| format!("unknown flag {s:?}"))
    }
}

/// What one lexicon line says a term is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Flag { flag: Flag, severity: u8 },
    Exclude,
}

/// One parsed line.
#[derive(Debug, Clone)]
pub struct LexiconRow {
    pub term: String,
    pub entry: Entry,
    pub note: String,
    /// 1-based line number in the file.
    pub line: usize,
}

/// A parsed word list.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    pub version: String,
    pub rows: Vec<LexiconRow>,
}

impl Lexicon {
    /// Parse the TSV text. Errors name the 1-based line.
    pub fn parse(raw: &str) -> Result<Lexicon, ParseError> {
        let mut version = String::from("unversioned");
        let mut rows = Vec::new();
        let mut seen_header = false;
        let mut seen = std::collections::HashSet::new();
        for (i, line) in raw.lines().enumerate() {
            let n = i + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if let Some(c) = line.strip_prefix('#') {
                if let Some(v) = c.trim().strip_prefix("version:") {
                    version = v.trim().to_string();
                }
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            if !seen_header {
                if cols.len() < 3 || cols[0] != "term" || cols[1] != "flag" || cols[2] != "severity" {
                    return Err(ParseError::at(n, "expected the header `term<TAB>flag<TAB>severity<TAB>note`"));
                }
                seen_header = true;
                continue;
            }
            if cols.len() < 3 {
                return Err(ParseError::at(
                    n,
                    format!("expected at least 3 tab-separated columns, found {}", cols.len()),
                ));
            }
            let term = cols[0].trim();
            if term.is_empty() {
                return Err(ParseError::at(n, "empty term"));
            }
            let severity: u8 = cols[2]
                .trim()
                .parse()
                .map_err(|_| ParseError::at(n, format!("severity {:?} is not a number", cols[2])))?;
            let entry = if cols[1].trim() == "exclude" {
                Entry::Exclude
            } else {
                let flag: Flag = cols[1].trim().parse().map_err(|e| ParseError::at(n, e))?;
                if !(1..=3).contains(&severity) {
                    return Err(ParseError::at(n, format!("severity must be 1, 2 or 3, found {severity}")));
                }
                Entry::Flag { flag, severity }
            };
            let key = (term.to_string(), cols[1].trim().to_string());
            if !seen.insert(key) {
                return Err(ParseError::at(n, format!("duplicate term {term:?} for flag {}", cols[1].trim())));
            }
            rows.push(LexiconRow {
                term: term.to_string(),
                entry,
                note: cols.get(3).unwrap_or(&"").to_string(),
                line: n,
            });
        }
        if !seen_header {
            return Err(ParseError::whole("no header line `term<TAB>flag<TAB>severity<TAB>note`"));
        }
        Ok(Lexicon { version, rows })
    }

    /// Number of flag terms (excluding `exclude` rows).
    pub fn term_count(&self) -> usize {
        self.rows.iter().filter(|r| matches!(r.entry, Entry::Flag { .. })).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_header_rows_and_excludes() {
        let lx = Lexicon::parse(
            "# version: 7\nterm\tflag\tseverity\tnote\n起诉\tlitigation\t2\tsue\n公安局旁边\texclude\t0\tplace\n",
        )
        .unwrap();
        assert_eq!(lx.version, "7");
        assert_eq!(lx.rows.len(), 2);
        assert_eq!(lx.term_count(), 1);
        assert_eq!(lx.rows[0].entry, Entry::Flag { flag: Flag::Litigation, severity: 2 });
        assert_eq!(lx.rows[1].entry, Entry::Exclude);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("term\tflag\tseverity\n起诉\tlawsuit\t2\n", "line 2: unknown flag"),
            ("term\tflag\tseverity\n起诉\tlitigation\t5\n", "line 2: severity must be"),
            ("term\tflag\tseverity\n\n起诉\tlitigation\n", "line 3: expected at least 3"),
            ("term\tflag\tseverity\n起诉\tlitigation\t1\n起诉\tlitigation\t2\n", "line 3: duplicate"),
            ("起诉\tlitigation\t1\n", "line 1: expected the header"),
            ("# only comments\n", "no header"),
        ];
        for (raw, want) in cases {
            let err = Lexicon::parse(raw).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }

    #[test]
    fn flag_names_round_trip() {
        for f in Flag::ALL {
            assert_eq!(f.as_str().parse::<Flag>().unwrap(), f);
            assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{}\"", f.as_str()));
        }
    }

    // ---- Property tests (issue 14): the parser never panics, errors carry their line ----

    mod properties {
        use super::super::*;
        use crate::flags::Flagger;
        use proptest::prelude::*;
        use proptest::sample::select;

        /// An error on a line names a real line; an error without one is about the
        /// whole file (no header) or the compiled automaton.
        fn check_err(raw: &str, e: &ParseError) -> Result<(), TestCaseError> {
            match e.line {
                Some(l) => prop_assert!(l >= 1 && l <= raw.lines().count().max(1), "line {} in {:?}: {}", l, raw, e),
                None => prop_assert!(
                    e.message.starts_with("no header") || e.message.starts_with("cannot compile"),
                    "an error without a line: {}",
                    e
                ),
            }
            Ok(())
        }

        fn field() -> impl Strategy<Value = String> {
            prop_oneof![
                select(
                    &[
                        "起诉",
                        "ＣＣＴＶ",
                        "\u{00ad}",
                        " ",
                        "",
                        "*",
                        "litigation",
                        "exclude",
                        "media",
                        "lawsuit",
                        "0",
                        "1",
                        "3",
                        "4",
                        "256",
                        "-1",
                        " 2 ",
                        "note",
                        "起\u{200b}訴",
                        "#",
                        "\r",
                    ][..]
                )
                .prop_map(String::from),
                "\\PC{0,6}",
            ]
        }

        fn row() -> impl Strategy<Value = String> {
            prop_oneof![
                6 => prop::collection::vec(field(), 0..6).prop_map(|f| f.join("\t")),
                1 => select(&["term\tflag\tseverity\tnote", "# version: 9", "#", ""][..]).prop_map(String::from),
            ]
        }

        proptest! {
            /// Any string: Ok or an error naming its line; a parsed list compiles or
            /// names the line of the term that does not.
            #[test]
            fn any_text_parses_or_names_a_line(raw in any::<String>()) {
                match Lexicon::parse(&raw) {
                    Err(e) => check_err(&raw, &e)?,
                    Ok(lx) => if let Err(e) = Flagger::new(&lx, 2) { check_err(&raw, &e)? },
                }
            }

            /// Plausible word lists (header, then rows of the format's values): the same,
            /// every row's line is right, and a compiled list scans its own terms.
            #[test]
            fn lexicon_like_text_parses_or_names_a_line(
                header in any::<bool>(),
                crlf in any::<bool>(),
                rows in prop::collection::vec(row(), 0..20),
            ) {
                let nl = if crlf { "\r\n" } else { "\n" };
                let raw = format!("{}{}", if header { "term\tflag\tseverity\tnote\n" } else { "" }, rows.join(nl));
                match Lexicon::parse(&raw) {
                    Err(e) => check_err(&raw, &e)?,
                    Ok(lx) => {
                        let lines: Vec<&str> = raw.lines().collect();
                        for r in &lx.rows {
                            prop_assert!(lines[r.line - 1].trim_start().starts_with(&r.term), "{:?} line {}", r.term, r.line);
                        }
                        match Flagger::new(&lx, 2) {
                            Err(e) => check_err(&raw, &e)?,
                            Ok(f) => {
                                let text: String = lx.rows.iter().map(|r| format!("{}。", r.term)).collect();
                                let _ = f.scan(&text);
                            }
                        }
                    }
                }
            }
        }
    }
}
