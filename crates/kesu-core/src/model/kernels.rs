//! CPU kernels of the packed-token encoder ([`super::packed`]): a matrix
//! product over weights pre-packed into 32-column panels, and the
//! element-wise parts (exp, GELU, softmax, LayerNorm) written so that the
//! compiler vectorises them.
//!
//! Each kernel exists at three levels, chosen once at run time ([`level`]):
//! AVX-512F (x86-64-v4; hand-written micro-kernel, 6 rows x 32 columns in 12
//! zmm accumulators), AVX2+FMA (the portable code compiled for it) and
//! portable Rust. `KESU_SIMD=portable|avx2|avx512` forces a lower level (for
//! tests and measurements). All levels compute in f32 and agree to rounding.

use std::sync::OnceLock;

use rayon::prelude::*;

/// Columns per weight panel (two zmm registers).
pub const NR: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Portable,
    Avx2,
    Avx512,
}

/// The best level this CPU supports (lowered by `KESU_SIMD`).
pub fn level() -> Level {
    static L: OnceLock<Level> = OnceLock::new();
    *L.get_or_init(|| {
        let best = detected();
        match std::env::var("KESU_SIMD").as_deref() {
            Ok("portable") => Level::Portable,
            Ok("avx2") => best.min(Level::Avx2),
            _ => best,
        }
    })
}

/// The best level this CPU supports (detected once).
pub fn detected() -> Level {
    static D: OnceLock<Level> = OnceLock::new();
    *D.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Level::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Level::Avx2;
            }
        }
        Level::Portable
    })
}

/// `lvl`, lowered to what this CPU supports: every safe function here takes a
/// [`Level`] from its caller and runs it through this first, so no level can
/// make it execute instructions the CPU lacks.
#[inline]
fn usable(lvl: Level) -> Level {
    lvl.min(detected())
}

/// A `[k, n]` right-hand matrix (`x W^T` with `W` `[n, k]`) stored as
/// `ceil(n/32)` panels of `k x 32` values (zero-padded), plus a bias of `n`.
pub struct PackedMatrix {
    pub k: usize,
    pub n: usize,
    panels: Vec<f32>,
    bias: Vec<f32>,
}

impl PackedMatrix {
    /// From `w` `[n, k]` row-major (PyTorch's `[out, in]`) and `bias` `[n]`.
    pub fn from_out_in(w: &[f32], n: usize, k: usize, bias: &[f32]) -> Self {
        assert_eq!(w.len(), n * k);
        assert_eq!(bias.len(), n);
        let np = n.div_ceil(NR);
        let mut panels = vec![0f32; np * k * NR];
        for o in 0..n {
            let (p, j) = (o / NR, o % NR);
            let dst = &mut panels[p * k * NR..(p + 1) * k * NR];
            for (i, &v) in w[o * k..(o + 1) * k].iter().enumerate() {
                dst[i * NR + j] = v;
            }
        }
        let mut b = vec![0f32; np * NR];
        b[..n].copy_from_slice(bias);
        Self { k, n, panels, bias: b }
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.panels[p * self.k * NR..(p + 1) * self.k * NR]
    }
}

/// A raw pointer that may cross threads (writes go to disjoint parts).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Multiply-adds below which a product runs on the calling thread only.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// `out[t, n] = x[t, k] · W + bias` (f32; each output is the same sum in the
/// same order whatever the thread count). Work items are the 32-column weight
/// panels, each over all `t` rows (the panel stays in L2 while `x` streams
/// past it; blocking the rows too measured no faster), run in parallel on the
/// rayon pool when the product is big enough.
pub fn linear(lvl: Level, x: &[f32], t: usize, w: &PackedMatrix, out: &mut [f32]) {
    let lvl = usable(lvl);
    assert!(x.len() >= t * w.k && out.len() >= t * w.n);
    let np = w.n.div_ceil(NR);
    let ptr = SendPtr(out.as_mut_ptr());
    let run = |p: usize| {
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw pointer field
        let ptr = ptr;
        let cols = (w.n - p * NR).min(NR);
        // SAFETY: panel p writes only columns [p*32, p*32+cols) of each row of `out`.
        unsafe {
            gemm_panel(
                lvl,
                t,
                w.k,
                x.as_ptr(),
                w.k,
                w.panel(p).as_ptr(),
                NR,
                ptr.0.add(p * NR),
                w.n,
                cols,
                Some(&w.bias[p * NR..]),
            );
        }
    };
    if t * w.k * w.n < PARALLEL_MIN_MACS || rayon::current_num_threads() < 2 {
        (0..np).for_each(run);
    } else {
        (0..np).into_par_iter().for_each(run);
    }
}

/// `c[m, 0..cols] = a[m, k] · b[k, 0..32]` (+ bias), one 32-column panel.
/// `b` rows must be readable for 32 values; `c` gets `cols <= 32` columns.
///
/// # Safety
/// The pointers must be valid for the given shapes and strides, and this CPU
/// must support `lvl` (`lvl <= detected()`).
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_panel(
    lvl: Level,
    m: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: Option<&[f32]>,
) {
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    match lvl {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => avx512::panel(m, k, a, lda, b, ldb, c, ldc, cols, bias),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => panel_avx2(m, k, a, lda, b, ldb, c, ldc, cols, bias),
        _ => panel_generic::<4, false>(m, k, a, lda, b, ldb, c, ldc, cols, bias),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn panel_avx2(
    m: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: *const f32,
) {
    panel_generic::<3, true>(m, k, a, lda, b, ldb, c, ldc, cols, bias)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn panel_generic<const MR: usize, const FMA: bool>(
    m: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: *const f32,
) {
    let mut r0 = 0;
    while r0 < m {
        let rows = (m - r0).min(MR);
        let mut acc = [[0f32; NR]; MR];
        if !bias.is_null() {
            for row in acc.iter_mut() {
                row.copy_from_slice(std::slice::from_raw_parts(bias, NR));
            }
        }
        let ar = a.add(r0 * lda);
        for kk in 0..k {
            let w = &*(b.add(kk * ldb) as *const [f32; NR]);
            for (r, row) in acc.iter_mut().enumerate().take(rows) {
                let av = *ar.add(r * lda + kk);
                for j in 0..NR {
                    row[j] = if FMA { av.mul_add(w[j], row[j]) } else { row[j] + av * w[j] };
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            std::ptr::copy_nonoverlapping(row.as_ptr(), c.add((r0 + r) * ldc), cols);
        }
        r0 += rows;
    }
}

/// The AVX-512F micro-kernel: tiles of up to 6 rows x 32 columns held in
/// 12 zmm accumulators. Written with straight-line code and wrapping pointer
/// arithmetic so that it stays fast in the dev profile too (no per-element
/// overflow or pointer checks in the inner loop).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::NR;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn panel(
        m: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        bias: *const f32,
    ) {
        let m0: __mmask16 = if cols >= 16 { 0xffff } else { ((1u32 << cols) - 1) as u16 };
        let m1: __mmask16 = if cols <= 16 { 0 } else { ((1u32 << (cols - 16)) - 1) as u16 };
        let t = Tile { k, lda, b, ldb, ldc, full: cols == NR, m0, m1, bias };
        let mut r0 = 0;
        while r0 < m {
            let ar = a.wrapping_add(r0 * lda);
            let cr = c.wrapping_add(r0 * ldc);
            match m - r0 {
                1 => t.rows1(ar, cr),
                2 => t.rows2(ar, cr),
                3 => t.rows3(ar, cr),
                4 => t.rows4(ar, cr),
                5 => t.rows5(ar, cr),
                _ => t.rows6(ar, cr),
            }
            r0 += 6;
        }
    }

    struct Tile {
        k: usize,
        lda: usize,
        b: *const f32,
        ldb: usize,
        ldc: usize,
        full: bool,
        m0: __mmask16,
        m1: __mmask16,
        bias: *const f32,
    }

    /// `fn $name(a, c)`: rows `$r` of `c` = rows of `a` times the panel (+ bias).
    macro_rules! tile {
        ($name:ident: $(($r:literal, $pa:ident, $lo:ident, $hi:ident)),+) => {
            #[inline(always)]
            unsafe fn $name(&self, a: *const f32, c: *mut f32) {
                let (blo, bhi) = if self.bias.is_null() {
                    (_mm512_setzero_ps(), _mm512_setzero_ps())
                } else {
                    (_mm512_loadu_ps(self.bias), _mm512_loadu_ps(self.bias.wrapping_add(16)))
                };
                $(
                    let mut $lo = blo;
                    let mut $hi = bhi;
                    let mut $pa = a.wrapping_add($r * self.lda);
                )+
                let mut bp = self.b;
                let ldb = self.ldb;
                let mut kk = self.k;
                while kk > 0 {
                    let w0 = _mm512_loadu_ps(bp);
                    let w1 = _mm512_loadu_ps(bp.wrapping_add(16));
                    $(
                        let av = _mm512_set1_ps(*$pa);
                        $lo = _mm512_fmadd_ps(av, w0, $lo);
                        $hi = _mm512_fmadd_ps(av, w1, $hi);
                        $pa = $pa.wrapping_add(1);
                    )+
                    bp = bp.wrapping_add(ldb);
                    kk -= 1;
                }
                if self.full {
                    $(
                        let cr = c.wrapping_add($r * self.ldc);
                        _mm512_storeu_ps(cr, $lo);
                        _mm512_storeu_ps(cr.wrapping_add(16), $hi);
                    )+
                } else {
                    $(
                        let cr = c.wrapping_add($r * self.ldc);
                        _mm512_mask_storeu_ps(cr, self.m0, $lo);
                        _mm512_mask_storeu_ps(cr.wrapping_add(16), self.m1, $hi);
                    )+
                }
            }
        };
    }

    impl Tile {
        tile!(rows1: (0, p0, l0, h0));
        tile!(rows2: (0, p0, l0, h0), (1, p1, l1, h1));
        tile!(rows3: (0, p0, l0, h0), (1, p1, l1, h1), (2, p2, l2, h2));
        tile!(rows4: (0, p0, l0, h0), (1, p1, l1, h1), (2, p2, l2, h2), (3, p3, l3, h3));
        tile!(rows5: (0, p0, l0, h0), (1, p1, l1, h1), (2, p2, l2, h2), (3, p3, l3, h3), (4, p4, l4, h4));
        tile!(rows6: (0, p0, l0, h0), (1, p1, l1, h1), (2, p2, l2, h2), (3, p3, l3, h3), (4, p4, l4, h4), (5, p5, l5, h5));
    }
}

// ---------------------------------------------------------------- element-wise

/// Runs `$body` (an expression using the slice arguments) compiled for the
/// given level: the same portable code, vectorised by the compiler.
macro_rules! dispatch {
    ($lvl:expr, fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,fma")]
        unsafe fn v4($($arg: $ty),*) $body
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v3($($arg: $ty),*) $body
        fn v1($($arg: $ty),*) $body
        match $lvl {
            // SAFETY: `usable` capped the level at what this CPU supports.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { v4($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { v3($($arg),*) },
            _ => v1($($arg),*),
        }
    }};
}

/// `e^x` for `x <= 88` (Cephes `expf` polynomial after reduction by ln 2;
/// relative error ~1e-7; inputs below -87 give ~1e-38 instead of 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    // The integer sits in the low mantissa bits (no float->int conversion).
    let ni = shifted.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let n = shifted - MAGIC;
    let r = (x - n * EXP_C1) - n * EXP_C2;
    let mut p = EXP_P[0];
    for &c in &EXP_P[1..] {
        p = p * r + c;
    }
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((ni + 127) as u32) << 23)
}

const EXP_C1: f32 = 0.693_359_4;
const EXP_C2: f32 = -2.121_944_4e-4;
const EXP_P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];
const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [1.061_405_4, -1.453_152_1, 1.421_413_7, -0.284_496_72, 0.254_829_6];

/// Exact (erf) GELU, `0.5 x (1 + erf(x / sqrt 2))`, erf by Abramowitz &
/// Stegun 7.1.26 (|error| <= 1.5e-7).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + ERF_P * a);
    let mut p = ERF_A[0];
    for &c in &ERF_A[1..] {
        p = p * t + c;
    }
    let y = 1.0 - p * t * exp(-a * a);
    0.5 * x * (1.0 + y.copysign(z))
}

/// `x = gelu(x)` element-wise ([`gelu`] at every level, up to rounding).
pub fn gelu_inplace(lvl: Level, x: &mut [f32]) {
    let lvl = usable(lvl);
    match lvl {
        // SAFETY: `usable` capped the level at what this CPU supports.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { simd512::gelu_inplace(x) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { simd256::gelu_inplace(x) },
        _ => x.iter_mut().for_each(|v| *v = gelu(*v)),
    }
}

const LANES: usize = 16;

#[inline(always)]
fn lanes_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for j in 0..LANES {
            acc[j] += c[j];
        }
    }
    acc.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
}

/// Softmax of `x` times `scale` (`softmax(scale * x)`), in place; the
/// values sum to 1 up to rounding. `x` must not be empty.
pub fn softmax_scaled(lvl: Level, x: &mut [f32], scale: f32) {
    let lvl = usable(lvl);
    match lvl {
        // SAFETY: `usable` capped the level at what this CPU supports.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { simd512::softmax_scaled(x, scale) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { simd256::softmax_scaled(x, scale) },
        _ => {
            let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0f32;
            for v in x.iter_mut() {
                *v = exp((*v - m) * scale);
                sum += *v;
            }
            let inv = 1.0 / sum;
            x.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// AVX-512F versions of [`exp`], [`gelu`] and the softmax (16 lanes; the
/// tail through masked loads and stores).
#[cfg(target_arch = "x86_64")]
mod simd512 {
    use super::{ERF_A, ERF_P, EXP_C1, EXP_C2, EXP_P};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0)), _mm512_set1_ps(88.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C1), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C2), r);
        let mut p = _mm512_set1_ps(EXP_P[0]);
        for &c in &EXP_P[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
        _mm512_scalef_ps(y, n)
    }

    #[inline(always)]
    unsafe fn gelu(x: __m512) -> __m512 {
        let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        // Bit operations on the integer view (the `_ps` forms need AVX512DQ).
        let sign = _mm512_set1_epi32(i32::MIN);
        let zi = _mm512_castps_si512(z);
        let a = _mm512_castsi512_ps(_mm512_andnot_si512(sign, zi));
        let one = _mm512_set1_ps(1.0);
        let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(ERF_P), a, one));
        let mut p = _mm512_set1_ps(ERF_A[0]);
        for &c in &ERF_A[1..] {
            p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c));
        }
        let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
        let y = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), e, one); // erf(|z|)
                                                               // erf(z): the sign of z on y >= 0.
        let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), _mm512_and_si512(zi, sign)));
        _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), x), _mm512_add_ps(one, erf))
    }

    #[inline(always)]
    fn tail_mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_inplace(x: &mut [f32]) {
        let p = x.as_mut_ptr();
        let n = x.len();
        let mut i = 0;
        while i + 16 <= n {
            _mm512_storeu_ps(p.add(i), gelu(_mm512_loadu_ps(p.add(i))));
            i += 16;
        }
        if i < n {
            let m = tail_mask(n - i);
            _mm512_mask_storeu_ps(p.add(i), m, gelu(_mm512_maskz_loadu_ps(m, p.add(i))));
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_scaled(x: &mut [f32], scale: f32) {
        let p = x.as_mut_ptr();
        let n = x.len();
        let full = n / 16 * 16;
        let m_tail = tail_mask(n - full);
        let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < full {
            mx = _mm512_max_ps(mx, _mm512_loadu_ps(p.add(i)));
            i += 16;
        }
        if full < n {
            mx = _mm512_mask_max_ps(mx, m_tail, mx, _mm512_maskz_loadu_ps(m_tail, p.add(full)));
        }
        let m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        let s = _mm512_set1_ps(scale);
        let mut sum = _mm512_setzero_ps();
        i = 0;
        while i < full {
            let e = exp(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), m), s));
            _mm512_storeu_ps(p.add(i), e);
            sum = _mm512_add_ps(sum, e);
            i += 16;
        }
        if full < n {
            let e = exp(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m_tail, p.add(full)), m), s));
            _mm512_mask_storeu_ps(p.add(full), m_tail, e);
            sum = _mm512_mask_add_ps(sum, m_tail, sum, e);
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
        i = 0;
        while i < full {
            _mm512_storeu_ps(p.add(i), _mm512_mul_ps(_mm512_loadu_ps(p.add(i)), inv));
            i += 16;
        }
        if full < n {
            _mm512_mask_storeu_ps(p.add(full), m_tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(m_tail, p.add(full)), inv));
        }
    }
}

/// AVX2+FMA versions of [`exp`], [`gelu`] and the softmax (8 lanes; the
/// tail through the scalar code).
#[cfg(target_arch = "x86_64")]
mod simd256 {
    use super::{ERF_A, ERF_P, EXP_C1, EXP_C2, EXP_P};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn exp(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0)), _mm256_set1_ps(88.0));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C1), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C2), r);
        let mut p = _mm256_set1_ps(EXP_P[0]);
        for &c in &EXP_P[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_mul_ps(y, _mm256_castsi256_ps(pow2))
    }

    #[inline(always)]
    unsafe fn gelu(x: __m256) -> __m256 {
        let z = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let sign = _mm256_set1_ps(-0.0);
        let a = _mm256_andnot_ps(sign, z);
        let one = _mm256_set1_ps(1.0);
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(ERF_P), a, one));
        let mut p = _mm256_set1_ps(ERF_A[0]);
        for &c in &ERF_A[1..] {
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(c));
        }
        let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
        let y = _mm256_fnmadd_ps(_mm256_mul_ps(p, t), e, one);
        let erf = _mm256_or_ps(y, _mm256_and_ps(z, sign));
        _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5), x), _mm256_add_ps(one, erf))
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_inplace(x: &mut [f32]) {
        let p = x.as_mut_ptr();
        let full = x.len() / 8 * 8;
        let mut i = 0;
        while i < full {
            _mm256_storeu_ps(p.add(i), gelu(_mm256_loadu_ps(p.add(i))));
            i += 8;
        }
        x[full..].iter_mut().for_each(|v| *v = super::gelu(*v));
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softmax_scaled(x: &mut [f32], scale: f32) {
        let p = x.as_mut_ptr();
        let full = x.len() / 8 * 8;
        let mut mx = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < full {
            mx = _mm256_max_ps(mx, _mm256_loadu_ps(p.add(i)));
            i += 8;
        }
        let m = x[full..].iter().fold(hmax(mx), |a, &b| a.max(b));
        let (mv, s) = (_mm256_set1_ps(m), _mm256_set1_ps(scale));
        let mut sum = _mm256_setzero_ps();
        i = 0;
        while i < full {
            let e = exp(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv), s));
            _mm256_storeu_ps(p.add(i), e);
            sum = _mm256_add_ps(sum, e);
            i += 8;
        }
        let mut total = hsum(sum);
        for v in x[full..].iter_mut() {
            *v = super::exp((*v - m) * scale);
            total += *v;
        }
        let inv = 1.0 / total;
        let iv = _mm256_set1_ps(inv);
        i = 0;
        while i < full {
            _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), iv));
            i += 8;
        }
        x[full..].iter_mut().for_each(|v| *v *= inv);
    }
}

/// Row-wise `x = LayerNorm(x + y)` over rows of `w.len()` values.
pub fn add_layer_norm(lvl: Level, x: &mut [f32], y: Option<&[f32]>, w: &[f32], b: &[f32], eps: f32) {
    let lvl = usable(lvl);
    let h = w.len();
    let rows = x.len() / h;
    let run = |x: &mut [f32], y: Option<&[f32]>| {
        dispatch!(
            lvl,
            fn f(x: &mut [f32], y: Option<&[f32]>, w: &[f32], b: &[f32], eps: f32) {
                let h = w.len();
                for (r, row) in x.chunks_exact_mut(h).enumerate() {
                    if let Some(y) = y {
                        for (v, &a) in row.iter_mut().zip(&y[r * h..(r + 1) * h]) {
                            *v += a;
                        }
                    }
                    let mean = lanes_sum(row) / h as f32;
                    for v in row.iter_mut() {
                        *v -= mean;
                    }
                    let mut sq = [0f32; LANES];
                    let mut it = row.chunks_exact(LANES);
                    for c in &mut it {
                        for j in 0..LANES {
                            sq[j] += c[j] * c[j];
                        }
                    }
                    let var = (sq.iter().sum::<f32>() + it.remainder().iter().map(|v| v * v).sum::<f32>()) / h as f32;
                    let inv = 1.0 / (var + eps).sqrt();
                    for ((v, &g), &bb) in row.iter_mut().zip(w).zip(b) {
                        *v = *v * inv * g + bb;
                    }
                }
            }
        )
    };
    let chunk = rows.div_ceil(rayon::current_num_threads().max(1)).max(1) * h;
    if rows * h < 64 * 384 || rayon::current_num_threads() < 2 {
        run(x, y);
    } else {
        x.par_chunks_mut(chunk).enumerate().for_each(|(i, xc)| run(xc, y.map(|y| &y[i * chunk..])));
    }
}

/// erf by its power series in double precision (|x| <= 6): the exact
/// reference the GELU tests (here and in `bert.rs`) compare against.
#[cfg(test)]
pub(crate) fn erf_series(x: f64) -> f64 {
    if x.abs() > 5.9 {
        return x.signum();
    }
    let (mut sum, mut term, mut n) = (x, x, 0.0f64);
    while term.abs() > 1e-17 * sum.abs().max(1e-300) {
        n += 1.0;
        term *= 2.0 * x * x / (2.0 * n + 1.0);
        sum += term;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> Vec<Level> {
        [Level::Portable, Level::Avx2, Level::Avx512].into_iter().filter(|&l| l <= detected()).collect()
    }

    #[test]
    fn exp_is_accurate() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 3e-7 * want + 1e-37, "exp({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn linear_matches_naive_at_every_level() {
        let (t, k, n) = (13, 70, 75); // odd sizes: partial tiles and panels
        let x: Vec<f32> = (0..t * k).map(|i| ((i * 7919) % 113) as f32 / 57.0 - 1.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 97) as f32 / 49.0 - 1.0).collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
        let p = PackedMatrix::from_out_in(&w, n, k, &bias);
        for lvl in levels() {
            let mut out = vec![f32::NAN; t * n];
            linear(lvl, &x, t, &p, &mut out);
            for r in 0..t {
                for o in 0..n {
                    let want: f32 = bias[o] + (0..k).map(|i| x[r * k + i] * w[o * k + i]).sum::<f32>();
                    let got = out[r * n + o];
                    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "{lvl:?} [{r},{o}]: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn softmax_gelu_layer_norm_agree_across_levels() {
        let base: Vec<f32> = (0..3 * 40).map(|i| ((i * 31) % 17) as f32 / 3.0 - 2.5).collect();
        let w: Vec<f32> = (0..40).map(|i| 1.0 + i as f32 / 100.0).collect();
        let b: Vec<f32> = (0..40).map(|i| i as f32 / 50.0).collect();
        let run = |lvl: Level| {
            let mut s = base.clone();
            softmax_scaled(lvl, &mut s[..37], 0.125);
            let mut g = base.clone();
            gelu_inplace(lvl, &mut g);
            let mut l = base.clone();
            add_layer_norm(lvl, &mut l, Some(&base), &w, &b, 1e-12);
            (s, g, l)
        };
        let (s, g, l) = run(Level::Portable);
        assert!((s[..37].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for (x, y) in base.iter().zip(&g) {
            let want = 0.5 * x * (1.0 + super::erf_series(*x as f64 / std::f64::consts::SQRT_2) as f32);
            assert!((y - want).abs() < 1e-6, "gelu({x}) = {y}, want {want}");
        }
        for lvl in levels() {
            let (s2, g2, l2) = run(lvl);
            for (a, b) in s.iter().chain(&g).chain(&l).zip(s2.iter().chain(&g2).chain(&l2)) {
                assert!((a - b).abs() < 1e-5, "{lvl:?}: {a} vs {b}");
            }
        }
    }
}
