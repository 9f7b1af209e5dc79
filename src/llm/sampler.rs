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
        if p.temperature == 0.0 {
            return argmax(logits).unwrap_or(0) as u32;
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
        let mass: f32 = cand.iter().map(|c| c.0).sum();
        let mut r = self.rng.random::<f32>() * mass;
        for c in cand.iter() {
            r -= c.0;
            if r <= 0.0 {
                return c.1;
            }
        }
        cand[cand.len() - 1].1
    }
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
