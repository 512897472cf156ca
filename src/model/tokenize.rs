//! Tokenisation (Hugging Face `tokenizers`, XLM-R style Unigram) and windowing.

use anyhow::{anyhow, Result};
use tokenizers::Tokenizer;

pub struct TextTokenizer {
    tokenizer: Tokenizer,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub prefix: String,
}

impl TextTokenizer {
    pub fn from_json(json: &str, prefix: &str) -> Result<Self> {
        let tokenizer = Tokenizer::from_bytes(json.as_bytes()).map_err(|e| anyhow!("tokenizer: {e}"))?;
        let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| anyhow!("tokenizer lacks {t}"));
        Ok(Self { bos: id("<s>")?, eos: id("</s>")?, pad: id("<pad>")?, tokenizer, prefix: prefix.to_string() })
    }

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
