//! The encoder's default execution path: BERT over PACKED tokens.
//!
//! All windows of a batch are concatenated into one `[T, h]` activation
//! matrix (no padding): embeddings, the Q/K/V, output and FFN products,
//! GELU and LayerNorm work per token, so each of them is ONE product over
//! all `T` tokens (each weight panel is read once per batch); only attention
//! looks at the per-window structure (one task per window and head). The
//! matrices are Q4_0 dequantised to f32 at load and packed into 32-column
//! panels ([`kernels::PackedMatrix`]); threads are rayon's
//! (`RAYON_NUM_THREADS`). Numerically it is the candle path
//! ([`super::bert::BertModel`], kept for the other weight formats and as a
//! reference in tests) up to f32 rounding.

use anyhow::{bail, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use rayon::prelude::*;

use super::bert::BertConfig;
use super::format::ModelFile;
use super::kernels::{self, Level, PackedMatrix, SendPtr, NR};

struct Layer {
    qkv: PackedMatrix,
    attn_out: PackedMatrix,
    attn_ln: (Vec<f32>, Vec<f32>),
    ffn_in: PackedMatrix,
    ffn_out: PackedMatrix,
    out_ln: (Vec<f32>, Vec<f32>),
}

/// Word embedding rows: Q4_0 blocks decoded on lookup, or plain f32.
enum Words {
    Q4_0(Vec<u8>),
    F32(Vec<f32>),
}

/// The BERT encoder with weights dequantised to f32 and packed for
/// [`kernels::linear`]; immutable after loading, so one instance serves any
/// number of threads.
pub struct PackedBert {
    pub config: BertConfig,
    words: Words,
    /// Position embeddings plus the token-type-0 embedding, `[max_pos, h]`.
    pos_type: Vec<f32>,
    emb_ln: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    level: Level,
}

fn vec_of(t: &QTensor) -> Result<Vec<f32>> {
    Ok(t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
}

fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

impl PackedBert {
    /// Loads and packs the encoder of `f`. `Ok(None)` when the shapes do not
    /// suit the kernels (head size not a multiple of 32): the caller then uses
    /// the candle path. Errors on missing tensors or inconsistent shapes.
    pub fn load(f: &ModelFile) -> Result<Option<Self>> {
        let c = f.config()?;
        let (h, ff) = (c.hidden_size, c.intermediate_size);
        if c.num_attention_heads == 0 || h % c.num_attention_heads != 0 || (h / c.num_attention_heads) % NR != 0 {
            return Ok(None);
        }
        let we = f.tensor("embeddings.word_embeddings.weight")?;
        let (v, wh) = we.shape().dims2()?;
        if v != c.vocab_size || wh != h {
            bail!("word embeddings are [{v},{wh}], config says [{},{h}]", c.vocab_size);
        }
        let words = match we.dtype() {
            GgmlDType::Q4_0 if h % 32 == 0 => Words::Q4_0(we.data()?.into_owned()),
            _ => Words::F32(vec_of(we)?),
        };
        let pos = f.f32_vec("embeddings.position_embeddings.weight")?;
        let tt = f.f32_vec("embeddings.token_type_embeddings.weight")?;
        // Shapes checked here, once, so that no request can index past them.
        if pos.len() < c.max_position_embeddings * h || tt.len() < h {
            bail!(
                "position embeddings hold {} values and token types {}: the config needs {} x {h} and {h}",
                pos.len(),
                tt.len(),
                c.max_position_embeddings
            );
        }
        let pos_type: Vec<f32> = pos.chunks_exact(h).flat_map(|r| r.iter().zip(&tt[..h]).map(|(a, b)| a + b)).collect();
        let ln = |p: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            let (w, b) = (f.f32_vec(&format!("{p}.weight"))?, f.f32_vec(&format!("{p}.bias"))?);
            if w.len() != h || b.len() != h {
                bail!("{p} has {} weights and {} biases, hidden size is {h}", w.len(), b.len());
            }
            Ok((w, b))
        };
        let lin = |ps: &[String], n: usize, k: usize| -> Result<PackedMatrix> {
            let mut w = Vec::with_capacity(n * k);
            let mut b = Vec::with_capacity(n);
            for p in ps {
                w.extend(vec_of(f.tensor(&format!("{p}.weight"))?)?);
                b.extend(f.f32_vec(&format!("{p}.bias"))?);
            }
            if w.len() != n * k || b.len() != n {
                bail!("{ps:?}: unexpected shapes");
            }
            Ok(PackedMatrix::from_out_in(&w, n, k, &b))
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                Ok(Layer {
                    qkv: lin(&["query", "key", "value"].map(|n| format!("{p}.attention.self.{n}")), 3 * h, h)?,
                    attn_out: lin(&[format!("{p}.attention.output.dense")], h, h)?,
                    attn_ln: ln(&format!("{p}.attention.output.LayerNorm"))?,
                    ffn_in: lin(&[format!("{p}.intermediate.dense")], ff, h)?,
                    ffn_out: lin(&[format!("{p}.output.dense")], h, ff)?,
                    out_ln: ln(&format!("{p}.output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Self {
            emb_ln: ln("embeddings.LayerNorm")?,
            config: c,
            words,
            pos_type,
            layers,
            level: kernels::level(),
        }))
    }

    /// Runs the kernels at `level`, capped at the detected one (never an
    /// instruction set this CPU lacks); for tests and measurements.
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = level.min(kernels::detected());
        self
    }

    fn word_row(&self, id: u32, out: &mut [f32]) -> Result<()> {
        let h = self.config.hidden_size;
        if id as usize >= self.config.vocab_size {
            bail!("token id {id} out of range");
        }
        match &self.words {
            Words::F32(w) => out.copy_from_slice(&w[id as usize * h..(id as usize + 1) * h]),
            Words::Q4_0(bytes) => {
                let row = &bytes[id as usize * (h / 32) * 18..][..(h / 32) * 18];
                for (blk, o) in row.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
                    let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                    for (j, &q) in blk[2..].iter().enumerate() {
                        o[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
                        o[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
                    }
                }
            }
        }
        Ok(())
    }

    /// Encodes the windows `seqs` (token ids, `<s>`/`</s>` included) together;
    /// returns, per window, the SUM of its final hidden states. Errors on a
    /// window longer than the context or a token id outside the vocabulary.
    pub fn forward_sums(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        self.forward_sums_timed(seqs, None)
    }

    /// [`Self::forward_sums`], adding the wall time of each step to `times`
    /// when given (for profiling; the results are the same).
    pub fn forward_sums_timed(&self, seqs: &[&[u32]], mut times: Option<&mut OpTimes>) -> Result<Vec<Vec<f32>>> {
        let mut clock = std::time::Instant::now();
        let mut lap = |op: Op| {
            if let Some(t) = times.as_deref_mut() {
                let now = std::time::Instant::now();
                t.0[op as usize] += now - clock;
                clock = now;
            }
        };
        let c = &self.config;
        let (h, ff, nh) = (c.hidden_size, c.intermediate_size, c.num_attention_heads);
        let hd = h / nh;
        let lvl = self.level;
        let mut starts = Vec::with_capacity(seqs.len() + 1);
        let mut t = 0;
        for s in seqs {
            if s.len() > c.max_position_embeddings {
                bail!("sequence of {} tokens exceeds the context length {}", s.len(), c.max_position_embeddings);
            }
            starts.push(t);
            t += s.len();
        }
        starts.push(t);
        let mut x = vec![0f32; t * h];
        for (s, ids) in seqs.iter().enumerate() {
            for (p, &id) in ids.iter().enumerate() {
                let row = &mut x[(starts[s] + p) * h..(starts[s] + p + 1) * h];
                self.word_row(id, row)?;
                for (v, a) in row.iter_mut().zip(&self.pos_type[p * h..(p + 1) * h]) {
                    *v += a;
                }
            }
        }
        let eps = c.layer_norm_eps as f32;
        kernels::add_layer_norm(lvl, &mut x, None, &self.emb_ln.0, &self.emb_ln.1, eps);
        lap(Op::Embed);
        let mut qkv = vec![0f32; t * 3 * h];
        let mut ctx = vec![0f32; t * h];
        let mut tmp = vec![0f32; t * h];
        let mut mid = vec![0f32; t * ff];
        let scale = 1.0 / (hd as f32).sqrt();
        for layer in &self.layers {
            kernels::linear(lvl, &x, t, &layer.qkv, &mut qkv);
            lap(Op::Qkv);
            attention(lvl, &qkv, &starts, h, nh, scale, &mut ctx);
            lap(Op::Attention);
            kernels::linear(lvl, &ctx, t, &layer.attn_out, &mut tmp);
            lap(Op::AttnOut);
            kernels::add_layer_norm(lvl, &mut x, Some(&tmp), &layer.attn_ln.0, &layer.attn_ln.1, eps);
            lap(Op::LayerNorm);
            kernels::linear(lvl, &x, t, &layer.ffn_in, &mut mid);
            lap(Op::FfnIn);
            gelu(lvl, &mut mid, ff);
            lap(Op::Gelu);
            kernels::linear(lvl, &mid, t, &layer.ffn_out, &mut tmp);
            lap(Op::FfnOut);
            kernels::add_layer_norm(lvl, &mut x, Some(&tmp), &layer.out_ln.0, &layer.out_ln.1, eps);
            lap(Op::LayerNorm);
        }
        let sums = starts
            .windows(2)
            .map(|w| {
                let mut s = vec![0f32; h];
                for row in x[w[0] * h..w[1] * h].chunks_exact(h) {
                    for (a, v) in s.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                s
            })
            .collect();
        lap(Op::Pool);
        Ok(sums)
    }
}

/// The steps of the forward pass that [`PackedBert::forward_sums_timed`] times.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// Embedding lookup (Q4_0 rows decoded) and the embedding LayerNorm.
    Embed,
    /// The fused query/key/value product.
    Qkv,
    /// Scores, softmax and the weighted sum of values, per window and head.
    Attention,
    /// The attention output product.
    AttnOut,
    /// Residual additions and LayerNorms.
    LayerNorm,
    /// The FFN input product (h -> 4h).
    FfnIn,
    /// GELU on the FFN activations.
    Gelu,
    /// The FFN output product (4h -> h).
    FfnOut,
    /// Summing the final states per window.
    Pool,
}

/// Accumulated wall time per [`Op`].
#[derive(Debug, Clone, Default)]
pub struct OpTimes(pub [std::time::Duration; 9]);

impl OpTimes {
    /// `(name, seconds)` per op, in forward order.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        const NAMES: [&str; 9] =
            ["embed", "qkv", "attention", "attn_out", "add_layer_norm", "ffn_in", "gelu", "ffn_out", "pool"];
        NAMES.iter().zip(&self.0).map(|(n, d)| (*n, d.as_secs_f64())).collect()
    }
}

fn gelu(lvl: Level, mid: &mut [f32], ff: usize) {
    let rows = mid.len() / ff;
    if rows < 16 || rayon::current_num_threads() < 2 {
        kernels::gelu_inplace(lvl, mid);
    } else {
        let chunk = rows.div_ceil(rayon::current_num_threads()) * ff;
        mid.par_chunks_mut(chunk).for_each(|m| kernels::gelu_inplace(lvl, m));
    }
}

/// Scaled dot-product attention of each window with itself, per head:
/// `qkv` `[T, 3h]` (query | key | value) → `ctx` `[T, h]`.
fn attention(lvl: Level, qkv: &[f32], starts: &[usize], h: usize, nh: usize, scale: f32, ctx: &mut [f32]) {
    let hd = h / nh;
    let ld = 3 * h;
    let nseq = starts.len() - 1;
    let out = SendPtr(ctx.as_mut_ptr());
    let task = |i: usize| {
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw pointer field
        let out = out;
        let (s, head) = (i / nh, i % nh);
        let (s0, l) = (starts[s], starts[s + 1] - starts[s]);
        if l == 0 {
            return;
        }
        let lp = l.div_ceil(NR) * NR;
        // K^T of this head, [hd, lp], zero-padded columns.
        let mut kt = vec![0f32; hd * lp];
        for j in 0..l {
            let k = &qkv[(s0 + j) * ld + h + head * hd..][..hd];
            for (d, &v) in k.iter().enumerate() {
                kt[d * lp + j] = v;
            }
        }
        let mut scores = vec![0f32; l * lp];
        let q = qkv[s0 * ld + head * hd..].as_ptr();
        for p in 0..lp / NR {
            // SAFETY: q rows hold hd values at stride ld; kt/scores are [.., lp].
            unsafe {
                kernels::gemm_panel(
                    lvl,
                    l,
                    hd,
                    q,
                    ld,
                    kt[p * NR..].as_ptr(),
                    lp,
                    scores[p * NR..].as_mut_ptr(),
                    lp,
                    NR,
                    None,
                )
            };
        }
        for row in scores.chunks_exact_mut(lp) {
            kernels::softmax_scaled(lvl, &mut row[..l], scale);
        }
        let v = qkv[s0 * ld + 2 * h + head * hd..].as_ptr();
        for p in 0..hd / NR {
            // SAFETY: v rows hold hd (a multiple of 32) values at stride ld; this
            // task alone writes rows s0..s0+l, columns head*hd..(head+1)*hd of ctx.
            unsafe {
                kernels::gemm_panel(
                    lvl,
                    l,
                    l,
                    scores.as_ptr(),
                    lp,
                    v.add(p * NR),
                    ld,
                    out.0.add(s0 * h + head * hd + p * NR),
                    h,
                    NR,
                    None,
                )
            };
        }
    };
    let tasks = nseq * nh;
    let macs: usize = starts.windows(2).map(|w| (w[1] - w[0]).pow(2)).sum::<usize>() * 2 * h;
    if macs < (1 << 18) || rayon::current_num_threads() < 2 {
        (0..tasks).for_each(task);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}
