//! NEON block kernels (aarch64). Per 32-block the 4-bit codes are split into two 16-byte
//! vectors (low nibbles: weights 0..15, high: 16..31). Without dotprod (Cortex-A53/A72)
//! `smull`/`smlal` multiply them with the signed activations into 16-bit pair sums (at most
//! 2 · 15 · 127, or 2 · 128 · 127 for Q8_0: no overflow) and `sadalp` widens them into four
//! 32-bit sums; with dotprod (A55/A76) one `sdot` does four bytes at a time straight into
//! 32 bits. One FMA then adds the sums, scaled by `d_w d_x`, to the row's accumulator. The
//! integer part is exact; only the float additions' order differs from the portable twin.

use std::arch::aarch64::*;
use std::arch::asm;

use super::portable::scale;
use super::{ActBlock, BlockType, QK, dispatch_rows, f16_to_f32};

/// # Safety
/// The CPU must have NEON (and dotprod when `dot` is set); `w` holds `n` rows of `nb` blocks
/// of `ty`, `acts` holds `m * nb` blocks and `out` `n * m` values.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul(
    ty: BlockType,
    w: &[u8],
    n: usize,
    nb: usize,
    acts: &[ActBlock],
    m: usize,
    out: &mut [f32],
    dot: bool,
) {
    debug_assert!(w.len() >= n * nb * ty.block_bytes());
    debug_assert!(acts.len() >= m * nb && out.len() >= n * m);
    // SAFETY (all six): the caller's contract above is the kernels' contract.
    unsafe {
        match (ty, dot) {
            (BlockType::Q4_0, false) => dispatch_rows!(m, q4_0_neon, w, n, nb, acts, out),
            (BlockType::Q4_1, false) => dispatch_rows!(m, q4_1_neon, w, n, nb, acts, out),
            (BlockType::Q8_0, false) => dispatch_rows!(m, q8_0_neon, w, n, nb, acts, out),
            (BlockType::Q4_0, true) => dispatch_rows!(m, q4_0_dot, w, n, nb, acts, out),
            (BlockType::Q4_1, true) => dispatch_rows!(m, q4_1_dot, w, n, nb, acts, out),
            (BlockType::Q8_0, true) => dispatch_rows!(m, q8_0_dot, w, n, nb, acts, out),
        }
    }
}

/// How far ahead of the block being read the weights are fetched into the cache: a product
/// reads them once, front to back, faster than the hardware prefetcher alone brings them in
/// (measured on x86_64, where the same hint took decode from 17 to 44 tokens/s).
const PREFETCH_BYTES: usize = 1024;

#[inline(always)]
unsafe fn prefetch(p: *const u8) {
    // SAFETY: `prfm` is a hint: it never faults, whatever the address, and writes nothing.
    unsafe {
        asm!(
            "prfm pldl1keep, [{p}]",
            p = in(reg) p.wrapping_add(PREFETCH_BYTES),
            options(nostack, preserves_flags, readonly)
        );
    }
}

/// Σ a[j] b[j] over 16 signed bytes, into four 32-bit lanes, with `smull`/`smlal`.
#[inline(always)]
unsafe fn mul_add_neon(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: NEON is present (the callers' target feature).
    unsafe {
        let p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let p = vmlal_high_s8(p, a, b);
        vpadalq_s16(acc, p)
    }
}

/// The same with `sdot` (written as assembly: the intrinsic is not stable Rust).
#[inline(always)]
unsafe fn mul_add_dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: only called from functions compiled with the dotprod feature on a CPU that has
    // it; the instruction reads and writes registers only.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// The 4-bit kernels, generic over the multiply-add and over Q4_1's min (`MIN`) / Q4_0's
/// offset: `d_w (d_x Σ n q - 8 s_x)`.
macro_rules! q4_kernel {
    ($name:ident, $feature:literal, $mul_add:ident, $min:expr) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name<const M: usize>(
            w: &[u8],
            n: usize,
            nb: usize,
            acts: &[ActBlock],
            out: &mut [f32],
        ) {
            let min: bool = $min;
            let bb = if min { 20 } else { 18 };
            let body = bb - QK / 2;
            for i in 0..n {
                let row = &w[i * nb * bb..(i + 1) * nb * bb];
                // SAFETY: every load reads inside `row` (16 code bytes at `body` of a block
                // whose length the slice checks) or inside one activation block's 32 codes.
                unsafe {
                    let mut acc = [vdupq_n_f32(0.0); M];
                    let mut extra = [0f32; M];
                    for b in 0..nb {
                        let block = &row[b * bb..(b + 1) * bb];
                        prefetch(block.as_ptr());
                        let d = scale(block, 0);
                        let q = vld1q_u8(block.as_ptr().add(body));
                        let lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f)));
                        let hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
                        for r in 0..M {
                            let x = &acts[r * nb + b];
                            let x0 = vld1q_s8(x.qs.as_ptr());
                            let x1 = vld1q_s8(x.qs.as_ptr().add(16));
                            let s = $mul_add(vdupq_n_s32(0), lo, x0);
                            let s = $mul_add(s, hi, x1);
                            acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(s), d * x.d);
                            extra[r] += if min {
                                scale(block, 2) * x.s
                            } else {
                                -8.0 * d * x.s
                            };
                        }
                    }
                    for r in 0..M {
                        out[i * M + r] = vaddvq_f32(acc[r]) + extra[r];
                    }
                }
            }
        }
    };
}

macro_rules! q8_kernel {
    ($name:ident, $feature:literal, $mul_add:ident) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name<const M: usize>(
            w: &[u8],
            n: usize,
            nb: usize,
            acts: &[ActBlock],
            out: &mut [f32],
        ) {
            let bb = 34;
            for i in 0..n {
                let row = &w[i * nb * bb..(i + 1) * nb * bb];
                // SAFETY: every load reads inside `row` (32 code bytes after a block's scale)
                // or inside one activation block's 32 codes.
                unsafe {
                    let mut acc = [vdupq_n_f32(0.0); M];
                    for b in 0..nb {
                        let block = &row[b * bb..(b + 1) * bb];
                        prefetch(block.as_ptr());
                        let d = scale(block, 0);
                        let w0 = vld1q_s8(block.as_ptr().add(2) as *const i8);
                        let w1 = vld1q_s8(block.as_ptr().add(18) as *const i8);
                        for r in 0..M {
                            let x = &acts[r * nb + b];
                            let x0 = vld1q_s8(x.qs.as_ptr());
                            let x1 = vld1q_s8(x.qs.as_ptr().add(16));
                            let s = $mul_add(vdupq_n_s32(0), w0, x0);
                            let s = $mul_add(s, w1, x1);
                            acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(s), d * x.d);
                        }
                    }
                    for r in 0..M {
                        out[i * M + r] = vaddvq_f32(acc[r]);
                    }
                }
            }
        }
    };
}

q4_kernel!(q4_0_neon, "neon", mul_add_neon, false);
q4_kernel!(q4_1_neon, "neon", mul_add_neon, true);
q8_kernel!(q8_0_neon, "neon", mul_add_neon);
q4_kernel!(q4_0_dot, "neon,dotprod", mul_add_dot, false);
q4_kernel!(q4_1_dot, "neon,dotprod", mul_add_dot, true);
q8_kernel!(q8_0_dot, "neon,dotprod", mul_add_dot);

/// Eight f16 values at `p` as two f32 vectors (`fcvtl`/`fcvtl2`: base ARMv8 SIMD; Rust's
/// f16 intrinsics are not stable yet).
///
/// # Safety
/// `p` must point at 8 readable `u16`.
#[inline(always)]
unsafe fn f16x8(p: *const u16) -> (float32x4_t, float32x4_t) {
    let (lo, hi): (float32x4_t, float32x4_t);
    // SAFETY: the caller guarantees 8 readable values; the conversions only touch registers
    // (`out` operands never share a register with the input).
    unsafe {
        let h = vld1q_u16(p);
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(pure, nomem, nostack),
        );
    }
    (lo, hi)
}

/// The group kernels for G = 1..=4 queries, for [`super::dot_in_groups`].
pub(super) const DOT_GROUPS: [super::DotGroup; 4] = [
    dot_group::<1>,
    dot_group::<2>,
    dot_group::<3>,
    dot_group::<4>,
];

/// # Safety
/// The CPU must have NEON; `q` holds G queries of `d` values, `k` rows of `d`
/// values, `out` G·rows scores (query-major).
unsafe fn dot_group<const G: usize>(q: &[f32], d: usize, k: &[u16], out: &mut [f32]) {
    let main = d / 8 * 8;
    let rows = k.len() / d;
    debug_assert!(q.len() == G * d && out.len() == G * rows);
    for t in 0..rows {
        let row = &k[t * d..(t + 1) * d];
        // SAFETY: NEON per the contract; every load is inside `row[..main]` and query g's
        // `q[g·d..g·d + main]`.
        unsafe {
            let mut acc = [[vdupq_n_f32(0.0); 2]; G];
            let mut i = 0;
            while i < main {
                let (lo, hi) = f16x8(row.as_ptr().add(i));
                for (g, acc) in acc.iter_mut().enumerate() {
                    let qg = q.as_ptr().add(g * d + i);
                    acc[0] = vfmaq_f32(acc[0], vld1q_f32(qg), lo);
                    acc[1] = vfmaq_f32(acc[1], vld1q_f32(qg.add(4)), hi);
                }
                i += 8;
            }
            for (g, acc) in acc.iter().enumerate() {
                let mut s = vaddvq_f32(vaddq_f32(acc[0], acc[1]));
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
/// The CPU must have NEON; `v` holds rows of `d / 32` Q8_0 blocks (`d` a multiple of 32),
/// `p` G·rows weights (query-major), `out` G outputs of `d` values.
unsafe fn axpy_q8_group<const G: usize>(p: &[f32], v: &[u8], out: &mut [f32], d: usize) {
    const BB: usize = 34;
    let rb = d / QK * BB;
    let rows = v.len() / rb;
    debug_assert!(d.is_multiple_of(QK) && p.len() == G * rows && out.len() == G * d);
    // 16 columns of every output at a time in registers (4·G of the 32), every row added
    // before they are stored; each row's 16 bytes are widened to f32 once for all G outputs.
    let mut c = 0;
    while c < d {
        let (block, half) = (c / QK, c % QK);
        // SAFETY: NEON per the contract; columns c..c+16 are inside every output (output g
        // starts at g·d); row t's block `block` starts at t·rb + block·34 and its bytes
        // half..half+16 are inside it (half is 0 or 16); weight `g·rows + t` is inside `p`.
        unsafe {
            let o = out.as_mut_ptr();
            let mut acc = [[vdupq_n_f32(0.0); 4]; G];
            for (g, acc) in acc.iter_mut().enumerate() {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = vld1q_f32(o.add(g * d + c + 4 * j));
                }
            }
            for t in 0..rows {
                let b = v.as_ptr().add(t * rb + block * BB);
                let scale = f16_to_f32(u16::from_le_bytes([*b, *b.add(1)]));
                let q = vld1q_s8(b.add(2 + half) as *const i8);
                let (lo, hi) = (vmovl_s8(vget_low_s8(q)), vmovl_high_s8(q));
                let w = [
                    vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
                    vcvtq_f32_s32(vmovl_high_s16(lo)),
                    vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
                    vcvtq_f32_s32(vmovl_high_s16(hi)),
                ];
                for (g, acc) in acc.iter_mut().enumerate() {
                    let a = vdupq_n_f32(*p.get_unchecked(g * rows + t) * scale);
                    for (a_j, &w_j) in acc.iter_mut().zip(&w) {
                        *a_j = vfmaq_f32(*a_j, w_j, a);
                    }
                }
            }
            for (g, acc) in acc.iter().enumerate() {
                for (j, a) in acc.iter().enumerate() {
                    vst1q_f32(o.add(g * d + c + 4 * j), *a);
                }
            }
        }
        c += 16;
    }
}

/// # Safety
/// The CPU must have NEON; `v` holds rows of `d` values, `p` G·rows weights
/// (query-major), `out` G outputs of `d` values.
unsafe fn axpy_group<const G: usize>(p: &[f32], v: &[u16], out: &mut [f32], d: usize) {
    let rows = v.len() / d;
    let main = d / 16 * 16;
    debug_assert!(p.len() == G * rows && out.len() == G * d);
    // 16 columns of every output at a time in registers (4·G of the 32), every row added
    // before they are stored; each value row's 16 columns are converted once for all G.
    let mut c = 0;
    while c < main {
        // SAFETY: NEON per the contract; columns c..c+16 are inside every output (output g
        // starts at g·d) and inside every row of `v` (row t starts at t·d), and weight
        // `g·rows + t` is inside `p` (G·rows weights).
        unsafe {
            let o = out.as_mut_ptr();
            let mut acc = [[vdupq_n_f32(0.0); 4]; G];
            for (g, acc) in acc.iter_mut().enumerate() {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = vld1q_f32(o.add(g * d + c + 4 * j));
                }
            }
            for t in 0..rows {
                let row = v.as_ptr().add(t * d + c);
                let (l0, h0) = f16x8(row);
                let (l1, h1) = f16x8(row.add(8));
                for (g, acc) in acc.iter_mut().enumerate() {
                    let a = vdupq_n_f32(*p.get_unchecked(g * rows + t));
                    acc[0] = vfmaq_f32(acc[0], l0, a);
                    acc[1] = vfmaq_f32(acc[1], h0, a);
                    acc[2] = vfmaq_f32(acc[2], l1, a);
                    acc[3] = vfmaq_f32(acc[3], h1, a);
                }
            }
            for (g, acc) in acc.iter().enumerate() {
                for (j, a) in acc.iter().enumerate() {
                    vst1q_f32(o.add(g * d + c + 4 * j), *a);
                }
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

/// # Safety
/// The CPU must have NEON (no fused multiply-add is used: see [`super::portable::exp`]).
unsafe fn exp4(x: float32x4_t) -> float32x4_t {
    use super::portable::exp::*;
    // SAFETY: NEON per the contract; register arithmetic only.
    unsafe {
        let x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(LO)), vdupq_n_f32(HI));
        let round = vdupq_n_f32(ROUND);
        let n = vsubq_f32(vaddq_f32(vmulq_f32(x, vdupq_n_f32(LOG2E)), round), round);
        let r = vsubq_f32(x, vmulq_f32(n, vdupq_n_f32(C1)));
        let r = vsubq_f32(r, vmulq_f32(n, vdupq_n_f32(C2)));
        let mut p = vdupq_n_f32(P[0]);
        for &c in &P[1..] {
            p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(c));
        }
        let y = vaddq_f32(
            vaddq_f32(vmulq_f32(p, vmulq_f32(r, r)), r),
            vdupq_n_f32(1.0),
        );
        let two_n = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)));
        vmulq_f32(y, vreinterpretq_f32_s32(two_n))
    }
}

/// `x ← softmax(scale · x)`, eight values (two vectors) at a time: the bits
/// [`super::portable::softmax`] gives.
///
/// # Safety
/// The CPU must have NEON.
pub(super) unsafe fn softmax(x: &mut [f32], scale: f32) {
    let main = x.len() / 8 * 8;
    let p = x.as_mut_ptr();
    // SAFETY: NEON per the contract; every load and store is inside `x[..main]`, 8 at a time.
    unsafe {
        let s = vdupq_n_f32(scale);
        let mut m = vdupq_n_f32(f32::NEG_INFINITY);
        let mut i = 0;
        while i < main {
            for h in [0, 4] {
                let v = vmulq_f32(vld1q_f32(p.add(i + h)), s);
                vst1q_f32(p.add(i + h), v);
                m = vmaxq_f32(m, v);
            }
            i += 8;
        }
        let mut peak = vmaxvq_f32(m);
        for v in &mut x[main..] {
            *v *= scale;
            peak = peak.max(*v);
        }
        let pk = vdupq_n_f32(peak);
        let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        let mut i = 0;
        while i < main {
            let e0 = exp4(vsubq_f32(vld1q_f32(p.add(i)), pk));
            let e1 = exp4(vsubq_f32(vld1q_f32(p.add(i + 4)), pk));
            vst1q_f32(p.add(i), e0);
            vst1q_f32(p.add(i + 4), e1);
            lo = vaddq_f32(lo, e0);
            hi = vaddq_f32(hi, e1);
            i += 8;
        }
        // (s0 + s2) + (s1 + s3), s = lo + hi: the portable twin's order.
        let s4 = vaddq_f32(lo, hi);
        let s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
        let mut sum = vget_lane_f32::<0>(s2) + vget_lane_f32::<1>(s2);
        for v in &mut x[main..] {
            *v = super::portable::exp(*v - peak);
            sum += *v;
        }
        let inv_sum = 1.0 / sum;
        let inv = vdupq_n_f32(inv_sum);
        let mut i = 0;
        while i < main {
            for h in [0, 4] {
                vst1q_f32(p.add(i + h), vmulq_f32(vld1q_f32(p.add(i + h)), inv));
            }
            i += 8;
        }
        for v in &mut x[main..] {
            *v *= inv_sum;
        }
    }
}
