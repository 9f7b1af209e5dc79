//! Picking the next token from the logits: greedy, or temperature with top-k / top-p, and a
//! repetition penalty over the recent tokens. Seeded, so a run can be replayed exactly.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// Sampling settings. `temperature == 0` is greedy (and ignores top-k/top-p and the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub repetition_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            repetition_penalty: 1.1,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.temperature >= 0.0 && self.temperature.is_finite(),
            "temperature must be a finite number >= 0, got {}",
            self.temperature
        );
        anyhow::ensure!(
            self.top_p > 0.0 && self.top_p <= 1.0,
            "top-p must be in (0, 1]"
        );
        anyhow::ensure!(
            self.repetition_penalty > 0.0,
            "repetition penalty must be > 0"
        );
        Ok(())
    }
}

/// Index of the largest value (the first one on ties); `None` for an empty slice.
/// NEON on aarch64 (see [`crate::simd`]).
pub use crate::simd::argmax;

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    scratch: Vec<(f32, u32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = StdRng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            scratch: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Chooses the next token. `logits` is modified in place by the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], recent: &[u32]) -> u32 {
        if !self.distribution(logits, recent) {
            return argmax(logits).unwrap_or(0) as u32;
        }
        let mass: f32 = self.scratch.iter().map(|c| c.0).sum();
        let r = self.rng.random::<f32>() * mass;
        pick(&self.scratch, r, None)
    }

    /// Judges a drafted token `draft` against the distribution [`Sampler::sample`] would draw
    /// from, by the speculative-sampling rule for a deterministic draft: kept with probability
    /// p(draft); otherwise replaced by a draw from p with the draft removed, renormalized. The
    /// token this returns is then distributed exactly as one from `sample` (greedy: kept iff
    /// it is the argmax, else replaced by the argmax).
    pub fn judge(&mut self, logits: &mut [f32], recent: &[u32], draft: u32) -> Verdict {
        if !self.distribution(logits, recent) {
            let best = argmax(logits).unwrap_or(0) as u32;
            return if best == draft {
                Verdict::Keep
            } else {
                Verdict::Replace(best)
            };
        }
        let mass: f32 = self.scratch.iter().map(|c| c.0).sum();
        let p_draft = self
            .scratch
            .iter()
            .find(|c| c.1 == draft)
            .map_or(0.0, |c| c.0 / mass);
        if p_draft > 0.0 && self.rng.random::<f32>() < p_draft {
            return Verdict::Keep;
        }
        let rest = mass - p_draft * mass;
        if rest <= 0.0 {
            // All the mass sits on the draft (rounding): keeping it is what `sample` would do.
            return Verdict::Keep;
        }
        let r = self.rng.random::<f32>() * rest;
        Verdict::Replace(pick(&self.scratch, r, Some(draft)))
    }

    /// Applies the repetition penalty to `logits`; for sampling (temperature > 0) leaves the
    /// candidates (unnormalized probability, token) after temperature, top-k and top-p in
    /// `scratch`, largest first, and returns true; for greedy returns false.
    fn distribution(&mut self, logits: &mut [f32], recent: &[u32]) -> bool {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            let start = recent.len().saturating_sub(p.repeat_last_n);
            let mut seen = recent[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    // The llama.cpp / HF convention: shrink positive logits, grow negative ones.
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.temperature == 0.0 || logits.is_empty() {
            return false;
        }
        let cand = &mut self.scratch;
        cand.clear();
        cand.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        let k = if p.top_k == 0 {
            cand.len()
        } else {
            p.top_k.min(cand.len())
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            cand.truncate(k);
        }
        cand.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let max = cand[0].0;
        let mut total = 0.0;
        for c in cand.iter_mut() {
            c.0 = ((c.0 - max) / p.temperature).exp();
            total += c.0;
        }
        // Keep the smallest prefix whose probability reaches top-p.
        let mut kept = 0.0;
        let mut n = 0;
        for c in cand.iter() {
            kept += c.0 / total;
            n += 1;
            if kept >= p.top_p {
                break;
            }
        }
        cand.truncate(n);
        true
    }
}

/// What verification makes of a drafted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The draft stands.
    Keep,
    /// The draft is rejected; this token is said in its place (and the rest of the draft is
    /// dropped).
    Replace(u32),
}

/// The candidate where the running mass passes `r` (`skip` left out); the last one if
/// rounding leaves some over.
fn pick(cand: &[(f32, u32)], mut r: f32, skip: Option<u32>) -> u32 {
    let mut last = cand[0].1;
    for c in cand.iter().filter(|c| Some(c.1) != skip) {
        r -= c.0;
        last = c.1;
        if r <= 0.0 {
            return c.1;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&mut [0.1, 3.0, -1.0, 2.9], &[]), 1);
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn repetition_penalty_can_change_the_greedy_choice() {
        let params = SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(params);
        // Token 1 leads, but was just said: 3.0 / 2 < 2.0.
        assert_eq!(s.sample(&mut [0.0, 3.0, 2.0], &[1]), 2);
    }

    #[test]
    fn top_k_one_is_greedy_and_seeds_replay() {
        let logits = [0.5f32, 0.4, 0.3, 0.2, 0.1];
        let k1 = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(k1);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits.clone(), &[]), 0);
        }
        let hot = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 7,
            ..Default::default()
        };
        let draw = |params: &SamplingParams| {
            let mut s = Sampler::new(params.clone());
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        let a = draw(&hot);
        assert_eq!(a, draw(&hot), "same seed, same tokens");
        assert!(a.iter().any(|&t| t != 0), "temperature 1 explores: {a:?}");
        let other = SamplingParams {
            seed: 8,
            ..hot.clone()
        };
        assert_ne!(a, draw(&other));
    }

    /// The token a verdict leaves (the draft, or its replacement) follows the sampling
    /// distribution itself, whatever the draft: the speculative-sampling rule's promise.
    #[test]
    fn judged_drafts_follow_the_sampling_distribution() {
        let params = SamplingParams {
            temperature: 0.8,
            top_k: 4,
            top_p: 0.9,
            repetition_penalty: 1.3,
            seed: 11,
            ..Default::default()
        };
        let logits = [1.0f32, 2.0, 0.5, 1.8, -1.0, 1.2];
        let recent = [1u32];
        // The exact distribution: penalty on token 1, temperature, top-4, top-p 0.9.
        let mut s = Sampler::new(params.clone());
        assert!(s.distribution(&mut logits.clone(), &recent));
        let mass: f32 = s.scratch.iter().map(|c| c.0).sum();
        let mut want = [0.0f64; 6];
        for c in &s.scratch {
            want[c.1 as usize] = (c.0 / mass) as f64;
        }
        assert_eq!(want[4], 0.0, "outside top-k");
        let n = 40_000;
        // Drafts: the likeliest token, an unlikely one, one outside the candidates.
        for draft in [3u32, 5, 4] {
            let mut s = Sampler::new(params.clone());
            let mut got = [0usize; 6];
            let mut kept = 0;
            for _ in 0..n {
                let t = match s.judge(&mut logits.clone(), &recent, draft) {
                    Verdict::Keep => {
                        kept += 1;
                        draft
                    }
                    Verdict::Replace(t) => {
                        assert_ne!(t, draft, "a replacement is never the draft");
                        t
                    }
                };
                got[t as usize] += 1;
            }
            for t in 0..6 {
                let f = got[t] as f64 / n as f64;
                assert!(
                    (f - want[t]).abs() < 0.012,
                    "draft {draft}: token {t} drawn {f:.4}, want {:.4}",
                    want[t]
                );
            }
            let keep_rate = kept as f64 / n as f64;
            assert!((keep_rate - want[draft as usize]).abs() < 0.012);
        }
    }

    #[test]
    fn greedy_verdicts_keep_only_the_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy());
        let logits = [0.1f32, 3.0, -1.0, 2.9];
        assert_eq!(s.judge(&mut logits.clone(), &[], 1), Verdict::Keep);
        assert_eq!(s.judge(&mut logits.clone(), &[], 3), Verdict::Replace(1));
    }

    #[test]
    fn top_p_keeps_only_the_head_of_the_distribution() {
        // One token holds almost all the mass: top-p 0.5 must always pick it.
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            repetition_penalty: 1.0,
            seed: 3,
            ..Default::default()
        };
        let mut s = Sampler::new(params);
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [10.0, 0.0, 0.0, 0.0], &[]), 0);
        }
    }
}
