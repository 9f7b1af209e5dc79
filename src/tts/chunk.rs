//! Cuts a streamed reply into speakable chunks: whole sentences, or clauses when a sentence
//! runs long, so speech can start after the first chunk instead of after the whole reply.

/// A clause boundary (`,` `;` `:`) ends a chunk once it holds this many characters.
pub const CLAUSE_AFTER: usize = 80;
/// With no boundary at all, a chunk is cut at a space past this many characters.
pub const HARD_LIMIT: usize = 200;
/// The first chunk of a reply is cut sooner (first audio is what the user waits for).
pub const FIRST_CLAUSE_AFTER: usize = 40;
pub const FIRST_HARD_LIMIT: usize = 100;

/// Words that end with a period without ending the sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "no", "approx", "jr", "sr",
    "inc", "ltd", "u.s", "a.m", "p.m",
];

#[derive(Debug, Default)]
pub struct Chunker {
    pending: String,
    /// Chunks released so far in this reply.
    released: usize,
}

impl Chunker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a streamed piece of text; returns the chunks it completed.
    pub fn push(&mut self, piece: &str) -> Vec<String> {
        self.pending.push_str(piece);
        let mut out = Vec::new();
        while let Some(end) = self.boundary() {
            let chunk: String = self.pending.drain(..end).collect();
            let chunk = chunk.trim();
            if chunk.chars().any(char::is_alphanumeric) {
                out.push(chunk.to_string());
                self.released += 1;
            }
        }
        out
    }

    /// Ends the reply: whatever is left, if it holds anything speakable.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        self.released = 0;
        let rest = rest.trim();
        rest.chars()
            .any(char::is_alphanumeric)
            .then(|| rest.to_string())
    }

    /// Byte index just past the first chunk boundary in `pending`, if one is certain yet.
    fn boundary(&self) -> Option<usize> {
        let text = &self.pending;
        let (clause_after, hard_limit) = if self.released == 0 {
            (FIRST_CLAUSE_AFTER, FIRST_HARD_LIMIT)
        } else {
            (CLAUSE_AFTER, HARD_LIMIT)
        };
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut clause = None;
        for (i, &(pos, c)) in chars.iter().enumerate() {
            // A boundary needs the next character to know it is one ("3.5", "e.g.").
            let Some(&(next_pos, next)) = chars.get(i + 1) else {
                break;
            };
            let is_space_after = next.is_whitespace();
            match c {
                '.' | '!' | '?' | '…'
                    if is_space_after && (c != '.' || !ends_with_abbreviation(&text[..pos])) =>
                {
                    return Some(next_pos);
                }
                '\n' => return Some(next_pos),
                ',' | ';' | ':' if is_space_after && pos >= clause_after => {
                    clause.get_or_insert(next_pos);
                }
                _ => {}
            }
        }
        if clause.is_some() {
            return clause;
        }
        if text.len() > hard_limit {
            let cut = (0..=hard_limit)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0)
                .max(text.chars().next().map_or(0, char::len_utf8));
            return text[..cut].rfind(' ').map(|p| p + 1).or(Some(cut));
        }
        None
    }
}

fn ends_with_abbreviation(before_period: &str) -> bool {
    let word = before_period
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_lowercase();
    if word.len() == 1 && word.chars().all(char::is_alphabetic) {
        return true; // an initial: "J. R. R. Tolkien"
    }
    ABBREVIATIONS.contains(&word.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &str, piece: usize) -> Vec<String> {
        let mut c = Chunker::new();
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        for p in chars.chunks(piece) {
            out.extend(c.push(&p.iter().collect::<String>()));
        }
        out.extend(c.finish());
        out
    }

    #[test]
    fn sentences_come_out_as_soon_as_they_end() {
        let mut c = Chunker::new();
        assert!(c.push("The capital of France").is_empty());
        assert!(c.push(" is Paris.").is_empty()); // the period might be "Paris.com"
        assert_eq!(c.push(" It is"), vec!["The capital of France is Paris."]);
        assert_eq!(c.finish().as_deref(), Some("It is"));
    }

    #[test]
    fn abbreviations_initials_and_decimals_do_not_cut() {
        let text = "Dr. Smith met J. R. R. Tolkien at 3.5 p.m. on Monday. Then he left!";
        for piece in [1, 3, 100] {
            assert_eq!(
                stream(text, piece),
                vec![
                    "Dr. Smith met J. R. R. Tolkien at 3.5 p.m. on Monday.",
                    "Then he left!"
                ],
                "piece {piece}"
            );
        }
    }

    #[test]
    fn long_sentences_split_at_clauses_then_at_spaces() {
        let long = format!(
            "{}, and then {}",
            "word ".repeat(20).trim(),
            "more ".repeat(10)
        );
        let chunks = stream(&long, 4);
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert!(chunks[0].ends_with(','));
        let endless = "blah ".repeat(100);
        let chunks = stream(&endless, 7);
        assert!(chunks.len() >= 3);
        assert!(chunks[0].len() <= FIRST_HARD_LIMIT, "{chunks:?}");
        assert!(chunks.iter().all(|c| c.len() <= HARD_LIMIT), "{chunks:?}");
        assert_eq!(chunks.join(" ").split_whitespace().count(), 100);
        let digits = "10:11".repeat(60); // no space at all: cut anyway
        assert!(stream(&digits, 5).iter().all(|c| c.len() <= HARD_LIMIT));
    }

    #[test]
    fn punctuation_only_is_not_spoken() {
        assert!(stream("... !! ", 2).is_empty());
        assert!(Chunker::new().finish().is_none());
    }
}
