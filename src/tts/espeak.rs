//! espeak-ng as a child process: text on stdin, a WAV stream on stdout.
//!
//! espeak-ng is GPL-3.0; running the program (rather than linking libespeak-ng) keeps edgevox's
//! own licence free of it, and the process costs ~10 ms per chunk.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use super::{Audio, Voice};

#[derive(Debug, Clone)]
pub struct Espeak {
    pub program: String,
    /// An espeak-ng voice name ("en-gb-x-rp", "en-us", ...).
    pub voice: String,
    /// Words per minute.
    pub speed: u32,
}

impl Default for Espeak {
    fn default() -> Self {
        Self {
            program: "espeak-ng".into(),
            voice: "en-gb-x-rp".into(),
            speed: 150,
        }
    }
}

impl Voice for Espeak {
    fn synthesize(&mut self, text: &str) -> Result<Audio> {
        let mut child = Command::new(&self.program)
            .args([
                "-v",
                &self.voice,
                "-s",
                &self.speed.to_string(),
                "--stdin",
                "--stdout",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (install it: apt-get install espeak-ng)",
                    self.program
                )
            })?;
        let written = child
            .stdin
            .take()
            .context("espeak-ng stdin")?
            .write_all(text.as_bytes());
        let out = child.wait_with_output().context("waiting for espeak-ng")?;
        // Exit status 127 with nothing read: the program never started (where exec failures
        // reach the parent late, as under qemu-user, spawn() succeeds regardless).
        if written.is_err() || out.status.code() == Some(127) {
            bail!(
                "{} exited ({}) without reading the text{}: is it installed? \
                 (apt-get install espeak-ng)",
                self.program,
                out.status,
                stderr_note(&out.stderr)
            );
        }
        if !out.status.success() {
            bail!(
                "{} -v {} failed ({}){}",
                self.program,
                self.voice,
                out.status,
                stderr_note(&out.stderr)
            );
        }
        parse_stream_wav(&out.stdout).context("reading espeak-ng's output")
    }

    fn name(&self) -> String {
        format!("espeak-ng {} {} wpm", self.voice, self.speed)
    }
}

fn stderr_note(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    match text.trim() {
        "" => String::new(),
        t => format!(": {t}"),
    }
}

/// A 16-bit PCM mono WAV written to a pipe: its size fields are placeholders, so the data runs
/// to the end of the stream.
fn parse_stream_wav(bytes: &[u8]) -> Result<Audio> {
    ensure!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a WAV stream ({} bytes)",
        bytes.len()
    );
    let mut pos = 12;
    let mut rate = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into()?) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            ensure!(body + 16 <= bytes.len(), "truncated fmt chunk");
            let f = &bytes[body..body + 16];
            let format = u16::from_le_bytes([f[0], f[1]]);
            let channels = u16::from_le_bytes([f[2], f[3]]);
            let bits = u16::from_le_bytes([f[14], f[15]]);
            ensure!(
                format == 1 && channels == 1 && bits == 16,
                "expected 16-bit mono PCM, got format {format}, {channels} ch, {bits} bit"
            );
            rate = Some(u32::from_le_bytes(f[4..8].try_into()?));
        } else if id == b"data" {
            let rate = rate.context("data before fmt")?;
            let data = &bytes[body..];
            let pcm: Vec<i16> = data
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            let mut samples = vec![0.0; pcm.len()];
            crate::simd::i16_to_f32(&pcm, &mut samples);
            return Ok(Audio { samples, rate });
        }
        pos = body + size.min(bytes.len() - body);
    }
    bail!("no data chunk")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_streamed_wav_with_placeholder_sizes() {
        let mut w = b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00".to_vec();
        w.extend_from_slice(&22_050u32.to_le_bytes());
        w.extend_from_slice(&44_100u32.to_le_bytes());
        w.extend_from_slice(&[2, 0, 16, 0]);
        w.extend_from_slice(b"data\xff\xff\xff\x7f");
        w.extend_from_slice(&[0, 0x40, 0, 0xc0]);
        let a = parse_stream_wav(&w).unwrap();
        assert_eq!(a.rate, 22_050);
        assert_eq!(a.samples, vec![0.5, -0.5]);
        assert!(parse_stream_wav(b"garbage").is_err());
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let mut e = Espeak {
            program: "/nonexistent/espeak-ng".into(),
            ..Default::default()
        };
        let err = format!("{:#}", e.synthesize("hello").unwrap_err());
        assert!(err.contains("apt-get install espeak-ng"), "{err}");
    }
}
