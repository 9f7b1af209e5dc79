//! Sample-rate conversion by rubato's FFT resampler (band-limited, fixed ratio): device rates
//! to 16 kHz for hearing, the voice's rate to the speaker's for speaking.

use anyhow::{Context, Result};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _};

use super::SAMPLE_RATE;

const CHUNK: usize = 1024;

/// Streaming mono resampler between two fixed rates. Buffers are allocated once, in `new`, so
/// `push` allocates only when the caller's output vector grows.
pub struct Resampler {
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    /// Output samples still to drop: the resampler's start-up delay.
    skip: usize,
    /// Input samples handed to the resampler and output samples appended so far.
    consumed: u64,
    produced: u64,
}

impl Resampler {
    /// From `rate` to 16 kHz.
    pub fn to_16k(rate: u32) -> Result<Self> {
        Self::new(rate, SAMPLE_RATE)
    }

    pub fn new(rate: u32, to: u32) -> Result<Self> {
        anyhow::ensure!(rate > 0 && to > 0, "sample rate 0 Hz");
        if rate == to {
            return Ok(Self {
                inner: None,
                pending: Vec::new(),
                out_buf: Vec::new(),
                skip: 0,
                consumed: 0,
                produced: 0,
            });
        }
        let inner = Fft::<f32>::new(rate as usize, to as usize, CHUNK, 1, FixedSync::Input)
            .with_context(|| format!("creating a {rate} Hz -> {to} Hz resampler"))?;
        let out_buf = vec![0.0; inner.output_frames_max()];
        let skip = inner.output_delay();
        Ok(Self {
            inner: Some(inner),
            pending: Vec::with_capacity(2 * CHUNK),
            out_buf,
            skip,
            consumed: 0,
            produced: 0,
        })
    }

    /// Resamples `input` (mono, at the source rate), appending output samples to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<()> {
        if self.inner.is_none() {
            out.extend_from_slice(input);
            return Ok(());
        }
        self.pending.extend_from_slice(input);
        let mut start = 0;
        while self.pending.len() - start >= CHUNK {
            self.process(start, None, out)?;
            self.consumed += CHUNK as u64;
            start += CHUNK;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// Ends the stream: resamples what is pending (padded with silence), flushes the
    /// resampler's delay line, and appends exactly as many samples as the input's length maps to.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        if self.inner.is_none() {
            return Ok(());
        }
        let target = (self.consumed + self.pending.len() as u64) as f64 * self.ratio();
        let target = target.round() as u64;
        let left = self.pending.len();
        let mut partial = Some(left);
        while self.produced < target {
            self.pending.clear();
            self.pending.resize(CHUNK, 0.0);
            let before = out.len();
            self.process(0, partial.take().or(Some(0)), out)?;
            if out.len() == before && self.skip == 0 {
                break;
            }
        }
        let excess = (self.produced - target.min(self.produced)) as usize;
        out.truncate(out.len() - excess.min(out.len()));
        self.produced -= excess as u64;
        self.pending.clear();
        Ok(())
    }

    fn ratio(&self) -> f64 {
        self.inner.as_ref().map_or(1.0, |r| r.resample_ratio())
    }

    fn process(&mut self, start: usize, partial: Option<usize>, out: &mut Vec<f32>) -> Result<()> {
        let inner = self.inner.as_mut().expect("process needs a resampler");
        let input = InterleavedSlice::new(&self.pending[start..start + CHUNK], 1, CHUNK)
            .context("resampler input")?;
        let cap = self.out_buf.len();
        let mut output =
            InterleavedSlice::new_mut(&mut self.out_buf[..], 1, cap).context("resampler output")?;
        let indexing = partial.map(|n| Indexing {
            partial_len: Some(n),
            ..Default::default()
        });
        let (_, produced) = inner
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .context("resampling")?;
        let drop = self.skip.min(produced);
        self.skip -= drop;
        out.extend_from_slice(&self.out_buf[drop..produced]);
        self.produced += (produced - drop) as u64;
        Ok(())
    }
}

/// Resamples a whole mono clip to 16 kHz.
pub fn to_16k(samples: &[f32], rate: u32) -> Result<Vec<f32>> {
    resample(samples, rate, SAMPLE_RATE)
}

/// Resamples a whole mono clip from `rate` to `to`.
pub fn resample(samples: &[f32], rate: u32, to: u32) -> Result<Vec<f32>> {
    let mut r = Resampler::new(rate, to)?;
    let mut out = Vec::with_capacity((samples.len() as f64 * r.ratio()) as usize + CHUNK);
    r.push(samples, &mut out)?;
    r.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn keeps_length_and_pitch() {
        for rate in [8_000, 22_050, 44_100, 48_000] {
            let x = sine(440.0, rate, 1.0);
            let y = to_16k(&x, rate).unwrap();
            assert!(
                (y.len() as i64 - 16_000).abs() <= 2,
                "{rate} Hz: {} samples",
                y.len()
            );
            // Correlate the middle with a 440 Hz sine at 16 kHz: same phase, no delay.
            let reference = sine(440.0, 16_000, 1.0);
            let mid = 4_000..12_000;
            let dot: f32 = mid.clone().map(|i| y[i] * reference[i]).sum();
            let norm: f32 = mid.clone().map(|i| reference[i] * reference[i]).sum();
            assert!(dot / norm > 0.95, "{rate} Hz: correlation {}", dot / norm);
        }
    }

    #[test]
    fn upsamples_a_voice_to_a_speaker_rate() {
        let x = sine(440.0, 22_050, 0.5);
        let y = resample(&x, 22_050, 48_000).unwrap();
        assert!((y.len() as i64 - 24_000).abs() <= 2, "{} samples", y.len());
        let reference = sine(440.0, 48_000, 0.5);
        let mid = 6_000..18_000;
        let dot: f32 = mid.clone().map(|i| y[i] * reference[i]).sum();
        let norm: f32 = mid.clone().map(|i| reference[i] * reference[i]).sum();
        assert!(dot / norm > 0.95, "correlation {}", dot / norm);
    }

    #[test]
    fn streaming_in_odd_pieces_matches_one_shot() {
        let x = sine(300.0, 48_000, 0.5);
        let whole = to_16k(&x, 48_000).unwrap();
        let mut r = Resampler::to_16k(48_000).unwrap();
        let mut out = Vec::new();
        for piece in x.chunks(333) {
            r.push(piece, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        assert_eq!(out.len(), whole.len());
        assert!(out.iter().zip(&whole).all(|(a, b)| (a - b).abs() < 1e-5));
    }
}
