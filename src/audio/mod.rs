//! Audio in: 16 kHz mono `f32` from a WAV file ([`wav`]) or a live device ([`capture`]).
//!
//! Both sit behind [`Source`], so the end-of-utterance detector and everything after it
//! cannot tell a microphone from a recording; every test and the demo use files.

pub mod aec;
pub mod capture;
pub mod clock;
pub mod doubletalk;
pub mod nlms;
pub mod playback;
pub mod replay;
pub mod resample;
pub mod speaker;
pub mod volume;
pub mod wav;

use anyhow::Result;

/// The rate every stage after audio-in works at (Whisper's and Silero's).
pub const SAMPLE_RATE: u32 = 16_000;

/// A stream of 16 kHz mono samples in [-1, 1].
pub trait Source: Send {
    /// Fills the start of `buf` with the next samples and returns how many; blocks until at
    /// least one is available. `Ok(0)` means the stream has ended.
    fn read(&mut self, buf: &mut [f32]) -> Result<usize>;

    /// Samples lost because the consumer fell behind (always 0 for files).
    fn overruns(&self) -> u64 {
        0
    }
}

/// A source over samples already in memory (a decoded WAV file, a test signal).
pub struct MemorySource {
    samples: Vec<f32>,
    pos: usize,
}

impl MemorySource {
    pub fn new(samples: Vec<f32>) -> Self {
        Self { samples, pos: 0 }
    }
}

impl Source for MemorySource {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize> {
        let n = buf.len().min(self.samples.len() - self.pos);
        buf[..n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Moves the next `n` samples of a ring into `out` (cleared first); `what` names the ring in
/// the error. For the non-real-time readers of the capture ring and the echo tap.
pub fn take_from_ring(
    ring: &mut rtrb::Consumer<f32>,
    n: usize,
    out: &mut Vec<f32>,
    what: &str,
) -> Result<()> {
    let chunk = ring
        .read_chunk(n)
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    let (a, b) = chunk.as_slices();
    out.clear();
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    chunk.commit_all();
    Ok(())
}

/// Averages interleaved frames of `channels` samples into mono, appending to `out`.
pub fn downmix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_frames() {
        let mut out = Vec::new();
        downmix_into(&[1.0, 0.0, 0.5, 0.5, -1.0, 1.0], 2, &mut out);
        assert_eq!(out, vec![0.5, 0.5, 0.0]);
    }

    #[test]
    fn memory_source_reads_to_the_end() {
        let mut src = MemorySource::new((0..10).map(|i| i as f32).collect());
        let mut buf = [0.0; 4];
        assert_eq!(src.read(&mut buf).unwrap(), 4);
        assert_eq!(src.read(&mut buf).unwrap(), 4);
        assert_eq!(src.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], &[8.0, 9.0]);
        assert_eq!(src.read(&mut buf).unwrap(), 0);
    }
}
