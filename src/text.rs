//! Text compared by meaning, not by spelling.
//!
//! Whisper spells the same audio differently from one machine to the next ("play-hamlet" on
//! one, "play Hamlet." on another, "2" or "two"), and a language model's reply changes its
//! punctuation when its arithmetic changes. Everything that compares recognized or generated
//! text (the WER, the tests, the benches) goes through [`words`]: lower case, punctuation and
//! hyphens to spaces, curly apostrophes straightened, digit groups joined ("1,000"), and
//! number words turned into digits ("twenty-five" → "25", "a hundred and five" → "105"), so
//! both spellings of a number meet in one form.

/// The words of `text` in their compared form (see the module's doc).
pub fn words(text: &str) -> Vec<String> {
    let mut raw = Vec::new();
    for token in clean(text).split_whitespace() {
        let token = token.trim_matches('\'');
        if !token.is_empty() {
            raw.push(token.to_string());
        }
    }
    numbers_to_digits(&raw)
}

/// [`words`] joined by single spaces.
pub fn normalize(text: &str) -> String {
    words(text).join(" ")
}

/// How many times the words of `phrase` stand, in order and side by side, in `text` (both
/// normalized). A word also matches its possessive ("Hamlet's" counts for "hamlet").
pub fn occurrences(text: &str, phrase: &str) -> usize {
    let hay = words(text);
    let needle = words(phrase);
    if needle.is_empty() || needle.len() > hay.len() {
        return 0;
    }
    hay.windows(needle.len())
        .filter(|w| w.iter().zip(&needle).all(|(h, n)| same_word(h, n)))
        .count()
}

/// Whether `text` mentions `phrase` (see [`occurrences`]).
pub fn mentions(text: &str, phrase: &str) -> bool {
    occurrences(text, phrase) > 0
}

fn same_word(heard: &str, wanted: &str) -> bool {
    heard == wanted || heard.strip_suffix("'s") == Some(wanted)
}

/// Lower case; everything but letters, digits and apostrophes becomes a space, except a `.`
/// or `,` between two digits ("3.5" is kept, "1,000" becomes "1000").
fn clean(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let between_digits = i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        match c {
            '\'' | '\u{2019}' | '\u{2018}' => out.push('\''),
            ',' if between_digits => {}
            '.' if between_digits => out.push('.'),
            c if c.is_alphanumeric() => out.extend(c.to_lowercase()),
            _ => out.push(' '),
        }
    }
    out
}

/// What a number word contributes to the number being read.
#[derive(Clone, Copy, PartialEq)]
enum Num {
    /// zero..nineteen
    Small(u64),
    /// twenty, thirty, ..., ninety
    Tens(u64),
    Hundred,
    /// thousand, million, billion
    Scale(u64),
}

/// zero..nineteen, and the tens from twenty: shared by reading and spelling numbers.
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
const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn number_word(w: &str) -> Option<Num> {
    if let Some(i) = ONES.iter().position(|s| *s == w) {
        return Some(Num::Small(i as u64));
    }
    if let Some(i) = TENS.iter().position(|s| *s == w) {
        return Some(Num::Tens(20 + 10 * i as u64));
    }
    match w {
        "hundred" => Some(Num::Hundred),
        "thousand" => Some(Num::Scale(1_000)),
        "million" => Some(Num::Scale(1_000_000)),
        "billion" => Some(Num::Scale(1_000_000_000)),
        _ => None,
    }
}

/// A number being read from words: `total` of the finished scale groups, `group` the part
/// below a thousand, `last` the previous word, `scale` the smallest scale used so far.
struct Reading {
    total: u64,
    group: u64,
    last: Num,
    scale: u64,
}

impl Reading {
    fn start(n: Num) -> Option<Reading> {
        let (group, scale) = match n {
            Num::Small(v) | Num::Tens(v) => (v, u64::MAX),
            Num::Hundred => (100, u64::MAX),
            // "thousand" alone is not read as a number.
            Num::Scale(_) => return None,
        };
        Some(Reading {
            total: 0,
            group,
            last: n,
            scale,
        })
    }

    /// Takes `n` into the number, or says it does not continue it.
    fn take(&mut self, n: Num) -> bool {
        let ok = match (self.last, n) {
            // "zero" stands alone; nothing follows a teen or a unit but a hundred or a scale.
            (Num::Small(0), _) | (_, Num::Small(0)) => false,
            (Num::Tens(_), Num::Small(v)) if v < 10 => {
                self.group += v;
                true
            }
            (Num::Hundred | Num::Scale(_), Num::Small(v) | Num::Tens(v)) => {
                self.group += v;
                true
            }
            (Num::Small(v), Num::Hundred) if self.group == v => {
                self.group = v * 100;
                true
            }
            (Num::Small(_) | Num::Tens(_) | Num::Hundred, Num::Scale(s)) if s < self.scale => {
                self.total += self.group * s;
                self.group = 0;
                self.scale = s;
                true
            }
            _ => false,
        };
        if ok {
            self.last = n;
        }
        ok
    }

    fn value(&self) -> u64 {
        self.total + self.group
    }
}

/// Runs of number words become one number in digits; "and" inside a number ("one hundred and
/// five") is part of it; "a hundred" / "a thousand" read as one.
fn numbers_to_digits(words: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let (lead_a, first) = match (words[i].as_str(), words.get(i + 1)) {
            ("a", Some(next))
                if matches!(number_word(next), Some(Num::Hundred | Num::Scale(_))) =>
            {
                (true, Num::Small(1))
            }
            (w, _) => match number_word(w) {
                Some(n) => (false, n),
                None => {
                    out.push(words[i].clone());
                    i += 1;
                    continue;
                }
            },
        };
        let Some(mut reading) = Reading::start(first) else {
            out.push(words[i].clone());
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < words.len() {
            if let Some(n) = number_word(&words[j])
                && reading.take(n)
            {
                j += 1;
                continue;
            }
            // "and" between a hundred or a scale and the rest of the number.
            if words[j] == "and"
                && matches!(reading.last, Num::Hundred | Num::Scale(_))
                && let Some(n @ (Num::Small(1..) | Num::Tens(_))) =
                    words.get(j + 1).and_then(|w| number_word(w))
                && reading.take(n)
            {
                j += 2;
                continue;
            }
            break;
        }
        if lead_a && j == i + 1 {
            // "a" followed by a word that did not make a number after all.
            out.push(words[i].clone());
            i += 1;
            continue;
        }
        out.push(reading.value().to_string());
        i = j;
    }
    out
}

/// Spellings of `text` that Whisper gives for the same audio on different machines: other
/// case, words joined by hyphens, a trailing period or none, numbers in digits or in words.
/// The tests check their assertions on recognized speech against all of them, so a check that
/// passes on this machine's spelling passes on another's.
pub fn machine_variants(text: &str) -> Vec<String> {
    let plain: Vec<&str> = text.split_whitespace().collect();
    let mut out = vec![
        text.to_string(),
        text.to_uppercase(),
        text.to_lowercase(),
        format!("{}.", text.trim_end_matches(['.', '?', '!'])),
        text.trim_end_matches(['.', '?', '!']).to_string(),
    ];
    // Every pair of neighbours joined by a hyphen, once from the first word, once from the
    // second ("play-hamlet").
    for offset in 0..2 {
        let mut joined = String::new();
        for (k, w) in plain.iter().enumerate() {
            if k > 0 {
                joined.push(if k % 2 == offset { ' ' } else { '-' });
            }
            joined.push_str(w);
        }
        out.push(joined);
    }
    // Digits spelled out and number words written as digits.
    out.push(
        plain
            .iter()
            .map(|w| spell_digits(w))
            .collect::<Vec<_>>()
            .join(" "),
    );
    out.push(normalize(text));
    out
}

/// A word made only of digits (with its punctuation) spelled out below a hundred.
fn spell_digits(word: &str) -> String {
    let core = word.trim_matches(|c: char| !c.is_alphanumeric());
    match core.parse::<u64>() {
        Ok(n) if n < 100 => word.replace(core, &spell_under_100(n)),
        _ => word.to_string(),
    }
}

fn spell_under_100(n: u64) -> String {
    match n {
        0..=19 => ONES[n as usize].to_string(),
        _ if n.is_multiple_of(10) => TENS[(n / 10 - 2) as usize].to_string(),
        _ => format!(
            "{}-{}",
            TENS[(n / 10 - 2) as usize],
            ONES[(n % 10) as usize]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_punctuation_and_hyphens_do_not_matter() {
        for heard in [
            "Who wrote the play Hamlet?",
            "who wrote the play-hamlet",
            "WHO WROTE THE PLAY HAMLET.",
            "Who wrote the play, Hamlet!",
            "Who-wrote the-play Hamlet",
        ] {
            assert_eq!(normalize(heard), "who wrote the play hamlet", "{heard:?}");
            assert!(mentions(heard, "Hamlet"), "{heard:?}");
            assert!(mentions(heard, "the play hamlet"), "{heard:?}");
        }
        assert_eq!(normalize("It\u{2019}s Paris\u{2026}"), "it's paris");
        assert!(mentions("Hamlet's author", "hamlet"));
        assert!(!mentions("Hamletson", "hamlet"), "whole words only");
        assert!(!mentions("hamlet play", "play hamlet"), "in order");
        assert!(!mentions("", "hamlet"));
        assert!(!mentions("hamlet", ""));
    }

    #[test]
    fn number_words_and_digits_meet() {
        for (a, b) in [
            ("2 plus 2", "two plus two"),
            ("Set a timer for 10 minutes.", "set a timer for ten minutes"),
            ("twenty-five", "25"),
            ("twenty five", "25"),
            ("one hundred and five", "105"),
            ("a hundred", "100"),
            ("three thousand two hundred and forty-one", "3241"),
            ("two million", "2000000"),
            ("1,000 ships", "one thousand ships"),
            ("It costs 3.5 dollars", "it costs 3.5 dollars"),
        ] {
            assert_eq!(normalize(a), normalize(b), "{a:?} vs {b:?}");
        }
        // Runs that are not one number stay several.
        assert_eq!(normalize("one two three"), "1 2 3");
        assert_eq!(normalize("ten thirty"), "10 30");
        assert_eq!(normalize("zero one"), "0 1");
        assert_eq!(normalize("a thousand and one nights"), "1001 nights");
        assert_eq!(normalize("a cat and one dog"), "a cat and 1 dog");
        assert_eq!(normalize("thousand"), "thousand");
        assert_eq!(normalize("two and two"), "2 and 2");
        assert_eq!(normalize("1984"), "1984");
        assert_eq!(normalize("10:30"), "10 30");
    }

    #[test]
    fn counts_repeated_phrases() {
        assert_eq!(
            occurrences("Sorry. Sorry, I didn't get that. sorry!", "sorry"),
            3
        );
        assert_eq!(occurrences("the cat, the cat", "the cat"), 2);
    }

    /// What failed a fresh clone's `make test`: "play-hamlet" where this machine hears "play
    /// Hamlet". Every variant keeps every key word and the whole sentence's normal form.
    #[test]
    fn machine_variants_keep_their_meaning() {
        for said in [
            "Who wrote the play Hamlet?",
            "How many legs does a spider have? 8.",
            "Set a timer for 25 minutes.",
            "The capital of France is Paris.",
        ] {
            let variants = machine_variants(said);
            assert!(variants.iter().any(|v| v.contains('-')), "{variants:?}");
            assert!(variants.contains(&said.to_uppercase()));
            for v in &variants {
                assert_eq!(normalize(v), normalize(said), "{v:?}");
                for w in said.split_whitespace() {
                    assert!(mentions(v, w), "{v:?} lost {w:?}");
                }
            }
        }
        assert!(
            machine_variants("Who wrote the play Hamlet?")
                .contains(&"Who wrote-the play-Hamlet?".into())
        );
        assert!(machine_variants("I have 8 legs").contains(&"I have eight legs".into()));
    }
}
