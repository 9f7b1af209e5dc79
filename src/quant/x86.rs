//! AVX2 + FMA block kernels (x86_64; F16C converts the blocks' scales). Per 32-block: the 4-bit codes are spread to 32 bytes
//! (low nibbles, then high), `maddubs` multiplies them by the signed activations into 16-bit
//! pair sums (at most 2 · 15 · 127, or 2 · 128 · 127 for Q8_0: no saturation), `madd` by ones
//! widens to eight 32-bit sums, and one FMA adds them, scaled by `d_w d_x`, to the row's
//! accumulator. The integer part is exact; only the float additions' order differs from the
//! portable twin.

use std::arch::x86_64::*;

use super::{ActBlock, BlockType, QK, dispatch_rows, f16_to_f32};

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` holds `n` rows of `nb` blocks of `ty`, `acts` holds
/// `m * nb` blocks and `out` `n * m` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn matmul(
    ty: BlockType,
    w: &[u8],
    n: usize,
    nb: usize,
    acts: &[ActBlock],
    m: usize,
    out: &mut [f32],
) {
    debug_assert!(w.len() >= n * nb * ty.block_bytes());
    debug_assert!(acts.len() >= m * nb && out.len() >= n * m);
    // SAFETY (all three): the caller's contract above is the kernels' contract.
    unsafe {
        match ty {
            BlockType::Q4_0 => dispatch_rows!(m, q4_0, w, n, nb, acts, out),
            BlockType::Q4_1 => dispatch_rows!(m, q4_1, w, n, nb, acts, out),
            BlockType::Q8_0 => dispatch_rows!(m, q8_0, w, n, nb, acts, out),
        }
    }
}

/// How far ahead of the block being read the weights are fetched into the cache: a product
/// reads them once, front to back, faster than the hardware prefetcher alone brings them in.
const PREFETCH_BYTES: usize = 1024;

#[inline(always)]
unsafe fn prefetch(p: *const u8) {
    // SAFETY: prefetching is a hint; an address past the weights is not dereferenced.
    unsafe { _mm_prefetch(p.wrapping_add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0) }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: AVX is implied by the caller's AVX2.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0<const M: usize>(w: &[u8], n: usize, nb: usize, a: &[ActBlock], o: &mut [f32]) {
    // SAFETY: the caller's contract (see `matmul`).
    unsafe { q4::<M, false>(w, n, nb, a, o) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1<const M: usize>(w: &[u8], n: usize, nb: usize, a: &[ActBlock], o: &mut [f32]) {
    // SAFETY: the caller's contract (see `matmul`).
    unsafe { q4::<M, true>(w, n, nb, a, o) }
}

/// Q4_0 (`MIN = false`) and Q4_1 (`MIN = true`) rows. Q4_0's `-8` offset is taken out with the
/// activation block's sum: `d_w (d_x Σ n q - 8 s_x)`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4<const M: usize, const MIN: bool>(
    w: &[u8],
    n: usize,
    nb: usize,
    acts: &[ActBlock],
    out: &mut [f32],
) {
    let bb = if MIN { 20 } else { 18 };
    let body = bb - QK / 2;
    let low = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    for i in 0..n {
        let row = &w[i * nb * bb..(i + 1) * nb * bb];
        let mut acc = [_mm256_setzero_ps(); M];
        let mut extra = [0f32; M];
        for b in 0..nb {
            let block = &row[b * bb..(b + 1) * bb];
            // SAFETY: `block` has 16 code bytes at `body` (length checked by the slice), and
            // each activation block's 32 codes are one unaligned 256-bit load. A prefetch
            // never faults, whatever the address.
            unsafe {
                prefetch(block.as_ptr());
                // d (and Q4_1's m) converted by F16C: lanes [d, m].
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
                    block[0], block[1], block[2], block[3],
                ])));
                let d = _mm_cvtss_f32(dm);
                let mn = _mm_cvtss_f32(_mm_movehdup_ps(dm));
                let q = _mm_loadu_si128(block.as_ptr().add(body) as *const __m128i);
                let codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low);
                for r in 0..M {
                    let x = &acts[r * nb + b];
                    let xq = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
                    let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, xq), ones);
                    acc[r] =
                        _mm256_fmadd_ps(_mm256_set1_ps(d * x.d), _mm256_cvtepi32_ps(sums), acc[r]);
                    extra[r] += if MIN { mn * x.s } else { -8.0 * d * x.s };
                }
            }
        }
        for r in 0..M {
            // SAFETY: AVX2 is enabled for this function.
            out[i * M + r] = unsafe { hsum(acc[r]) } + extra[r];
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0<const M: usize>(w: &[u8], n: usize, nb: usize, acts: &[ActBlock], out: &mut [f32]) {
    let bb = 34;
    let ones = _mm256_set1_epi16(1);
    for i in 0..n {
        let row = &w[i * nb * bb..(i + 1) * nb * bb];
        let mut acc = [_mm256_setzero_ps(); M];
        for b in 0..nb {
            let block = &row[b * bb..(b + 1) * bb];
            // SAFETY: `block` has 32 code bytes after its scale (length checked by the slice).
            // A prefetch never faults, whatever the address.
            unsafe {
                prefetch(block.as_ptr());
                let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([
                    block[0], block[1],
                ]) as i32)));
                let wq = _mm256_loadu_si256(block.as_ptr().add(2) as *const __m256i);
                // maddubs wants one unsigned operand: |w| times x with w's sign.
                let wabs = _mm256_sign_epi8(wq, wq);
                for r in 0..M {
                    let x = &acts[r * nb + b];
                    let xq = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
                    let sums = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xq, wq)),
                        ones,
                    );
                    acc[r] =
                        _mm256_fmadd_ps(_mm256_set1_ps(d * x.d), _mm256_cvtepi32_ps(sums), acc[r]);
                }
            }
        }
        for r in 0..M {
            // SAFETY: AVX2 is enabled for this function.
            out[i * M + r] = unsafe { hsum(acc[r]) };
        }
    }
}

/// The group kernels for G = 1..=4 queries, for [`super::dot_in_groups`].
pub(super) const DOT_GROUPS: [super::DotGroup; 4] = [
    dot_group::<1>,
    dot_group::<2>,
    dot_group::<3>,
    dot_group::<4>,
];

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `q` holds G queries of `d` values, `k` rows of `d`
/// values, `out` G·rows scores (query-major).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_group<const G: usize>(q: &[f32], d: usize, k: &[u16], out: &mut [f32]) {
    let main = d / 8 * 8;
    let rows = k.len() / d;
    debug_assert!(q.len() == G * d && out.len() == G * rows);
    for t in 0..rows {
        let row = &k[t * d..(t + 1) * d];
        // SAFETY: AVX2/FMA/F16C per the contract; every load is inside `row[..main]` and
        // query g's `q[g·d..g·d + main]` (8 values a step).
        unsafe {
            let mut acc = [_mm256_setzero_ps(); G];
            let mut i = 0;
            while i < main {
                let h = _mm256_cvtph_ps(_mm_loadu_si128(row.as_ptr().add(i) as *const __m128i));
                for (g, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(g * d + i)), h, *acc);
                }
                i += 8;
            }
            for (g, acc) in acc.iter().enumerate() {
                let mut s = hsum(*acc);
                if main < d {
                    s += super::portable::dot_f16(&q[g * d + main..(g + 1) * d], &row[main..]);
                }
                out[g * rows + t] = s;
            }
        }
    }
}

/// The group kernels for G = 1..=4 outputs, for [`super::axpy_in_groups`].
pub(super) const AXPY_GROUPS: [super::AxpyGroup<u16>; 4] = [
    axpy_group::<1>,
    axpy_group::<2>,
    axpy_group::<3>,
    axpy_group::<4>,
];

/// The 8-bit cache's group kernels for G = 1..=4 outputs, for [`super::axpy_in_groups`].
pub(super) const AXPY_Q8_GROUPS: [super::AxpyGroup<u8>; 4] = [
    axpy_q8_group::<1>,
    axpy_q8_group::<2>,
    axpy_q8_group::<3>,
    axpy_q8_group::<4>,
];

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `v` holds rows of `d / 32` Q8_0 blocks (`d` a
/// multiple of 32), `p` G·rows weights (query-major), `out` G outputs of `d` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_q8_group<const G: usize>(p: &[f32], v: &[u8], out: &mut [f32], d: usize) {
    const BB: usize = 34;
    let rb = d / QK * BB;
    let rows = v.len() / rb;
    debug_assert!(d.is_multiple_of(QK) && p.len() == G * rows && out.len() == G * d);
    // 16 columns of every output at a time in registers, every row added before they are
    // stored; each row's 16 bytes are widened to f32 once for all G outputs and scaled by
    // `p · d` per output.
    let mut c = 0;
    while c < d {
        let (block, half) = (c / QK, c % QK);
        // SAFETY: AVX2/FMA/F16C per the contract; columns c..c+16 are inside every output
        // (output g starts at g·d); row t's block `block` starts at t·rb + block·34 and its
        // bytes half..half+16 are inside it (half is 0 or 16); weight `g·rows + t` is inside
        // `p` (G·rows weights).
        unsafe {
            let o = out.as_mut_ptr();
            let mut acc = [[_mm256_setzero_ps(); 2]; G];
            for (g, acc) in acc.iter_mut().enumerate() {
                acc[0] = _mm256_loadu_ps(o.add(g * d + c));
                acc[1] = _mm256_loadu_ps(o.add(g * d + c + 8));
            }
            for t in 0..rows {
                let b = v.as_ptr().add(t * rb + block * BB);
                let scale = f16_to_f32(u16::from_le_bytes([*b, *b.add(1)]));
                let q = _mm_loadu_si128(b.add(2 + half) as *const __m128i);
                let w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                let w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
                for (g, acc) in acc.iter_mut().enumerate() {
                    let a = _mm256_set1_ps(*p.get_unchecked(g * rows + t) * scale);
                    acc[0] = _mm256_fmadd_ps(w0, a, acc[0]);
                    acc[1] = _mm256_fmadd_ps(w1, a, acc[1]);
                }
            }
            for (g, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(g * d + c), acc[0]);
                _mm256_storeu_ps(o.add(g * d + c + 8), acc[1]);
            }
        }
        c += 16;
    }
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `v` holds rows of `d` values, `p` G·rows weights
/// (query-major), `out` G outputs of `d` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_group<const G: usize>(p: &[f32], v: &[u16], out: &mut [f32], d: usize) {
    let rows = v.len() / d;
    let main = d / 16 * 16;
    debug_assert!(p.len() == G * rows && out.len() == G * d);
    // 16 columns of every output at a time in registers, every row added before they are
    // stored; each value row's 16 columns are read and converted once for all G outputs.
    let mut c = 0;
    while c < main {
        // SAFETY: AVX2/FMA/F16C per the contract; columns c..c+16 are inside every output
        // (output g starts at g·d) and inside every row of `v` (row t starts at t·d), and
        // weight `g·rows + t` is inside `p` (G·rows weights).
        unsafe {
            let o = out.as_mut_ptr();
            let mut acc = [[_mm256_setzero_ps(); 2]; G];
            for (g, acc) in acc.iter_mut().enumerate() {
                acc[0] = _mm256_loadu_ps(o.add(g * d + c));
                acc[1] = _mm256_loadu_ps(o.add(g * d + c + 8));
            }
            for t in 0..rows {
                let row = v.as_ptr().add(t * d + c);
                let h0 = _mm256_cvtph_ps(_mm_loadu_si128(row as *const __m128i));
                let h1 = _mm256_cvtph_ps(_mm_loadu_si128(row.add(8) as *const __m128i));
                for (g, acc) in acc.iter_mut().enumerate() {
                    let a = _mm256_set1_ps(*p.get_unchecked(g * rows + t));
                    acc[0] = _mm256_fmadd_ps(h0, a, acc[0]);
                    acc[1] = _mm256_fmadd_ps(h1, a, acc[1]);
                }
            }
            for (g, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(g * d + c), acc[0]);
                _mm256_storeu_ps(o.add(g * d + c + 8), acc[1]);
            }
        }
        c += 16;
    }
    if main < d {
        for (ps, o) in p.chunks_exact(rows).zip(out.chunks_exact_mut(d)) {
            super::portable::axpy_cols_f16(ps, v, o, main);
        }
    }
}

/// `e^x` in eight lanes, as [`super::portable::exp`] computes it (no FMA).
#[target_feature(enable = "avx2")]
fn exp8(x: __m256) -> __m256 {
    use super::portable::exp::*;
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(LO)), _mm256_set1_ps(HI));
    let round = _mm256_set1_ps(ROUND);
    let n = _mm256_sub_ps(
        _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), round),
        round,
    );
    let r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(C1)));
    let r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(C2)));
    let mut p = _mm256_set1_ps(P[0]);
    for &c in &P[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(
        _mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r),
        _mm256_set1_ps(1.0),
    );
    let two_n = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(y, _mm256_castsi256_ps(two_n))
}

/// `x ← softmax(scale · x)`, eight lanes at a time: the bits [`super::portable::softmax`] gives.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn softmax(x: &mut [f32], scale: f32) {
    let main = x.len() / 8 * 8;
    let p = x.as_mut_ptr();
    // SAFETY: AVX2 per the contract; every load and store is inside `x[..main]`, 8 at a time.
    unsafe {
        let s = _mm256_set1_ps(scale);
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < main {
            let v = _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), s);
            _mm256_storeu_ps(p.add(i), v);
            m = _mm256_max_ps(m, v);
            i += 8;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let mut peak = lanes.into_iter().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut x[main..] {
            *v *= scale;
            peak = peak.max(*v);
        }
        let pk = _mm256_set1_ps(peak);
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i < main {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), pk));
            _mm256_storeu_ps(p.add(i), e);
            acc = _mm256_add_ps(acc, e);
            i += 8;
        }
        let mut sum = hsum(acc);
        for v in &mut x[main..] {
            *v = super::portable::exp(*v - peak);
            sum += *v;
        }
        let inv_sum = 1.0 / sum;
        let inv = _mm256_set1_ps(inv_sum);
        let mut i = 0;
        while i < main {
            _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv));
            i += 8;
        }
        for v in &mut x[main..] {
            *v *= inv_sum;
        }
    }
}
