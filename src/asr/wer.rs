//! Word error rate, after the light normalization ASR evaluations use: lower case, no
//! punctuation, numbers under a hundred spelled out, hyphens split.

/// Words of `text`, normalized for scoring.
pub fn normalize(text: &str) -> Vec<String> {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut words = Vec::new();
    for w in cleaned.split_whitespace() {
        let w = w.trim_matches('\'');
        if w.is_empty() {
            continue;
        }
        match w.parse::<u32>() {
            Ok(n) if n < 100 => words.extend(spell(n).split(' ').map(str::to_string)),
            _ => words.push(w.to_string()),
        }
    }
    words
}

fn spell(n: u32) -> String {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    match n {
        0..=19 => ONES[n as usize].to_string(),
        _ if n.is_multiple_of(10) => TENS[(n / 10) as usize].to_string(),
        _ => format!("{} {}", TENS[(n / 10) as usize], ONES[(n % 10) as usize]),
    }
}

/// Word-level edit distance between `reference` and `hypothesis` (after [`normalize`]) and
/// the reference's word count.
pub fn errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize(reference);
    let h = normalize(hypothesis);
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
    fn normalizes_case_punctuation_and_numbers() {
        assert_eq!(
            normalize("Set a timer for 10 minutes, please! It's 42."),
            [
                "set", "a", "timer", "for", "ten", "minutes", "please", "it's", "forty", "two"
            ]
        );
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
