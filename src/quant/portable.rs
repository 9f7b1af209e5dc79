//! The portable twin of the block kernels: plain Rust, the reference every SIMD path is
//! tested against, and what runs on a CPU without one.

use super::{ActBlock, BlockType, QK, dispatch_rows, f16_to_f32};

#[inline(always)]
pub(super) fn scale(block: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([block[at], block[at + 1]]))
}

/// The integer code of weight `j` in a block (a nibble 0..15 for the 4-bit types, the signed
/// byte for Q8_0).
#[inline(always)]
pub(super) fn weight_code(ty: BlockType, block: &[u8], j: usize) -> i32 {
    match ty {
        BlockType::Q4_0 | BlockType::Q4_1 => {
            let qs = &block[block.len() - QK / 2..];
            if j < QK / 2 {
                (qs[j] & 0x0f) as i32
            } else {
                (qs[j - QK / 2] >> 4) as i32
            }
        }
        BlockType::Q8_0 => block[2 + j] as i8 as i32,
    }
}

pub(super) fn dequantize_row(ty: BlockType, row: &[u8], out: &mut [f32]) {
    let bb = ty.block_bytes();
    for (block, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(QK)) {
        let d = scale(block, 0);
        for (j, v) in o.iter_mut().enumerate() {
            let q = weight_code(ty, block, j) as f32;
            *v = match ty {
                BlockType::Q4_0 => d * (q - 8.0),
                BlockType::Q4_1 => d * q + scale(block, 2),
                BlockType::Q8_0 => d * q,
            };
        }
    }
}

pub(super) fn matmul(
    ty: BlockType,
    w: &[u8],
    n: usize,
    nb: usize,
    acts: &[ActBlock],
    m: usize,
    out: &mut [f32],
) {
    match ty {
        BlockType::Q4_0 => dispatch_rows!(m, q4_0, w, n, nb, acts, out),
        BlockType::Q4_1 => dispatch_rows!(m, q4_1, w, n, nb, acts, out),
        BlockType::Q8_0 => dispatch_rows!(m, q8_0, w, n, nb, acts, out),
    }
}

/// Σ nibble(j) · q[j] over one 4-bit block.
#[inline(always)]
fn nibble_dot(qs: &[u8], x: &[i8; QK]) -> i32 {
    let mut sum = 0i32;
    for j in 0..QK / 2 {
        sum += (qs[j] & 0x0f) as i32 * x[j] as i32 + (qs[j] >> 4) as i32 * x[j + QK / 2] as i32;
    }
    sum
}

fn q4_0<const M: usize>(w: &[u8], n: usize, nb: usize, acts: &[ActBlock], out: &mut [f32]) {
    q4::<M, false>(w, n, nb, acts, out)
}

fn q4_1<const M: usize>(w: &[u8], n: usize, nb: usize, acts: &[ActBlock], out: &mut [f32]) {
    q4::<M, true>(w, n, nb, acts, out)
}

/// Q4_0 (`MIN = false`: `d_w (d_x Σ n q - 8 s_x)`) and Q4_1 (`MIN = true`:
/// `d_w d_x Σ n q + m_w s_x`) rows.
fn q4<const M: usize, const MIN: bool>(
    w: &[u8],
    n: usize,
    nb: usize,
    acts: &[ActBlock],
    out: &mut [f32],
) {
    let bb = if MIN { 20 } else { 18 };
    for (i, row) in w.chunks_exact(nb * bb).take(n).enumerate() {
        let mut acc = [0f32; M];
        for (b, block) in row.chunks_exact(bb).enumerate() {
            let d = scale(block, 0);
            let codes = &block[bb - QK / 2..];
            for (r, a) in acc.iter_mut().enumerate() {
                let x = &acts[r * nb + b];
                *a += if MIN {
                    d * x.d * nibble_dot(codes, &x.qs) as f32 + scale(block, 2) * x.s
                } else {
                    d * (x.d * nibble_dot(codes, &x.qs) as f32 - 8.0 * x.s)
                };
            }
        }
        out[i * M..(i + 1) * M].copy_from_slice(&acc);
    }
}

fn q8_0<const M: usize>(w: &[u8], n: usize, nb: usize, acts: &[ActBlock], out: &mut [f32]) {
    for (i, row) in w.chunks_exact(nb * 34).take(n).enumerate() {
        let mut acc = [0f32; M];
        for (b, block) in row.chunks_exact(34).enumerate() {
            let d = scale(block, 0);
            for (r, a) in acc.iter_mut().enumerate() {
                let x = &acts[r * nb + b];
                let mut sum = 0i32;
                for j in 0..QK {
                    sum += block[2 + j] as i8 as i32 * x.qs[j] as i32;
                }
                *a += d * x.d * sum as f32;
            }
        }
        out[i * M..(i + 1) * M].copy_from_slice(&acc);
    }
}

/// `out[g·T + t] = Σ_c q[g·D + c] · k[t·D + c]` for the T f16 rows of `k` (D = `d`) and G
/// queries: attention scores over an f16 KV cache. Eight partial sums, as the SIMD twins
/// keep them.
pub(super) fn dot_rows_f16(q: &[f32], d: usize, k: &[u16], out: &mut [f32]) {
    let rows = k.len() / d;
    for (qg, og) in q.chunks_exact(d).zip(out.chunks_exact_mut(rows)) {
        for (row, o) in k.chunks_exact(d).zip(og.iter_mut()) {
            *o = dot_f16(qg, row);
        }
    }
}

pub(super) fn dot_f16(q: &[f32], k: &[u16]) -> f32 {
    let main = q.len() / 8 * 8;
    let mut acc = [0f32; 8];
    for (a, b) in q[..main].chunks_exact(8).zip(k[..main].chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += a[l] * f16_to_f32(b[l]);
        }
    }
    let tail: f32 = q[main..]
        .iter()
        .zip(&k[main..])
        .map(|(a, &b)| a * f16_to_f32(b))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `out[g·D + c] += Σ_t p[g·T + t] · v[t·D + c]` for the f16 rows of `v` (T rows of D = `d`
/// values) and G outputs: the attention-weighted sum of the values for G query heads.
pub(super) fn axpy_rows_f16(p: &[f32], v: &[u16], out: &mut [f32], d: usize) {
    let rows = v.len() / d;
    for (pg, og) in p.chunks_exact(rows).zip(out.chunks_exact_mut(d)) {
        axpy_cols_f16(pg, v, og, 0);
    }
}

/// [`axpy_rows_f16`] for columns `from..` only: the SIMD twins' tail past their lanes.
pub(super) fn axpy_cols_f16(p: &[f32], v: &[u16], out: &mut [f32], from: usize) {
    let d = out.len();
    for (row, &w) in v.chunks_exact(d).zip(p) {
        for (o, &x) in out[from..].iter_mut().zip(&row[from..]) {
            *o += w * f16_to_f32(x);
        }
    }
}

/// [`super::axpy_rows_q8`], block by block: `(p · d) · q` added to each column.
pub(super) fn axpy_rows_q8(p: &[f32], v: &[u8], out: &mut [f32], d: usize) {
    let rb = BlockType::Q8_0.matrix_bytes(1, d);
    let rows = v.len() / rb;
    for (pg, og) in p.chunks_exact(rows).zip(out.chunks_exact_mut(d)) {
        for (row, &w) in v.chunks_exact(rb).zip(pg) {
            for (block, o) in row
                .chunks_exact(BlockType::Q8_0.block_bytes())
                .zip(og.chunks_exact_mut(QK))
            {
                let a = w * scale(block, 0);
                for (o, &q) in o.iter_mut().zip(&block[2..]) {
                    *o += a * (q as i8) as f32;
                }
            }
        }
    }
}

/// The softmax's exponential and its constants, shared by every path. Cephes' `expf`
/// (range reduction by `n = round(x / ln 2)` in two parts, a degree-5 polynomial), written
/// with separate multiplies and adds, no fused ones: each step is one IEEE operation that
/// rounds the same in a SIMD lane as here, so the AVX2 and NEON twins give these bits.
pub(super) mod exp {
    /// The range the polynomial takes (`exp(LO)` ≈ 1.2e-38 is still a normal float).
    pub const LO: f32 = -87.3;
    pub const HI: f32 = 88.3;
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// `1.5 · 2^23`: adding it rounds to an integer, ties to even.
    pub const ROUND: f32 = 12_582_912.0;
    /// ln 2 = C1 − C2, C1 with few bits so that `n · C1` is exact.
    pub const C1: f32 = 0.693_359_4;
    pub const C2: f32 = -2.121_944_4e-4;
    /// `exp(r) ≈ 1 + r + r² · P(r)` on |r| ≤ ln 2 / 2, highest coefficient first.
    pub const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ];
}

/// `e^x` to within a few ulp (clamped to `[exp::LO, exp::HI]`), as the SIMD twins compute it.
pub(super) fn exp(x: f32) -> f32 {
    use exp::*;
    let x = x.clamp(LO, HI);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * C1;
    let r = r - n * C2;
    let mut p = P[0];
    for c in &P[1..] {
        p = p * r + c;
    }
    let y = p * (r * r) + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// Eight lanes summed the way the SIMD twins reduce a vector: `(s0 + s2) + (s1 + s3)` with
/// `s_i = a_i + a_{i+4}`.
pub(super) fn hsum8(a: [f32; 8]) -> f32 {
    let s: [f32; 4] = std::array::from_fn(|i| a[i] + a[i + 4]);
    (s[0] + s[2]) + (s[1] + s[3])
}

/// `x ← softmax(scale · x)`: the scores scaled, the peak subtracted, [`exp`], eight running
/// sums (as eight SIMD lanes keep them), then one multiply by the sum's inverse.
pub(super) fn softmax(x: &mut [f32], scale: f32) {
    let main = x.len() / 8 * 8;
    let mut peak = f32::NEG_INFINITY;
    for v in x.iter_mut() {
        *v *= scale;
        peak = peak.max(*v);
    }
    let mut acc = [0f32; 8];
    for c in x[..main].chunks_exact_mut(8) {
        for (v, a) in c.iter_mut().zip(&mut acc) {
            *v = exp(*v - peak);
            *a += *v;
        }
    }
    let mut sum = hsum8(acc);
    for v in &mut x[main..] {
        *v = exp(*v - peak);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x {
        *v *= inv;
    }
}
