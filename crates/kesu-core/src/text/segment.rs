//! Chinese word segmentation: jieba-rs with kesu's user dictionary.
//!
//! The default jieba dictionary splits many complaint and legal terms
//! (集体诉讼 → 集体/诉讼); `lexicons/user_dict.txt` adds them whole. The
//! [`Segmenter`] is built once at start-up and shared (it is `Send + Sync`).

use std::io::BufReader;
use std::path::Path;

use serde::Serialize;

/// One word of a segmented text. Offsets are Unicode char offsets into the
/// text that was segmented, `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Segment {
    pub word: String,
    pub start: usize,
    pub end: usize,
}

/// Errors from loading the user dictionary.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("cannot read user dictionary {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("user dictionary {path}: {message}")]
    Parse { path: String, message: String },
}

/// jieba with the default dictionary plus kesu's user dictionary.
pub struct Segmenter {
    jieba: jieba_rs::Jieba,
    user_words: usize,
}

impl Segmenter {
    /// Load the default dictionary and the user dictionary at `user_dict`
    /// (jieba format, `word [freq] [tag]` per line; lines starting with `#`
    /// and blank lines are skipped).
    pub fn load(user_dict: &Path) -> Result<Self, SegmentError> {
        let path = user_dict.display().to_string();
        let raw =
            std::fs::read_to_string(user_dict).map_err(|source| SegmentError::Io { path: path.clone(), source })?;
        Self::from_user_dict(&raw).map_err(|e| SegmentError::Parse { path, message: e.to_string() })
    }

    /// Build from user-dictionary text (same format as [`Segmenter::load`]).
    pub fn from_user_dict(raw: &str) -> Result<Self, crate::parse::ParseError> {
        let mut cleaned = String::with_capacity(raw.len());
        let mut user_words = 0;
        for (n, line) in raw.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let _word = parts.next();
            if let Some(freq) = parts.next() {
                if freq.parse::<usize>().is_err() {
                    return Err(crate::parse::ParseError::at(n + 1, format!("frequency {freq:?} is not a number")));
                }
            }
            cleaned.push_str(line);
            cleaned.push('\n');
            user_words += 1;
        }
        let mut jieba = jieba_rs::Jieba::new();
        jieba
            .load_dict(&mut BufReader::new(cleaned.as_bytes()))
            .map_err(|e| crate::parse::ParseError::whole(e.to_string()))?;
        Ok(Segmenter { jieba, user_words })
    }

    /// Number of entries loaded from the user dictionary.
    pub fn user_words(&self) -> usize {
        self.user_words
    }

    /// Segment `text` (with jieba's HMM for unknown words). Every char of the
    /// input belongs to exactly one segment, in order; whitespace runs come
    /// back as their own segments, so `segments.map(word).concat() == text`.
    pub fn segment(&self, text: &str) -> Vec<Segment> {
        self.jieba
            .cut(text, true)
            .into_iter()
            .map(|t| Segment { word: t.word.to_string(), start: t.start, end: t.end })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &Segmenter, t: &str) -> Vec<String> {
        s.segment(t).into_iter().map(|s| s.word).collect()
    }

    #[test]
    fn user_dictionary_keeps_terms_whole() {
        let plain = Segmenter::from_user_dict("").unwrap();
        let ours = Segmenter::from_user_dict("# comment\n集体诉讼 3000 n\n暴力催收 3000 n\n").unwrap();
        assert_eq!(ours.user_words(), 2);
        assert!(!words(&plain, "我们要集体诉讼").contains(&"集体诉讼".to_string()));
        assert!(words(&ours, "我们要集体诉讼").contains(&"集体诉讼".to_string()));
        assert!(words(&ours, "遭遇暴力催收").contains(&"暴力催收".to_string()));
    }

    #[test]
    fn segments_cover_the_text_with_char_offsets() {
        let s = Segmenter::from_user_dict("").unwrap();
        let text = "客服😀 不理人, ABC123!";
        let segs = s.segment(text);
        assert_eq!(segs.iter().map(|s| s.word.as_str()).collect::<String>(), text);
        let mut pos = 0;
        for seg in &segs {
            assert_eq!(seg.start, pos);
            assert_eq!(seg.end - seg.start, seg.word.chars().count());
            pos = seg.end;
        }
        assert_eq!(pos, text.chars().count());
    }

    #[test]
    fn bad_frequency_is_an_error_naming_the_line() {
        let err = Segmenter::from_user_dict("好词 12\n坏词 abc\n").err().unwrap();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn empty_text_gives_no_segments() {
        assert!(Segmenter::from_user_dict("").unwrap().segment("").is_empty());
    }

    // ---- Property tests (issue 14) ----

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use std::sync::OnceLock;

        fn plain() -> &'static Segmenter {
            static S: OnceLock<Segmenter> = OnceLock::new();
            S.get_or_init(|| Segmenter::from_user_dict("集体诉讼 3000 n\n").unwrap())
        }

        proptest! {
            // Each case builds a jieba dictionary (~0.1 s): few cases here, the fuzz target does more.
            #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

            /// Any user dictionary: Ok, or an error naming a real line (a bad
            /// frequency) or the whole file (jieba's own complaint); no panic.
            #[test]
            fn any_user_dict_parses_or_names_a_line(
                lines in prop::collection::vec(
                    prop_oneof!["\\PC{0,10}", "[a-z起诉 ]{1,6} [0-9a-z]{0,4}( [a-z]{0,3})?", Just("# c".to_string())],
                    0..8,
                )
            ) {
                let raw = lines.join("\n");
                if let Err(e) = Segmenter::from_user_dict(&raw) {
                    if let Some(l) = e.line {
                        prop_assert!(l >= 1 && l <= raw.lines().count(), "line {} of {:?}", l, raw);
                    }
                }
            }
        }

        proptest! {
            /// Any text: segments cover it char by char, in order.
            #[test]
            fn segments_cover_any_text(text in any::<String>()) {
                let segs = plain().segment(&text);
                let mut pos = 0;
                for seg in &segs {
                    prop_assert_eq!(seg.start, pos);
                    prop_assert_eq!(seg.end - seg.start, seg.word.chars().count());
                    pos = seg.end;
                }
                prop_assert_eq!(pos, text.chars().count());
                prop_assert_eq!(segs.iter().map(|s| s.word.as_str()).collect::<String>(), text);
            }
        }
    }
}
