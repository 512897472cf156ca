//! The legal-risk flagger.
//!
//! [`Flagger`] finds the terms of a [`Lexicon`] in a text with one
//! Aho–Corasick automaton over the text's matching form (see
//! [`crate::text::normalize`]: invisible, control and combining characters,
//! width, case, traditional→simplified, separator obfuscation), and reports each hit with the exact substring of the
//! ORIGINAL text and its **Unicode char offsets** `[start, end)` in the original.
//!
//! Guarantees:
//! * a hit's `text` is exactly `original.chars().skip(start).take(end - start)`;
//! * ignorable characters (every Default_Ignorable_Code_Point, controls other
//!   than whitespace, combining marks Mn/Me: see
//!   [`is_ignorable`](crate::text::normalize::is_ignorable)) never hide a
//!   term, wherever they are inserted (起\u{ad}诉, 起\u{301}诉 are hits);
//! * a hit's span starts at the term's first visible char and ends after its
//!   last; ignorables and separators between them are inside the span (it is
//!   contiguous in the original), those before or after it are not;
//! * a term that begins or ends with an ASCII letter or digit only matches
//!   where it is not glued to other ASCII letters/digits (the 110 inside a
//!   phone number 13811012345 is not a hit; `110` alone is);
//! * a hit inside a longer hit *of the same flag* is dropped (律师函 wins over
//!   律师); hits of different flags may nest (集体诉讼 gives collective_action,
//!   诉讼 inside it gives litigation);
//! * hits inside an `exclude` phrase are dropped;
//! * hits come in order of `start`, then flag.

pub mod features;
pub mod lexicon;
pub mod negation;

use crate::parse::ParseError;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Serialize;

pub use lexicon::{Entry, Flag, Lexicon};

use crate::text::{char_slice, Normalized};

/// One term found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FlagHit {
    /// The lexicon term (matching form) that matched.
    pub term: String,
    pub flag: Flag,
    /// 1 (weak mention) to 3 (immediate serious risk).
    pub severity: u8,
    /// The matched substring of the original text, exactly.
    pub text: String,
    /// Char offset of the first matched char in the original text.
    pub start: usize,
    /// Char offset one past the last matched char in the original text.
    pub end: usize,
    /// A negation governs the term (我不想起诉). The flag is still raised.
    pub negated: bool,
}

/// All hits of one text plus the text-level summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FlagReport {
    pub hits: Vec<FlagHit>,
    /// Distinct flags raised, in canonical order.
    pub flags: Vec<Flag>,
    /// Highest severity among hits (0 when none).
    pub max_severity: u8,
    /// Compliance should look at this text: a non-negated hit of severity at
    /// least the review threshold, or any hit of a flag that is always
    /// reviewed ([`Flag::always_review`]: `self_harm_violence`,
    /// `collective_action`), negated or not.
    pub needs_review: bool,
}

struct Pattern {
    term: String,
    entries: Vec<(Flag, u8)>,
    exclude: bool,
    ascii_start: bool,
    ascii_end: bool,
}

/// The default of `KESU_REVIEW_MIN_SEVERITY`: a non-negated hit of at least
/// this severity sets `needs_review`.
pub const DEFAULT_REVIEW_MIN_SEVERITY: u8 = 2;

/// A compiled lexicon. Cheap to share (`Send + Sync`), immutable.
pub struct Flagger {
    ac: AhoCorasick,
    patterns: Vec<Pattern>,
    version: String,
    term_count: usize,
    review_min_severity: u8,
}

impl Flagger {
    /// Compile `lexicon`. Terms are normalised like texts, so a term written
    /// in traditional or full-width form still matches. `review_min_severity`
    /// sets the `needs_review` threshold for non-negated hits.
    pub fn new(lexicon: &Lexicon, review_min_severity: u8) -> Result<Flagger, ParseError> {
        let mut patterns: Vec<Pattern> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for row in &lexicon.rows {
            let term = Normalized::new(&row.term).text;
            if term.is_empty() {
                return Err(ParseError::at(row.line, format!("term {:?} is empty after normalisation", row.term)));
            }
            let i = *index.entry(term.clone()).or_insert_with(|| {
                let first = term.chars().next().unwrap();
                let last = term.chars().last().unwrap();
                patterns.push(Pattern {
                    term: term.clone(),
                    entries: vec![],
                    exclude: false,
                    ascii_start: first.is_ascii_alphanumeric(),
                    ascii_end: last.is_ascii_alphanumeric(),
                });
                patterns.len() - 1
            });
            match row.entry {
                Entry::Flag { flag, severity } => {
                    if !patterns[i].entries.iter().any(|(f, _)| *f == flag) {
                        patterns[i].entries.push((flag, severity));
                    }
                }
                Entry::Exclude => patterns[i].exclude = true,
            }
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(patterns.iter().map(|p| p.term.as_str()))
            .map_err(|e| ParseError::whole(format!("cannot compile the lexicon: {e}")))?;
        Ok(Flagger {
            ac,
            patterns,
            version: lexicon.version.clone(),
            term_count: lexicon.term_count(),
            review_min_severity,
        })
    }

    /// Load and compile a lexicon file (errors name the file and line).
    pub fn load(path: &std::path::Path, review_min_severity: u8) -> Result<Flagger, String> {
        let raw = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let lexicon = Lexicon::parse(&raw).map_err(|e| format!("{}: {e}", path.display()))?;
        Flagger::new(&lexicon, review_min_severity).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The lexicon's version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of flag terms in the lexicon.
    pub fn term_count(&self) -> usize {
        self.term_count
    }

    /// Scan `original` (any length) and report its hits and summary.
    pub fn scan(&self, original: &str) -> FlagReport {
        let norm = Normalized::new(original);
        if norm.is_empty() {
            return FlagReport::default();
        }
        let chars: Vec<char> = norm.text.chars().collect();
        // (start, end, pattern) in matching-form chars
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        let mut excluded: Vec<(usize, usize)> = Vec::new();
        for m in self.ac.find_overlapping_iter(&norm.text) {
            let p = &self.patterns[m.pattern().as_usize()];
            let (s, e) = (norm.char_at_byte(m.start()), norm.char_at_byte(m.end()));
            if (p.ascii_start && s > 0 && chars[s - 1].is_ascii_alphanumeric())
                || (p.ascii_end && e < chars.len() && chars[e].is_ascii_alphanumeric())
            {
                continue;
            }
            if p.exclude {
                excluded.push((s, e));
            }
            if !p.entries.is_empty() {
                found.push((s, e, m.pattern().as_usize()));
            }
        }
        let mut raw_hits: Vec<(usize, usize, Flag, u8, usize)> = Vec::new();
        for &(s, e, pi) in &found {
            if excluded.iter().any(|&(xs, xe)| xs <= s && e <= xe) {
                continue;
            }
            for &(flag, sev) in &self.patterns[pi].entries {
                raw_hits.push((s, e, flag, sev, pi));
            }
        }
        // Drop hits strictly inside a longer hit of the same flag.
        let keep: Vec<bool> = raw_hits
            .iter()
            .map(|&(s, e, f, _, _)| {
                !raw_hits.iter().any(|&(s2, e2, f2, _, _)| f2 == f && s2 <= s && e <= e2 && (e2 - s2) > (e - s))
            })
            .collect();
        let mut hits: Vec<FlagHit> = raw_hits
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(&(s, e, flag, severity, pi), _)| {
                let (os, oe) = norm.original_span(s, e);
                FlagHit {
                    term: self.patterns[pi].term.clone(),
                    flag,
                    severity,
                    text: char_slice(original, os, oe).to_string(),
                    start: os,
                    end: oe,
                    negated: negation::is_negated(&chars, s),
                }
            })
            .collect();
        hits.sort_by_key(|a| (a.start, a.flag, a.end));
        hits.dedup();
        self.summarise(hits)
    }

    fn summarise(&self, hits: Vec<FlagHit>) -> FlagReport {
        let mut flags: Vec<Flag> = hits.iter().map(|h| h.flag).collect();
        flags.sort();
        flags.dedup();
        let max_severity = hits.iter().map(|h| h.severity).max().unwrap_or(0);
        let needs_review =
            hits.iter().any(|h| (!h.negated && h.severity >= self.review_min_severity) || h.flag.always_review());
        FlagReport { hits, flags, max_severity, needs_review }
    }
}

#[cfg(test)]
mod tests;
