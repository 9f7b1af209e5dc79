//! The GGUF's weight blocks, used as they are: 4-bit and 8-bit weights × 8-bit activations.
//!
//! A weight matrix is `rows` rows of `cols / 32` blocks each, in the GGUF's own byte layout,
//! one row after the other (the layout `models/export_llm.py` writes to `weights.bin`):
//!
//! | type   | bytes | block                                   | weight `j`                  |
//! |--------|-------|-----------------------------------------|-----------------------------|
//! | `Q4_0` | 18    | `d: f16, qs: [u8; 16]`                  | `d * (nibble(j) - 8)`       |
//! | `Q4_1` | 20    | `d: f16, m: f16, qs: [u8; 16]`          | `d * nibble(j) + m`         |
//! | `Q8_0` | 34    | `d: f16, qs: [i8; 32]`                  | `d * qs[j]`                 |
//!
//! where `nibble(j)` is the low half of `qs[j]` for `j < 16` and the high half of
//! `qs[j - 16]` after. Activations are quantized once per row and 32-block to 8 bits
//! ([`ActBlock`]: `x ≈ d * q`, `|q| ≤ 127`, and `s = d * Σq`), so a block's dot product is
//! one integer sum and one or two float terms:
//!
//! - `Q4_1`: `d_w d_x Σ n_j q_j + m_w s_x`
//! - `Q4_0`: `d_w (d_x Σ n_j q_j − 8 s_x)`
//! - `Q8_0`: `d_w d_x Σ w_j q_j`
//!
//! One kernel takes 1 to [`MAX_ROWS`] activation rows and reads each weight block once for all
//! of them. Kernels: [`Kernel::Avx2`] (x86_64 AVX2+FMA+F16C), [`Kernel::Neon`] (aarch64, A53/A72),
//! [`Kernel::Dotprod`] (aarch64 with `sdot`, A55/A76) and [`Kernel::Portable`], the twin every
//! other path is tested against. [`Kernel::detect`] picks the best the CPU has at run time;
//! `EDGEVOX_KERNEL=portable` (or `neon`, ...) forces one.

use std::ops::Range;

use anyhow::{Result, bail, ensure};

#[cfg(target_arch = "aarch64")]
mod arm;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Weights per block (all three types).
pub const QK: usize = 32;
/// Most activation rows one kernel call takes.
pub const MAX_ROWS: usize = 8;

/// The block types edgevox reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockType {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl BlockType {
    /// Bytes per block of 32 weights.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockType::Q4_0 => 18,
            BlockType::Q4_1 => 20,
            BlockType::Q8_0 => 34,
        }
    }

    /// The name the exporter writes (`q4_0`, `q4_1`, `q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            BlockType::Q4_0 => "q4_0",
            BlockType::Q4_1 => "q4_1",
            BlockType::Q8_0 => "q8_0",
        }
    }

    pub fn from_name(name: &str) -> Result<BlockType> {
        Ok(match name {
            "q4_0" => BlockType::Q4_0,
            "q4_1" => BlockType::Q4_1,
            "q8_0" => BlockType::Q8_0,
            other => bail!("weight block type {other:?} is not supported (q4_0, q4_1, q8_0)"),
        })
    }

    /// Bytes of a `rows × cols` matrix.
    pub fn matrix_bytes(self, rows: usize, cols: usize) -> usize {
        rows * (cols / QK) * self.block_bytes()
    }
}

/// 32 activations quantized to 8 bits: `x[j] ≈ d * qs[j]`, and `s = d * Σ qs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ActBlock {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

/// Quantizes `x` (a multiple of 32 long) into `out` (one block per 32 values) by the rule of
/// llama.cpp's reference code for its 8-bit activation blocks, `d = max|x| / 127`,
/// `q = round(x / d)` (halves away from zero), `s = d Σq`, but with `d` and `s` kept in f32
/// where llama.cpp rounds them to f16: its `s` overflows past ~2,000 and, where `d` is an f16
/// subnormal (blocks below ~8e-3), disagrees with `d` by up to a third. Measured on SmolLM2:
/// 95.6% teacher-forced top-1 agreement with llama.cpp and 29 of 36 facts (llama.cpp 30); with
/// llama.cpp's f16 scales and x86 rounding, 92.8% and 31; with its reference rounding, 93.8%
/// and 29 (README, "Fidelity").
pub fn quantize_activations(x: &[f32], out: &mut [ActBlock]) {
    assert_eq!(
        x.len(),
        out.len() * QK,
        "quantize_activations: lengths differ"
    );
    for (chunk, block) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(chunk) {
            // |v * id| ≤ 127 up to rounding; the clamp keeps a NaN-free row in range.
            let r = (v * id).round().clamp(-127.0, 127.0) as i8;
            *q = r;
            sum += r as i32;
        }
        block.d = d;
        block.s = d * sum as f32;
    }
}

/// Quantizes `x` (a multiple of 32 long) into Q8_0 blocks (34 bytes per 32 values, the
/// GGUF's layout: an f16 scale, then 32 signed bytes) by the rule of llama.cpp's reference
/// `quantize_row_q8_0`: `d = max|x| / 127`, `q = round(x / d)` (halves away from zero), `d`
/// stored as f16. The 8-bit KV cache's rows.
pub fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    assert_eq!(
        x.len() / QK * BlockType::Q8_0.block_bytes(),
        out.len(),
        "quantize_q8_0: lengths differ"
    );
    assert!(
        x.len().is_multiple_of(QK),
        "quantize_q8_0: not whole blocks"
    );
    for (chunk, block) in x
        .chunks_exact(QK)
        .zip(out.chunks_exact_mut(BlockType::Q8_0.block_bytes()))
    {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        block[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
        for (q, &v) in block[2..].iter_mut().zip(chunk) {
            *q = (v * id).round().clamp(-127.0, 127.0) as i8 as u8;
        }
    }
}

/// IEEE half to single precision, exact for every value (the weights' scales are f16).
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    let v = if em >= 0x7c00 {
        // Infinity or NaN.
        0x7f80_0000 | ((em & 0x3ff) << 13)
    } else {
        // Normal and subnormal alike: the bits as an f32 times 2^112 (exact, a power of two).
        (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits()
    };
    f32::from_bits(v | sign)
}

/// Single to half precision, rounding to nearest even.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = x.abs();
    if a.is_nan() {
        return sign | 0x7e00;
    }
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    if a < f32::from_bits(0x3880_0000) {
        // Below the smallest normal f16 (2^-14): a multiple of 2^-24, rounded to even.
        let m = (a * f32::from_bits(0x4b80_0000)).round_ties_even() as u16; // a * 2^24
        return sign | m;
    }
    let ab = a.to_bits();
    let exp = (ab >> 23) as i32 - 127 + 15;
    let mant = ab & 0x7f_ffff;
    let mut h = ((exp as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    sign | h as u16
}

/// Rounds each value to the nearest f16 (ties to even), kept as f32: what
/// `f16_to_f32(f32_to_f16(x))` gives for values inside f16's range (|x| < 65520), without
/// branches, so the loop vectorizes (attention rounds a query and a row of probabilities per
/// head and step).
pub fn round_to_f16(xs: &mut [f32]) {
    const MIN_NORMAL: f32 = 6.103_515_6e-5; // 2^-14
    const TO_SUB: f32 = 16_777_216.0; // 2^24: f16's subnormals are multiples of 2^-24
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer, ties even
    for x in xs {
        let b = x.to_bits();
        let normal = f32::from_bits((b + 0x0fff + ((b >> 13) & 1)) & !0x1fff);
        let sub = ((*x * TO_SUB + MAGIC) - MAGIC) / TO_SUB;
        *x = if x.abs() < MIN_NORMAL { sub } else { normal };
    }
}

/// A weight matrix in GGUF blocks, borrowed from the weight file.
#[derive(Clone, Copy, Debug)]
pub struct BlockMatrix<'a> {
    pub ty: BlockType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> BlockMatrix<'a> {
    /// Checks that `data` holds exactly `rows × cols` weights of `ty`; `name` is the tensor's
    /// name, for the error.
    pub fn new(
        name: &str,
        ty: BlockType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self> {
        ensure!(
            cols > 0 && cols.is_multiple_of(QK),
            "tensor {name}: {cols} columns do not divide into blocks of {QK}"
        );
        ensure!(rows > 0, "tensor {name} has no rows");
        let want = ty.matrix_bytes(rows, cols);
        ensure!(
            data.len() == want,
            "tensor {name}: {} bytes, but {rows} × {cols} {} weights take {want}",
            data.len(),
            ty.name()
        );
        Ok(BlockMatrix {
            ty,
            rows,
            cols,
            data,
        })
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    pub fn row_bytes(&self) -> usize {
        self.blocks_per_row() * self.ty.block_bytes()
    }

    /// The weights of row `r` as f32 (the embedding lookup; tests).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols);
        let rb = self.row_bytes();
        portable::dequantize_row(self.ty, &self.data[r * rb..(r + 1) * rb], out);
    }
}

/// Which implementation of the block dot products runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Portable,
    Avx2,
    Neon,
    Dotprod,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Neon => "neon",
            Kernel::Dotprod => "dotprod",
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            Kernel::Dotprod => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every kernel this CPU can run, the portable one first.
    pub fn all_available() -> Vec<Kernel> {
        [
            Kernel::Portable,
            Kernel::Avx2,
            Kernel::Neon,
            Kernel::Dotprod,
        ]
        .into_iter()
        .filter(|k| k.available())
        .collect()
    }

    /// The best kernel for this CPU, or the one `EDGEVOX_KERNEL` names (a kernel the CPU
    /// lacks, or an unknown name, falls back to the best one, with a warning).
    pub fn detect() -> Kernel {
        let best = *Kernel::all_available()
            .last()
            .expect("portable is always there");
        match std::env::var("EDGEVOX_KERNEL") {
            Ok(name) if !name.is_empty() => match Kernel::from_name(&name) {
                Some(k) if k.available() => k,
                Some(k) => {
                    log::warn!(
                        "EDGEVOX_KERNEL={name}: this CPU cannot run {}; using {}",
                        k.name(),
                        best.name()
                    );
                    best
                }
                None => {
                    log::warn!(
                        "EDGEVOX_KERNEL={name} is not a kernel (portable, avx2, neon, dotprod); using {}",
                        best.name()
                    );
                    best
                }
            },
            _ => best,
        }
    }

    pub fn from_name(name: &str) -> Option<Kernel> {
        [
            Kernel::Portable,
            Kernel::Avx2,
            Kernel::Neon,
            Kernel::Dotprod,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// Attention scores over an f16 KV cache for G queries (query heads sharing one KV head):
/// `out[g·T + t] = Σ_c q[g·D + c] · k[t·D + c]`, D = `d`, T rows of `k`. The SIMD paths read
/// and convert each key row once for up to four queries; each score is summed in the same
/// order whatever G is.
pub fn dot_rows_f16(kernel: Kernel, q: &[f32], d: usize, k: &[u16], out: &mut [f32]) {
    assert!(
        d > 0 && q.len().is_multiple_of(d) && k.len().is_multiple_of(d),
        "f16 rows"
    );
    assert_eq!(out.len(), q.len() / d * (k.len() / d), "f16 scores");
    if out.is_empty() {
        return;
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if kernel.available() => {
            // SAFETY: AVX2, FMA and F16C are present (checked); lengths checked above.
            unsafe { dot_in_groups(x86::DOT_GROUPS, q, d, k, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon | Kernel::Dotprod if kernel.available() => {
            // SAFETY: NEON is present (checked); lengths checked above.
            unsafe { dot_in_groups(arm::DOT_GROUPS, q, d, k, out) }
        }
        _ => portable::dot_rows_f16(q, d, k, out),
    }
}

/// The attention-weighted sum over an f16 KV cache for G query heads sharing one KV head:
/// `out[g·D + c] += Σ_t p[g·T + t] · v[t·D + c]`, D = `d`, T rows of `v`. The SIMD paths read
/// and convert each value row once for up to four heads.
pub fn axpy_rows_f16(kernel: Kernel, p: &[f32], v: &[u16], out: &mut [f32], d: usize) {
    assert!(
        d > 0 && out.len().is_multiple_of(d) && v.len().is_multiple_of(d),
        "f16 rows"
    );
    assert_eq!(p.len(), out.len() / d * (v.len() / d), "f16 weights");
    if p.is_empty() {
        return;
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if kernel.available() => {
            // SAFETY: AVX2, FMA and F16C are present (checked); lengths checked above.
            unsafe { axpy_in_groups(x86::AXPY_GROUPS, p, v, d, out, d) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon | Kernel::Dotprod if kernel.available() => {
            // SAFETY: NEON is present (checked); lengths checked above.
            unsafe { axpy_in_groups(arm::AXPY_GROUPS, p, v, d, out, d) }
        }
        _ => portable::axpy_rows_f16(p, v, out, d),
    }
}

/// [`axpy_rows_f16`] over an 8-bit cache: `out[g·D + c] += Σ_t p[g·T + t] · w_t[c]`, where
/// row `t` of `v` is D/32 Q8_0 blocks and `w_t[c] = d · q`. Each block's term is
/// `(p · d) · q`; the SIMD paths read and widen each value row once for up to four outputs.
pub fn axpy_rows_q8(kernel: Kernel, p: &[f32], v: &[u8], out: &mut [f32], d: usize) {
    assert!(
        d > 0 && d.is_multiple_of(QK) && out.len().is_multiple_of(d),
        "q8 rows of {d} values"
    );
    let rb = BlockType::Q8_0.matrix_bytes(1, d);
    assert!(v.len().is_multiple_of(rb), "q8 rows");
    assert_eq!(p.len(), out.len() / d * (v.len() / rb), "q8 weights");
    if p.is_empty() {
        return;
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if kernel.available() => {
            // SAFETY: AVX2, FMA and F16C are present (checked); lengths checked above.
            unsafe { axpy_in_groups(x86::AXPY_Q8_GROUPS, p, v, rb, out, d) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon | Kernel::Dotprod if kernel.available() => {
            // SAFETY: NEON is present (checked); lengths checked above.
            unsafe { axpy_in_groups(arm::AXPY_Q8_GROUPS, p, v, rb, out, d) }
        }
        _ => portable::axpy_rows_q8(p, v, out, d),
    }
}

/// `x ← softmax(scale · x)` (attention's probabilities from one query's scores): the same
/// bits on every path, since the AVX2 and NEON twins compute the portable exponential lane by
/// lane (no fused multiply-adds) and sum in eight lanes as it does.
pub fn softmax(kernel: Kernel, x: &mut [f32], scale: f32) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if kernel.available() => {
            // SAFETY: AVX2 is present (checked).
            unsafe { x86::softmax(x, scale) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon | Kernel::Dotprod if kernel.available() => {
            // SAFETY: NEON is present (checked).
            unsafe { arm::softmax(x, scale) }
        }
        _ => portable::softmax(x, scale),
    }
}

/// A SIMD score kernel for exactly G queries (`q`: G·d values, `out`: G·rows scores).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type DotGroup = unsafe fn(q: &[f32], d: usize, k: &[u16], out: &mut [f32]);
/// A SIMD weighted-sum kernel for exactly G outputs (`p`: G·rows weights, `out`: G·d).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type AxpyGroup<T> = unsafe fn(p: &[f32], v: &[T], out: &mut [f32], d: usize);

/// [`dot_rows_f16`] through an architecture's group kernels (`groups[G - 1]` takes G
/// queries): up to four queries per pass over the keys, so each key row is read and converted
/// once for all of them.
///
/// # Safety
/// The CPU must have what the group kernels are compiled for; lengths as [`dot_rows_f16`]
/// checks them.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn dot_in_groups(groups: [DotGroup; 4], q: &[f32], d: usize, k: &[u16], out: &mut [f32]) {
    let rows = k.len() / d;
    for (qs, outs) in q.chunks(4 * d).zip(out.chunks_mut(4 * rows)) {
        // SAFETY: forwarded contract; each chunk holds G = `qs.len() / d` (1..=4) queries
        // and G score rows, which is what `groups[G - 1]` takes.
        unsafe { groups[qs.len() / d - 1](qs, d, k, outs) }
    }
}

/// [`axpy_rows_f16`] or [`axpy_rows_q8`] through an architecture's group kernels
/// (`groups[G - 1]` takes G outputs; a value row is `row_len` items of `v`): up to four
/// outputs per pass over the values.
///
/// # Safety
/// As [`dot_in_groups`].
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn axpy_in_groups<T>(
    groups: [AxpyGroup<T>; 4],
    p: &[f32],
    v: &[T],
    row_len: usize,
    out: &mut [f32],
    d: usize,
) {
    let rows = v.len() / row_len;
    for (ps, outs) in p.chunks(4 * rows).zip(out.chunks_mut(4 * d)) {
        // SAFETY: forwarded contract; each chunk holds G = `outs.len() / d` (1..=4) outputs
        // and G weight rows.
        unsafe { groups[outs.len() / d - 1](ps, v, outs, d) }
    }
}

/// `out[(i - rows.start) * m + r] = Σ_k w[i][k] · x_r[k]` for the weight rows `rows` and the
/// `m` (1..=8) activation rows in `acts` (`m × blocks_per_row` blocks, row after row).
pub fn matmul_rows(
    kernel: Kernel,
    w: &BlockMatrix,
    acts: &[ActBlock],
    m: usize,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let nb = w.blocks_per_row();
    assert!(
        (1..=MAX_ROWS).contains(&m),
        "1 to {MAX_ROWS} activation rows, not {m}"
    );
    assert_eq!(acts.len(), m * nb, "activation blocks");
    assert!(
        rows.end <= w.rows && rows.start <= rows.end,
        "rows {rows:?}"
    );
    assert_eq!(out.len(), rows.len() * m, "output length");
    let rb = w.row_bytes();
    let data = &w.data[rows.start * rb..rows.end * rb];
    let n = rows.len();
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if kernel.available() => {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above); the slices' lengths were
            // checked against `n`, `nb` and `m`, which is all the kernel reads and writes.
            unsafe { x86::matmul(w.ty, data, n, nb, acts, m, out) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon if kernel.available() => {
            // SAFETY: NEON is present (checked); lengths checked as above.
            unsafe { arm::matmul(w.ty, data, n, nb, acts, m, out, false) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Dotprod if kernel.available() => {
            // SAFETY: NEON and dotprod are present (checked); lengths checked as above.
            unsafe { arm::matmul(w.ty, data, n, nb, acts, m, out, true) }
        }
        _ => portable::matmul(w.ty, data, n, nb, acts, m, out),
    }
}

/// Calls `$f::<M>($args)` for the run-time row count `$m` in 1..=8.
macro_rules! dispatch_rows {
    ($m:expr, $f:ident, $($arg:expr),*) => {
        match $m {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            8 => $f::<8>($($arg),*),
            m => unreachable!("{m} activation rows"),
        }
    };
}
pub(crate) use dispatch_rows;

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (the tests need no cryptographic randomness).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn byte(&mut self) -> u8 {
            self.next() as u8
        }
        fn unit(&mut self) -> f32 {
            self.next() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0
        }
    }

    /// Random blocks of `ty`, with a few all-zero and saturated ones and extreme scales.
    fn random_matrix(ty: BlockType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut g = Lcg(seed);
        let bb = ty.block_bytes();
        let mut data = vec![0u8; ty.matrix_bytes(rows, cols)];
        for (i, block) in data.chunks_exact_mut(bb).enumerate() {
            let scale = match i % 7 {
                0 => 1e-6,
                1 => 60000.0,
                _ => g.unit() * 0.05,
            };
            block[0..2].copy_from_slice(&f32_to_f16(scale).to_le_bytes());
            let body = if ty == BlockType::Q4_1 {
                block[2..4].copy_from_slice(&f32_to_f16(g.unit() * 0.02).to_le_bytes());
                4
            } else {
                2
            };
            for b in &mut block[body..] {
                *b = match i % 11 {
                    3 => 0,
                    4 => 0xff,
                    5 if ty == BlockType::Q8_0 => 0x80, // -128
                    _ => g.byte(),
                };
            }
        }
        data
    }

    fn random_acts(m: usize, cols: usize, seed: u64) -> Vec<f32> {
        let mut g = Lcg(seed);
        (0..m * cols)
            .map(|i| match (i / QK) % 9 {
                0 => 0.0, // an all-zero block
                1 => 1e4, // a saturated block
                2 => -g.unit().abs() * 1e-5,
                _ => g.unit() * 3.0,
            })
            .collect()
    }

    fn quantized(x: &[f32]) -> Vec<ActBlock> {
        let mut a = vec![ActBlock::default(); x.len() / QK];
        quantize_activations(x, &mut a);
        a
    }

    #[test]
    fn f16_conversion_is_exact_both_ways() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            let exp = (h >> 10) & 0x1f;
            if exp == 0x1f && h & 0x3ff != 0 {
                assert!(f.is_nan(), "{h:#x}");
                continue;
            }
            // Every f16 value survives the round trip, signed zeros included.
            assert_eq!(f32_to_f16(f), h, "{h:#x} -> {f}");
        }
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00, "ties to even");
        assert_eq!(f32_to_f16(1e6), 0x7c00);
    }

    #[test]
    fn activations_quantize_as_llama_cpp_does() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.5).collect();
        let a = quantized(&x);
        // Block 0: max |x| = 10 → d = 10/127; every value within d/2 of d*q.
        for (b, block) in a.iter().enumerate() {
            let amax = x[b * QK..(b + 1) * QK]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(block.d, amax / 127.0);
            for j in 0..QK {
                let err = (x[b * QK + j] - block.d * block.qs[j] as f32).abs();
                assert!(err <= block.d * 0.51, "block {b} [{j}]: {err}");
            }
            let sum: i32 = block.qs.iter().map(|&q| q as i32).sum();
            assert_eq!(block.s, block.d * sum as f32);
        }
        assert_eq!(a[0].qs.iter().map(|q| q.unsigned_abs()).max(), Some(127));
        let zero = quantized(&[0.0; 32]);
        assert_eq!(zero[0], ActBlock::default());
        // Where an f16 s would overflow or disagree with a subnormal d, the f32 s is d Σq.
        for v in [1e4f32, 1e-5] {
            let b = quantized(&[v; 32])[0];
            assert_eq!(b.qs, [127; 32]);
            assert_eq!(b.s, b.d * 127.0 * 32.0, "{v}");
        }
        // Halves go away from zero (llama.cpp's reference rounding): steps of d = 1.
        let mut x = [0f32; 32];
        x[..4].copy_from_slice(&[0.5, 1.5, -2.5, 127.0]);
        assert_eq!(quantized(&x)[0].qs[..4], [1, 2, -3, 127]);
    }

    /// The portable kernel against plain f32 arithmetic on the dequantized weights and the
    /// dequantized activations (the same quantization, so only float rounding is left).
    #[test]
    fn portable_kernel_matches_dequantized_arithmetic() {
        for ty in [BlockType::Q4_0, BlockType::Q4_1, BlockType::Q8_0] {
            let (rows, cols, m) = (13, 96, 3);
            let data = random_matrix(ty, rows, cols, 7);
            let w = BlockMatrix::new("w", ty, rows, cols, &data).unwrap();
            let x = random_acts(m, cols, 9);
            let acts = quantized(&x);
            let mut out = vec![0f32; rows * m];
            matmul_rows(Kernel::Portable, &w, &acts, m, 0..rows, &mut out);
            let mut wr = vec![0f32; cols];
            for i in 0..rows {
                w.dequantize_row(i, &mut wr);
                for r in 0..m {
                    let (mut want, mut mag, mut min_mag) = (0f64, 0f64, 0f64);
                    for k in 0..cols {
                        let a = &acts[r * (cols / QK) + k / QK];
                        let xv = a.d as f64 * a.qs[k % QK] as f64;
                        want += wr[k] as f64 * xv;
                        mag += (wr[k] as f64 * xv).abs();
                    }
                    // The terms on s = d Σq (Q4_1's min, Q4_0's offset 8): one f32 product in
                    // the kernel, a sum of d·q in the reference.
                    let rb = w.row_bytes();
                    let bb = ty.block_bytes();
                    for b in 0..cols / QK {
                        let blk = &data[i * rb + b * bb..];
                        let s_b = acts[r * (cols / QK) + b].s as f64;
                        min_mag += match ty {
                            BlockType::Q4_1 => {
                                (f16_to_f32(u16::from_le_bytes([blk[2], blk[3]])) as f64 * s_b)
                                    .abs()
                            }
                            BlockType::Q4_0 => (8.0
                                * f16_to_f32(u16::from_le_bytes([blk[0], blk[1]])) as f64
                                * s_b)
                                .abs(),
                            BlockType::Q8_0 => 0.0,
                        };
                    }
                    let got = out[i * m + r] as f64;
                    let tol = 1e-5 * (mag + min_mag) + 1e-30;
                    assert!(
                        (got - want).abs() <= tol,
                        "{ty:?} row {i} act {r}: {got} vs {want} (tolerance {tol})"
                    );
                }
            }
        }
    }

    /// Every kernel this CPU has against the portable one: odd row counts, 1-8 activation
    /// rows, zero and saturated blocks, scales from 1e-6 to 6e4. The block sums are integers
    /// (exact in every path); only the order of the float additions differs.
    #[test]
    fn every_kernel_matches_the_portable_one() {
        let kernels = Kernel::all_available();
        eprintln!(
            "quant kernels on this CPU: {:?}",
            kernels.iter().map(|k| k.name()).collect::<Vec<_>>()
        );
        if cfg!(target_arch = "aarch64") {
            assert!(kernels.contains(&Kernel::Neon));
        }
        for ty in [BlockType::Q4_0, BlockType::Q4_1, BlockType::Q8_0] {
            for (rows, cols) in [(1, 32), (7, 64), (33, 576), (5, 1536)] {
                let data = random_matrix(ty, rows, cols, rows as u64 * 31 + cols as u64);
                let w = BlockMatrix::new("w", ty, rows, cols, &data).unwrap();
                for m in 1..=MAX_ROWS {
                    let acts = quantized(&random_acts(m, cols, m as u64));
                    let mut want = vec![0f32; rows * m];
                    matmul_rows(Kernel::Portable, &w, &acts, m, 0..rows, &mut want);
                    // The magnitude each output is made of, for a relative tolerance.
                    let mag = magnitudes(&w, &acts, m);
                    for &k in &kernels {
                        let mut got = vec![f32::NAN; rows * m];
                        matmul_rows(k, &w, &acts, m, 0..rows, &mut got);
                        for (idx, (g, e)) in got.iter().zip(&want).enumerate() {
                            let tol = 2e-6 * mag[idx] + 1e-30;
                            assert!(
                                ((g - e).abs() as f64) <= tol,
                                "{} {ty:?} {rows}x{cols} m={m} out[{idx}]: {g} vs portable {e}",
                                k.name()
                            );
                        }
                        // A sub-range of rows gives the same rows.
                        if rows > 2 {
                            let mut part = vec![0f32; (rows - 2) * m];
                            matmul_rows(k, &w, &acts, m, 1..rows - 1, &mut part);
                            assert_eq!(part, got[m..(rows - 1) * m], "{} rows 1..", k.name());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rounding_to_f16_is_the_conversions_round_trip() {
        let mut g = Lcg(5);
        let mut xs: Vec<f32> = (0..20000)
            .map(|i| {
                let mag = 2f32.powi((i % 44) - 28); // 2^-28 .. 2^15: subnormal to large
                g.unit() * mag
            })
            .collect();
        // Ties at both precisions, the subnormal/normal boundary, zeros.
        xs.extend([
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
            -(1.0 + 1.0 / 2048.0),
            6.103_515_6e-5,
            6.1e-5,
            2f32.powi(-25),
            3.0 * 2f32.powi(-25),
            0.0,
            -0.0,
            65504.0,
        ]);
        let mut got = xs.clone();
        round_to_f16(&mut got);
        for (x, r) in xs.iter().zip(&got) {
            let want = f16_to_f32(f32_to_f16(*x));
            assert_eq!(
                r.to_bits() & 0x7fff_ffff,
                want.to_bits() & 0x7fff_ffff,
                "{x:e}"
            );
            assert_eq!(r.abs(), want.abs(), "{x:e}: {r:e} vs {want:e}");
        }
    }

    /// The f16 cache's row kernels on every path equal the portable ones (within float
    /// reordering), and the portable ones equal f64 arithmetic on the exact f16 values: odd
    /// head sizes (a tail past the 8 lanes), zeros, the f16 extremes and subnormals.
    #[test]
    fn f16_row_kernels_match_the_portable_ones() {
        let mut g = Lcg(77);
        for d in [1usize, 7, 8, 16, 64, 67] {
            for rows in [1usize, 3, 33] {
                let q: Vec<f32> = (0..d).map(|_| g.unit()).collect();
                let k: Vec<u16> = (0..rows * d)
                    .map(|i| match i % 11 {
                        0 => 0x7bff, // 65504, the largest f16
                        1 => 0x0001, // the smallest subnormal
                        2 => 0x8000, // -0
                        _ => f32_to_f16(g.unit() * 4.0),
                    })
                    .collect();
                let p: Vec<f32> = (0..rows).map(|_| g.unit().abs()).collect();
                let term = |t: usize, j: usize| q[j] as f64 * f16_to_f32(k[t * d + j]) as f64;
                let mut want = vec![0f32; rows];
                portable::dot_rows_f16(&q, d, &k, &mut want);
                let mut want_v = vec![0.5f32; d];
                portable::axpy_rows_f16(&p, &k, &mut want_v, d);
                for (t, w) in want.iter().enumerate() {
                    let exact: f64 = (0..d).map(|j| term(t, j)).sum();
                    let mag: f64 = (0..d).map(|j| term(t, j).abs()).sum();
                    assert!((*w as f64 - exact).abs() <= 1e-6 * mag, "d={d} t={t}");
                }
                for kernel in Kernel::all_available() {
                    let mut got = vec![f32::NAN; rows];
                    dot_rows_f16(kernel, &q, d, &k, &mut got);
                    for (t, (g, w)) in got.iter().zip(&want).enumerate() {
                        let mag: f64 = (0..d).map(|j| term(t, j).abs()).sum();
                        assert!(
                            ((g - w).abs() as f64) <= 2e-6 * mag,
                            "{} d={d} rows={rows} t={t}: {g} vs {w}",
                            kernel.name()
                        );
                    }
                    let mut got_v = vec![0.5f32; d];
                    axpy_rows_f16(kernel, &p, &k, &mut got_v, d);
                    for (j, (g, w)) in got_v.iter().zip(&want_v).enumerate() {
                        let mag: f64 = 0.5
                            + (0..rows)
                                .map(|t| (p[t] as f64 * f16_to_f32(k[t * d + j]) as f64).abs())
                                .sum::<f64>();
                        // Fused multiply-adds round once per step instead of twice.
                        assert!(
                            ((g - w).abs() as f64) <= 2e-7 * mag * rows as f64,
                            "{} axpy d={d} rows={rows} j={j}: {g} vs {w}",
                            kernel.name()
                        );
                    }
                }
            }
        }
    }

    /// Q8_0 rows of the 8-bit cache: llama.cpp's reference rule (scale max|x|/127 as f16,
    /// halves away from zero), and the weighted sum over them on every path against the
    /// portable one and the exact sum, for 1 to 6 outputs (each output of a group exactly
    /// what it gets alone), with all-zero and saturated blocks among the rows.
    #[test]
    fn q8_rows_quantize_by_the_reference_rule_and_sum_alike_on_every_path() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 15.5).collect();
        let mut b = vec![0u8; 34];
        quantize_q8_0(&x, &mut b);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), f32_to_f16(15.5 / 127.0));
        // x / d = (i - 15.5) · 127 / 15.5: i = 0 → -127; i = 1 → -118.8 → -119; i = 15 →
        // -4.1 → -4; i = 31 → 127.
        assert_eq!(
            (b[2] as i8, b[3] as i8, b[17] as i8, b[33] as i8),
            (-127, -119, -4, 127)
        );
        let mut zero = vec![1u8; 34];
        quantize_q8_0(&[0.0; 32], &mut zero);
        assert!(zero.iter().all(|&v| v == 0), "an all-zero block is zeros");

        let mut g = Lcg(5);
        for d in [32usize, 64, 96] {
            let rb = BlockType::Q8_0.matrix_bytes(1, d);
            for rows in [1usize, 3, 33] {
                let vals: Vec<f32> = (0..rows * d)
                    .map(|i| match (i / 32) % 5 {
                        0 => 0.0, // an all-zero block
                        1 => {
                            if i % 2 == 0 {
                                1e4
                            } else {
                                -1e4
                            }
                        } // saturated
                        _ => g.unit() * 3.0,
                    })
                    .collect();
                let mut v = vec![0u8; rows * rb];
                quantize_q8_0(&vals, &mut v);
                let w = |t: usize, c: usize| {
                    let bl = &v[t * rb + c / 32 * 34..];
                    portable::scale(bl, 0) as f64 * (bl[2 + c % 32] as i8) as f64
                };
                for heads in 1..=6usize {
                    let p: Vec<f32> = (0..heads * rows).map(|_| g.unit().abs()).collect();
                    let start: Vec<f32> = (0..heads * d).map(|_| g.unit()).collect();
                    let mut want = start.clone();
                    portable::axpy_rows_q8(&p, &v, &mut want, d);
                    for hh in 0..heads {
                        for c in 0..d {
                            let terms = (0..rows).map(|t| p[hh * rows + t] as f64 * w(t, c));
                            let mag: f64 = start[hh * d + c].abs() as f64
                                + terms.clone().map(f64::abs).sum::<f64>();
                            let exact = start[hh * d + c] as f64 + terms.sum::<f64>();
                            let got = want[hh * d + c] as f64;
                            assert!((got - exact).abs() <= 1e-6 * mag, "d={d} c={c}");
                        }
                    }
                    for kernel in Kernel::all_available() {
                        let mut got = start.clone();
                        axpy_rows_q8(kernel, &p, &v, &mut got, d);
                        for (j, (a, b)) in got.iter().zip(&want).enumerate() {
                            let (t_c, hh) = (j % d, j / d);
                            let mag: f64 = start[j].abs() as f64
                                + (0..rows)
                                    .map(|t| (p[hh * rows + t] as f64 * w(t, t_c)).abs())
                                    .sum::<f64>();
                            // Fused multiply-adds round once per step instead of twice.
                            assert!(
                                ((a - b).abs() as f64) <= 2e-7 * mag * rows as f64,
                                "{} d={d} rows={rows} heads={heads} j={j}: {a} vs {b}",
                                kernel.name()
                            );
                        }
                        for hh in 0..heads {
                            let mut alone = start[hh * d..(hh + 1) * d].to_vec();
                            axpy_rows_q8(kernel, &p[hh * rows..(hh + 1) * rows], &v, &mut alone, d);
                            assert_eq!(
                                &got[hh * d..(hh + 1) * d],
                                &alone[..],
                                "{} d={d} rows={rows} heads={heads} h={hh}",
                                kernel.name()
                            );
                        }
                    }
                }
            }
        }
    }

    /// G queries at once (the query heads of one KV head, read once) give on every path
    /// exactly what each query gives alone: same sums in the same order, whatever G.
    #[test]
    fn f16_row_kernels_give_each_query_of_a_group_what_it_gets_alone() {
        let mut g = Lcg(91);
        for d in [1usize, 8, 24, 64, 67] {
            for rows in [1usize, 5, 33] {
                for heads in 1..=6usize {
                    let q: Vec<f32> = (0..heads * d).map(|_| g.unit()).collect();
                    let k: Vec<u16> = (0..rows * d).map(|_| f32_to_f16(g.unit() * 3.0)).collect();
                    let p: Vec<f32> = (0..heads * rows).map(|_| g.unit().abs()).collect();
                    let start: Vec<f32> = (0..heads * d).map(|_| g.unit()).collect();
                    for kernel in Kernel::all_available() {
                        let mut scores = vec![f32::NAN; heads * rows];
                        dot_rows_f16(kernel, &q, d, &k, &mut scores);
                        let mut sums = start.clone();
                        axpy_rows_f16(kernel, &p, &k, &mut sums, d);
                        for h in 0..heads {
                            let mut alone = vec![f32::NAN; rows];
                            dot_rows_f16(kernel, &q[h * d..(h + 1) * d], d, &k, &mut alone);
                            assert_eq!(
                                &scores[h * rows..(h + 1) * rows],
                                &alone[..],
                                "{} d={d} rows={rows} heads={heads} h={h}",
                                kernel.name()
                            );
                            let mut sum = start[h * d..(h + 1) * d].to_vec();
                            axpy_rows_f16(kernel, &p[h * rows..(h + 1) * rows], &k, &mut sum, d);
                            assert_eq!(
                                &sums[h * d..(h + 1) * d],
                                &sum[..],
                                "{} axpy d={d} rows={rows} heads={heads} h={h}",
                                kernel.name()
                            );
                        }
                    }
                }
            }
        }
    }

    /// Σ over blocks of |each block's terms|, per output.
    fn magnitudes(w: &BlockMatrix, acts: &[ActBlock], m: usize) -> Vec<f64> {
        let nb = w.blocks_per_row();
        let bb = w.ty.block_bytes();
        let mut out = Vec::new();
        for i in 0..w.rows {
            for r in 0..m {
                let mut mag = 0f64;
                for b in 0..nb {
                    let blk = &w.data[(i * nb + b) * bb..][..bb];
                    let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]])) as f64;
                    let a = &acts[r * nb + b];
                    let isum: f64 = (0..QK)
                        .map(|j| {
                            let wq = portable::weight_code(w.ty, blk, j) as f64;
                            (wq * a.qs[j] as f64).abs()
                        })
                        .sum();
                    mag += (d * a.d as f64).abs() * isum;
                    match w.ty {
                        BlockType::Q4_1 => {
                            let mn = f16_to_f32(u16::from_le_bytes([blk[2], blk[3]])) as f64;
                            mag += (mn * a.s as f64).abs();
                        }
                        BlockType::Q4_0 => mag += (d * 8.0 * a.s as f64).abs(),
                        BlockType::Q8_0 => {}
                    }
                }
                out.push(mag);
            }
        }
        out
    }

    #[test]
    fn softmax_is_the_same_bits_on_every_path_and_close_to_f64() {
        // The exponential alone: within about an ulp of f64's over its whole range.
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = portable::exp::LO + (portable::exp::HI - portable::exp::LO) * i as f32 / 2e5;
            let (got, want) = (portable::exp(x) as f64, (x as f64).exp());
            worst = worst.max((got - want).abs() / want);
        }
        eprintln!("exp: worst relative error {worst:.2e}");
        assert!(worst < 2e-7, "exp: relative error {worst:e}");
        let mut g = Lcg(77);
        for &n in &[1usize, 2, 7, 8, 9, 16, 63, 64, 65, 300, 1500] {
            for spread in [0.1f32, 8.0, 200.0] {
                let scores: Vec<f32> = (0..n).map(|_| g.unit() * spread).collect();
                let mut want = scores.clone();
                portable::softmax(&mut want, 0.125);
                // f64's exponential of the same f32 differences (their rounding, up to
                // 2.6e-6 relative at e^-44, is f32's, not the exponential's).
                let peak = scores
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| m.max(0.125 * v));
                let e: Vec<f64> = scores
                    .iter()
                    .map(|&v| ((0.125 * v - peak) as f64).exp())
                    .collect();
                let total: f64 = e.iter().sum();
                for (i, (p, r)) in want.iter().zip(&e).enumerate() {
                    let r = r / total;
                    // 1e-30: below f32's softmax floor (exp clamps at -87.3), absolute instead.
                    assert!(
                        (*p as f64 - r).abs() <= 1e-6 * r + 1e-30,
                        "n {n} spread {spread} [{i}]: {p:e} vs {r:e}"
                    );
                }
                for k in Kernel::all_available() {
                    let mut got = scores.clone();
                    softmax(k, &mut got, 0.125);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{} n {n} spread {spread}",
                        k.name()
                    );
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused_naming_the_tensor() {
        let data = vec![0u8; 20 * 3];
        let e = BlockMatrix::new("blk.0.attn_q", BlockType::Q4_1, 1, 48, &data)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("blk.0.attn_q") && e.contains("48 columns"),
            "{e}"
        );
        let e = BlockMatrix::new("blk.1.ffn_up", BlockType::Q4_1, 2, 64, &data)
            .unwrap_err()
            .to_string();
        assert!(e.contains("blk.1.ffn_up") && e.contains("60 bytes"), "{e}");
        let e = BlockType::from_name("q6_k").unwrap_err().to_string();
        assert!(e.contains("q6_k"), "{e}");
    }
}
