//! Word error rate on the words [`crate::text::words`] compares (case, punctuation, hyphens
//! and number spellings do not count as errors).

use crate::text::words;

/// Word-level edit distance between `reference` and `hypothesis` (after [`words`]) and
/// the reference's word count.
pub fn errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = words(reference);
    let h = words(hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0; h.len() + 1];
    for (i, rw) in r.iter().enumerate() {
        cur[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[h.len()], r.len())
}

/// Word error rate of `hypothesis` against `reference` (0 = perfect; can exceed 1).
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (e, n) = errors(reference, hypothesis);
    if n == 0 {
        return if e == 0 { 0.0 } else { 1.0 };
    }
    e as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_differences_are_not_errors() {
        assert_eq!(
            wer("Who wrote the play Hamlet?", "who wrote the play-hamlet"),
            0.0
        );
        assert_eq!(
            wer("Set a timer for ten minutes.", "Set a timer for 10 minutes"),
            0.0
        );
        assert_eq!(wer("It's forty-two.", "it\u{2019}s 42"), 0.0);
    }

    #[test]
    fn counts_substitutions_insertions_deletions() {
        assert_eq!(wer("the cat sat", "the cat sat"), 0.0);
        assert_eq!(errors("the cat sat", "the bat sat"), (1, 3));
        assert_eq!(errors("the cat sat", "the cat sat down"), (1, 3));
        assert_eq!(errors("the cat sat", "cat sat"), (1, 3));
        assert_eq!(errors("a b c d", ""), (4, 4));
        assert_eq!(
            wer(
                "What is the capital of France?",
                "what is the capital on france"
            ),
            1.0 / 6.0
        );
        assert_eq!(wer("", ""), 0.0);
    }
}
