//! edgevox's own inner loops, NEON on aarch64 and portable elsewhere.
//!
//! The heavy arithmetic (Whisper, the LLM, Silero) runs in whisper.cpp's and tract's kernels;
//! what is left to edgevox is per-token and per-window work on every sample or logit:
//!
//! | function        | where                                        | size per call            |
//! |-----------------|----------------------------------------------|--------------------------|
//! | [`argmax`]      | greedy sampling, once per generated token    | 49,152 logits            |
//! | [`peak_abs`]    | echo guard and playback level, per block     | 160-480 samples          |
//! | [`sum_squares`] | energy VAD, per window                       | 512 samples              |
//! | [`i16_to_f32`]  | 16-bit PCM from espeak-ng and WAV files      | whole utterances         |
//! | [`dot`]         | echo canceller's filter output, per sample   | 1,024 taps (64 ms)       |
//! | [`axpy`]        | echo canceller's filter update, per sample   | 1,024 taps               |
//!
//! Each has a `portable` twin; aarch64 builds use NEON (always present on AArch64, so no
//! run-time detection), other targets the portable code. The tests check that both agree
//! (`make test-cross` runs them under qemu-aarch64); `edgevox bench kernels` times both.

/// Index of the largest value (the first one on ties); `None` for an empty slice.
/// Logits are finite; with NaNs the result is some index, never a panic.
pub fn argmax(values: &[f32]) -> Option<usize> {
    #[cfg(target_arch = "aarch64")]
    {
        neon::argmax(values)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        portable::argmax(values)
    }
}

/// Largest absolute value (0 for an empty slice).
pub fn peak_abs(values: &[f32]) -> f32 {
    #[cfg(target_arch = "aarch64")]
    {
        neon::peak_abs(values)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        portable::peak_abs(values)
    }
}

/// Sum of squares (the summation order differs between the two paths: equal to ~1e-6 relative).
pub fn sum_squares(values: &[f32]) -> f32 {
    #[cfg(target_arch = "aarch64")]
    {
        neon::sum_squares(values)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        portable::sum_squares(values)
    }
}

/// 16-bit PCM to floats in [-1, 1): `out[i] = input[i] / 32768`. Panics if the lengths differ.
pub fn i16_to_f32(input: &[i16], out: &mut [f32]) {
    assert_eq!(input.len(), out.len(), "i16_to_f32: lengths differ");
    #[cfg(target_arch = "aarch64")]
    {
        neon::i16_to_f32(input, out)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        portable::i16_to_f32(input, out)
    }
}

/// Dot product of two slices of the same length (summation order differs between the two
/// paths: equal to ~1e-6 relative). Panics if the lengths differ.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    #[cfg(target_arch = "aarch64")]
    {
        neon::dot(a, b)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        portable::dot(a, b)
    }
}

/// `y += alpha * x`. Panics if the lengths differ.
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len(), "axpy: lengths differ");
    #[cfg(target_arch = "aarch64")]
    {
        neon::axpy(y, alpha, x)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        portable::axpy(y, alpha, x)
    }
}

/// Which implementation [`argmax`] and the others use in this build.
pub fn implementation() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "neon"
    } else {
        "portable"
    }
}

/// The reference implementations: plain loops, used off aarch64 and by the equivalence tests.
pub mod portable {
    pub fn argmax(values: &[f32]) -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &v) in values.iter().enumerate() {
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
        best.map(|(i, _)| i)
    }

    pub fn peak_abs(values: &[f32]) -> f32 {
        values.iter().fold(0.0f32, |m, x| m.max(x.abs()))
    }

    pub fn sum_squares(values: &[f32]) -> f32 {
        values.iter().map(|x| x * x).sum()
    }

    pub fn i16_to_f32(input: &[i16], out: &mut [f32]) {
        for (o, &s) in out.iter_mut().zip(input) {
            *o = s as f32 / 32768.0;
        }
    }

    /// Eight partial sums, so the compiler can keep them in vector registers.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in ca.zip(cb) {
            for k in 0..8 {
                acc[k] += x[k] * y[k];
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += alpha * x;
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    pub fn argmax(values: &[f32]) -> Option<usize> {
        if values.len() < 8 {
            return super::portable::argmax(values);
        }
        let main = values.len() / 4 * 4;
        // SAFETY: NEON is part of AArch64; every load reads 4 floats inside `values[..main]`.
        let (mut best, mut best_i) = unsafe {
            let p = values.as_ptr();
            let mut best = vld1q_f32(p);
            let lane_ids: [u32; 4] = [0, 1, 2, 3];
            let mut idx = vld1q_u32(lane_ids.as_ptr());
            let mut best_idx = idx;
            let four = vdupq_n_u32(4);
            let mut i = 4;
            while i < main {
                idx = vaddq_u32(idx, four);
                let v = vld1q_f32(p.add(i));
                // Strictly greater: each lane keeps its first maximum.
                let gt = vcgtq_f32(v, best);
                best = vbslq_f32(gt, v, best);
                best_idx = vbslq_u32(gt, idx, best_idx);
                i += 4;
            }
            // Across lanes: the largest value, and of the lanes holding it the lowest index.
            let m = vmaxvq_f32(best);
            let is_max = vceqq_f32(best, vdupq_n_f32(m));
            let candidates = vbslq_u32(is_max, best_idx, vdupq_n_u32(u32::MAX));
            (m, vminvq_u32(candidates) as usize)
        };
        if best.is_nan() || best_i == u32::MAX as usize {
            return super::portable::argmax(values);
        }
        for (i, &v) in values.iter().enumerate().skip(main) {
            if v > best {
                best = v;
                best_i = i;
            }
        }
        Some(best_i)
    }

    pub fn peak_abs(values: &[f32]) -> f32 {
        let main = values.len() / 4 * 4;
        // SAFETY: NEON is part of AArch64; loads stay inside `values[..main]`.
        let mut peak = unsafe {
            let p = values.as_ptr();
            let mut acc = vdupq_n_f32(0.0);
            let mut i = 0;
            while i < main {
                acc = vmaxq_f32(acc, vabsq_f32(vld1q_f32(p.add(i))));
                i += 4;
            }
            vmaxvq_f32(acc)
        };
        for &v in &values[main..] {
            peak = peak.max(v.abs());
        }
        peak
    }

    pub fn sum_squares(values: &[f32]) -> f32 {
        let main = values.len() / 8 * 8;
        // SAFETY: NEON is part of AArch64; loads stay inside `values[..main]`.
        let mut total = unsafe {
            let p = values.as_ptr();
            let (mut a, mut b) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut i = 0;
            while i < main {
                let x = vld1q_f32(p.add(i));
                let y = vld1q_f32(p.add(i + 4));
                a = vfmaq_f32(a, x, x);
                b = vfmaq_f32(b, y, y);
                i += 8;
            }
            vaddvq_f32(vaddq_f32(a, b))
        };
        for &v in &values[main..] {
            total += v * v;
        }
        total
    }

    pub fn i16_to_f32(input: &[i16], out: &mut [f32]) {
        let main = input.len() / 8 * 8;
        // SAFETY: NEON is part of AArch64; `input` and `out` have the same length (checked by
        // the caller) and every access stays inside `[..main]`.
        unsafe {
            let (src, dst) = (input.as_ptr(), out.as_mut_ptr());
            let scale = vdupq_n_f32(1.0 / 32768.0);
            let mut i = 0;
            while i < main {
                let s = vld1q_s16(src.add(i));
                let lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(s)));
                let hi = vcvtq_f32_s32(vmovl_high_s16(s));
                vst1q_f32(dst.add(i), vmulq_f32(lo, scale));
                vst1q_f32(dst.add(i + 4), vmulq_f32(hi, scale));
                i += 8;
            }
        }
        super::portable::i16_to_f32(&input[main..], &mut out[main..]);
    }

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let main = a.len() / 8 * 8;
        // SAFETY: NEON is part of AArch64; `a` and `b` have the same length (checked by the
        // caller) and loads stay inside `[..main]`.
        let total = unsafe {
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let (mut s0, mut s1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut i = 0;
            while i < main {
                s0 = vfmaq_f32(s0, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
                s1 = vfmaq_f32(s1, vld1q_f32(pa.add(i + 4)), vld1q_f32(pb.add(i + 4)));
                i += 8;
            }
            vaddvq_f32(vaddq_f32(s0, s1))
        };
        total + super::portable::dot(&a[main..], &b[main..])
    }

    pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        let main = y.len() / 4 * 4;
        // SAFETY: NEON is part of AArch64; `y` and `x` have the same length (checked by the
        // caller) and every access stays inside `[..main]`.
        unsafe {
            let (py, px) = (y.as_mut_ptr(), x.as_ptr());
            let a = vdupq_n_f32(alpha);
            let mut i = 0;
            while i < main {
                vst1q_f32(
                    py.add(i),
                    vfmaq_f32(vld1q_f32(py.add(i)), vld1q_f32(px.add(i)), a),
                );
                i += 4;
            }
        }
        super::portable::axpy(&mut y[main..], alpha, &x[main..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random floats in [-scale, scale).
    fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// Lengths around the vector widths and the real sizes.
    const LENGTHS: [usize; 12] = [0, 1, 3, 4, 5, 7, 8, 9, 31, 160, 512, 49_152];

    #[test]
    fn argmax_agrees_with_the_portable_loop() {
        for (seed, &n) in LENGTHS.iter().enumerate() {
            let v = noise(n, seed as u64, 30.0);
            assert_eq!(argmax(&v), portable::argmax(&v), "n = {n}");
        }
        // Ties: the first maximum wins, wherever the copies sit (lanes, tail).
        for n in [8usize, 13, 64, 1001] {
            for (a, b) in [
                (0, n - 1),
                (3, 4),
                (5, n - 2),
                (n / 2, (n / 2 + 4).min(n - 1)),
            ] {
                let mut v = noise(n, n as u64, 1.0);
                v[a] = 7.0;
                v[b] = 7.0;
                assert_eq!(argmax(&v), Some(a.min(b)), "n = {n}, ties at {a} and {b}");
            }
        }
        // All equal, negative only, maximum in the tail.
        assert_eq!(argmax(&[-2.0; 11]), Some(0));
        let mut v = vec![-5.0f32; 11];
        v[10] = -1.0;
        assert_eq!(argmax(&v), Some(10));
        assert_eq!(
            argmax(&[f32::NEG_INFINITY, -1e30, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]),
            Some(2)
        );
        // NaNs (never in real logits): an index, not a panic.
        let mut v = noise(64, 9, 1.0);
        v[0] = f32::NAN;
        v[17] = f32::NAN;
        assert!(argmax(&v).is_some_and(|i| i < 64));
    }

    #[test]
    fn peak_and_energy_agree_with_the_portable_loops() {
        for (seed, &n) in LENGTHS.iter().enumerate() {
            let v = noise(n, 100 + seed as u64, 0.8);
            assert_eq!(peak_abs(&v), portable::peak_abs(&v), "n = {n}");
            let (fast, slow) = (sum_squares(&v), portable::sum_squares(&v));
            assert!(
                (fast - slow).abs() <= 1e-5 * slow.max(1e-6),
                "n = {n}: {fast} vs {slow}"
            );
        }
        let mut v = vec![0.1f32; 37];
        v[36] = -0.9;
        assert_eq!(peak_abs(&v), 0.9);
        assert_eq!(peak_abs(&[]), 0.0);
        assert_eq!(sum_squares(&[]), 0.0);
        assert_eq!(sum_squares(&[3.0; 9]), 81.0);
    }

    #[test]
    fn dot_and_axpy_agree_with_the_portable_loops() {
        for (seed, &n) in LENGTHS.iter().enumerate() {
            let a = noise(n, 200 + seed as u64, 0.5);
            let b = noise(n, 300 + seed as u64, 0.5);
            let (fast, slow) = (dot(&a, &b), portable::dot(&a, &b));
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let scale = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum::<f32>();
            assert!((fast - slow).abs() <= 1e-5 * scale.max(1e-6), "n = {n}");
            assert!(
                (fast as f64 - naive).abs() <= 1e-5 * scale.max(1e-6) as f64,
                "n = {n}"
            );
            let (mut y_fast, mut y_slow) = (b.clone(), b.clone());
            axpy(&mut y_fast, -0.37, &a);
            portable::axpy(&mut y_slow, -0.37, &a);
            for (i, (f, s)) in y_fast.iter().zip(&y_slow).enumerate() {
                // A fused multiply-add rounds once: within an ulp or two of the plain loop.
                assert!((f - s).abs() <= 1e-6, "n = {n}, i = {i}: {f} vs {s}");
            }
        }
        assert_eq!(dot(&[], &[]), 0.0);
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
        let mut y = [1.0f32; 9];
        axpy(&mut y, 2.0, &[0.5; 9]);
        assert_eq!(y, [2.0; 9]);
    }

    #[test]
    fn pcm_conversion_is_exact() {
        for &n in &LENGTHS {
            let pcm: Vec<i16> = (0..n)
                .map(|i| (i as i64 * 7919 % 65536 - 32768) as i16)
                .collect();
            let (mut fast, mut slow) = (vec![0.0; n], vec![0.0; n]);
            i16_to_f32(&pcm, &mut fast);
            portable::i16_to_f32(&pcm, &mut slow);
            assert_eq!(fast, slow, "n = {n}");
        }
        let mut out = [0.0f32; 9];
        i16_to_f32(
            &[i16::MIN, -1, 0, 1, i16::MAX, 16384, -16384, 2, 3],
            &mut out,
        );
        assert_eq!(
            out[..7],
            [
                -1.0,
                -1.0 / 32768.0,
                0.0,
                1.0 / 32768.0,
                32767.0 / 32768.0,
                0.5,
                -0.5
            ]
        );
    }

    #[test]
    fn this_build_uses_the_expected_path() {
        let want = if cfg!(target_arch = "aarch64") {
            "neon"
        } else {
            "portable"
        };
        assert_eq!(implementation(), want);
    }
}
