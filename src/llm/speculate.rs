//! Prompt-lookup (n-gram) drafting for speculative decoding: replies echo what came before
//! ("What is the capital of France?" → "The capital of France is …"), so the tokens that
//! followed the latest earlier occurrence of the last few tokens are a cheap guess at the next
//! ones. [`super::Chat`] verifies a draft in one forward pass over all its positions and keeps
//! the longest prefix that greedy decoding itself would have produced, so the reply is
//! token-for-token the plain greedy one.

/// Longest and shortest n-gram matched against the conversation.
const MAX_NGRAM: usize = 3;
const MIN_NGRAM: usize = 2;

/// Up to `k` tokens that followed the latest earlier occurrence of the longest suffix of
/// `seq` (3 tokens, else 2) found in it, stopping before any of `stops`. Empty when nothing
/// matches.
pub fn draft(seq: &[u32], k: usize, stops: &[u32], out: &mut Vec<u32>) {
    out.clear();
    if k == 0 {
        return;
    }
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if seq.len() <= n {
            continue;
        }
        let tail = &seq[seq.len() - n..];
        // Latest match first: the most recent context is the likeliest to continue the same way.
        for start in (0..seq.len() - n).rev() {
            if &seq[start..start + n] == tail {
                for &t in seq[start + n..].iter().take(k) {
                    if stops.contains(&t) {
                        break;
                    }
                    out.push(t);
                }
                if !out.is_empty() {
                    return;
                }
            }
        }
    }
}

/// How many tokens to draft: a step over `1 + k` positions costs more than one over 1 (each
/// extra row of a block product is more integer work: +47% a row measured on x86_64, `bench
/// llm`'s `step_ms_by_new_positions`), and a draft is only worth what verification keeps. The
/// policy keeps two running estimates — `alpha`, the chance a drafted token is kept given the
/// ones before it were, and `row_cost`, the extra time of a row as a share of a plain step,
/// from the steps' own timings — and drafts the `k` that maximizes the expected tokens kept,
/// `α + α² + … + α^k`, minus the cost, `k · row_cost`; none when no `k` gains. So on a board
/// where extra rows are cheap (bandwidth-bound) it drafts more, and where they are dear, less.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Most tokens drafted at once (0: no speculation).
    pub max_draft: usize,
    alpha: f64,
    row_cost: f64,
    /// Running time of a plain (one-position) step, seconds.
    plain_step: Option<f64>,
    /// Steps left before drafting is tried again after it stopped paying.
    pause: usize,
    /// Tokens drafted and accepted so far (for the reply's report).
    pub drafted: usize,
    pub accepted: usize,
}

/// Steps without drafting before trying again.
const PAUSE: usize = 8;
/// Running-average weight of a new observation.
const NEW: f64 = 0.3;

impl Policy {
    pub fn new(max_draft: usize) -> Policy {
        Policy {
            max_draft,
            alpha: 0.7,
            row_cost: 0.45,
            plain_step: None,
            pause: 0,
            drafted: 0,
            accepted: 0,
        }
    }

    /// How many tokens to draft now.
    pub fn budget(&mut self) -> usize {
        if self.max_draft == 0 {
            return 0;
        }
        if self.pause > 0 {
            self.pause -= 1;
            return 0;
        }
        let (mut best, mut best_gain, mut kept, mut p) = (0, 0.0, 0.0, 1.0);
        for k in 1..=self.max_draft {
            p *= self.alpha;
            kept += p;
            let gain = kept - k as f64 * self.row_cost;
            if gain > best_gain {
                (best, best_gain) = (k, gain);
            }
        }
        if best == 0 {
            // Not worth it now; try a single token again later, with a less sure estimate.
            self.pause = PAUSE;
            self.alpha = 0.5 * self.alpha + 0.5 * 0.7;
        }
        best
    }

    /// Records a verified draft of `drafted` tokens of which `accepted` were kept.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        self.drafted += drafted;
        self.accepted += accepted;
        // `accepted` successes, then a failure unless the whole draft was kept.
        let trials = accepted + usize::from(accepted < drafted);
        let rate = accepted as f64 / trials as f64;
        self.alpha = (1.0 - NEW) * self.alpha + NEW * rate;
    }

    /// Records how long a step over `rows` new positions took.
    pub fn record_time(&mut self, rows: usize, seconds: f64) {
        if rows == 1 {
            self.plain_step = Some(match self.plain_step {
                Some(t) => (1.0 - NEW) * t + NEW * seconds,
                None => seconds,
            });
        } else if let Some(t) = self.plain_step.filter(|t| *t > 0.0) {
            let cost = ((seconds / t - 1.0) / (rows - 1) as f64).clamp(0.0, 2.0);
            self.row_cost = (1.0 - NEW) * self.row_cost + NEW * cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_follow_the_latest_match_and_stop_before_a_stop_token() {
        let mut out = Vec::new();
        // "capital of France is" seen before: after "of France" comes "is Paris".
        let seq = [1, 10, 11, 12, 13, 14, 2, 9, 10, 11, 12];
        draft(&seq, 4, &[], &mut out);
        assert_eq!(out, [13, 14, 2, 9]);
        draft(&seq, 2, &[], &mut out);
        assert_eq!(out, [13, 14]);
        draft(&seq, 4, &[2], &mut out);
        assert_eq!(out, [13, 14], "cut before the stop token");
        // The latest of two matches wins.
        let seq = [5, 6, 7, 5, 6, 8, 5, 6];
        draft(&seq, 1, &[], &mut out);
        assert_eq!(out, [8]);
        // Nothing to match, k = 0, too short.
        draft(&[1, 2, 3, 4], 3, &[], &mut out);
        assert!(out.is_empty());
        draft(&seq, 0, &[], &mut out);
        assert!(out.is_empty());
        draft(&[7], 3, &[], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_policy_drafts_more_when_drafts_are_kept_and_rows_are_cheap() {
        let mut p = Policy::new(4);
        let start = p.budget();
        assert!((1..=2).contains(&start), "{start}");
        for _ in 0..10 {
            p.record(4, 4);
        }
        assert_eq!(p.budget(), 4, "every draft kept");
        // Rows as dear as a whole step: drafting never pays.
        p.record_time(1, 0.010);
        for _ in 0..20 {
            p.record_time(3, 0.030);
        }
        assert_eq!(p.budget(), 0);
        for _ in 0..PAUSE {
            assert_eq!(p.budget(), 0, "paused");
        }
        // Rows at 30% of a step, drafts half kept: one token (0.5 − 0.3 beats 0.75 − 0.6).
        for _ in 0..20 {
            p.record_time(3, 0.016);
            p.record(2, 1);
        }
        assert_eq!(p.budget(), 1);
        // Rows nearly free: even half-kept drafts are worth the longest draft.
        for _ in 0..20 {
            p.record_time(3, 0.0101);
        }
        assert_eq!(p.budget(), 4);
        assert_eq!(Policy::new(0).budget(), 0);
        assert!(p.drafted > 0 && p.accepted > 0);
    }
}
