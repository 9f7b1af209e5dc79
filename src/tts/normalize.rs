//! Makes reply text read sensibly: markup dropped, symbols and common abbreviations spelled
//! out. Numbers are left to the voice (espeak-ng reads "21st", "3.5" and "1,000" well).

/// Text as it should be spoken.
pub fn for_speech(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 16);
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        match c {
            '*' | '#' | '`' | '_' | '|' | '~' => s.push(' '),
            '&' => s.push_str(" and "),
            '%' => s.push_str(" percent"),
            '+' => s.push_str(" plus "),
            '=' => s.push_str(" equals "),
            '@' => s.push_str(" at "),
            '°' => match next {
                Some('C') => s.push_str(" degrees Celsius"),
                Some('F') => s.push_str(" degrees Fahrenheit"),
                _ => s.push_str(" degrees"),
            },
            'C' | 'F' if i > 0 && chars[i - 1] == '°' => {}
            '$' | '€' | '£' if next.is_some_and(|n| n.is_ascii_digit()) => {
                // "$5" -> "5 dollars": move the currency after the number.
                let number = number_at(&chars[i + 1..]);
                let unit = match c {
                    '$' => "dollars",
                    '€' => "euros",
                    _ => "pounds",
                };
                s.push_str(&format!("\u{0}{number} {unit}\u{0}"));
            }
            _ => s.push(c),
        }
    }
    // The currency case wrote the number itself; drop the original digits that follow it.
    let s = drop_repeated_numbers(&s);
    let mut words: Vec<String> = Vec::new();
    for w in s.split_whitespace() {
        let lower = w.to_lowercase();
        let (core, tail) = match lower.strip_suffix(',') {
            Some(c) => (c.to_string(), ","),
            None => (lower.clone(), ""),
        };
        let spoken = match core.as_str() {
            "e.g." => Some("for example"),
            "i.e." => Some("that is"),
            "etc." => Some("et cetera"),
            "vs." | "vs" => Some("versus"),
            "dr." => Some("Doctor"),
            "mr." => Some("Mister"),
            "mrs." => Some("Missus"),
            "approx." => Some("approximately"),
            _ => None,
        };
        match spoken {
            Some(x) => words.push(format!("{x}{tail}")),
            None => words.push(w.to_string()),
        }
    }
    words.join(" ")
}

fn drop_repeated_numbers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('\u{0}') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('\u{0}').unwrap_or(after.len());
        out.push(' ');
        out.push_str(&after[..end]);
        let tail = after.get(end + 1..).unwrap_or("");
        let chars: Vec<char> = tail.chars().collect();
        let skip: usize = number_at(&chars).len();
        rest = &tail[skip..];
        if rest.starts_with(char::is_alphanumeric) {
            out.push(' ');
        }
    }
    out.push_str(rest);
    out
}

/// The number at the start of `chars`: digits, with `.` or `,` only between digits.
fn number_at(chars: &[char]) -> String {
    let mut n = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let between =
            (c == '.' || c == ',') && i > 0 && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
        if c.is_ascii_digit() || between {
            n.push(c);
        } else {
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_and_abbreviations_are_spelled_out() {
        assert_eq!(
            for_speech("It costs $5, e.g. today."),
            "It costs 5 dollars, for example today."
        );
        assert_eq!(
            for_speech("About 30% of **cats** & dogs"),
            "About 30 percent of cats and dogs"
        );
        assert_eq!(
            for_speech("It is 21°C in Paris"),
            "It is 21 degrees Celsius in Paris"
        );
        assert_eq!(
            for_speech("Dr. Who vs. Mr. Hyde"),
            "Doctor Who versus Mister Hyde"
        );
        assert_eq!(for_speech("plain text, kept."), "plain text, kept.");
    }
}
