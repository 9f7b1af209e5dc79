//! Byte-level BPE tokens back to text, piece by piece as they are generated.
//!
//! GPT-2-style tokenizers spell every byte as a printable character. Each token is mapped
//! back to its raw bytes once at load; while streaming, bytes accumulate until they form
//! valid UTF-8, so a character split across two tokens is emitted whole and never as `�`.

use std::collections::HashMap;

/// GPT-2's byte → printable character table, inverted.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut map = HashMap::new();
    let mut extra = 0u32;
    for b in 0u32..=255 {
        let c = if printable.contains(&b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        map.insert(char::from_u32(c).expect("valid scalar"), b as u8);
    }
    map
}

/// The raw bytes each token id stands for. Special tokens map to nothing: they are never
/// spoken or shown.
pub fn token_bytes(vocab: &[(String, u32)], special: &[u32]) -> Vec<Vec<u8>> {
    let table = unicode_to_byte();
    let size = vocab
        .iter()
        .map(|(_, id)| *id as usize + 1)
        .max()
        .unwrap_or(0);
    let mut out = vec![Vec::new(); size];
    for (piece, id) in vocab {
        if special.contains(id) {
            continue;
        }
        out[*id as usize] = piece
            .chars()
            .flat_map(|c| {
                table.get(&c).copied().map(|b| vec![b]).unwrap_or_else(|| {
                    let mut buf = [0u8; 4];
                    c.encode_utf8(&mut buf).as_bytes().to_vec()
                })
            })
            .collect();
    }
    out
}

/// Joins token bytes into valid UTF-8 text pieces.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds a token's bytes; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Invalid (not merely incomplete) bytes: emit them lossily rather than stall.
            Err(_) => self.pending.len(),
        };
        let rest = self.pending.split_off(valid);
        let done = std::mem::replace(&mut self.pending, rest);
        String::from_utf8_lossy(&done).into_owned()
    }

    /// Whatever is left at the end of a reply, lossily.
    pub fn finish(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_round_trips_every_byte() {
        let t = unicode_to_byte();
        assert_eq!(t.len(), 256);
        assert_eq!(t[&'Ġ'], b' ');
        assert_eq!(t[&'Ċ'], b'\n');
        assert_eq!(t[&'a'], b'a');
    }

    #[test]
    fn tokens_map_to_bytes_and_specials_to_nothing() {
        let vocab = vec![("<|im_end|>".to_string(), 0), ("ĠParis".to_string(), 1)];
        let bytes = token_bytes(&vocab, &[0]);
        assert!(bytes[0].is_empty());
        assert_eq!(bytes[1], b" Paris");
    }

    #[test]
    fn a_character_split_across_tokens_is_emitted_whole() {
        let mut s = Utf8Stream::default();
        let e_acute = "é".as_bytes();
        assert_eq!(s.push(b"caf"), "caf");
        assert_eq!(s.push(&e_acute[..1]), "");
        assert_eq!(s.push(&e_acute[1..]), "é");
        assert_eq!(s.push(&[0xFF]), "\u{FFFD}");
        assert_eq!(s.push(&"€".as_bytes()[..2]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
