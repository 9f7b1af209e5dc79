//! WAV files in and out, by hound: any PCM (8/16/24/32-bit) or 32-bit float WAV at
//! 8–48 kHz with one or two channels, returned as 16 kHz mono `f32`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use hound::{SampleFormat, WavReader, WavSpec, WavWriter};

use super::{SAMPLE_RATE, downmix_into, resample};

/// Sample rates a WAV may have (telephone to studio).
pub const RATES: std::ops::RangeInclusive<u32> = 8_000..=48_000;
/// Channel counts accepted (mono, stereo).
pub const MAX_CHANNELS: u16 = 2;

/// What a WAV file holds, before conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits: u16,
    pub float: bool,
    pub frames: u32,
}

impl WavInfo {
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / self.sample_rate as f64
    }
}

/// Reads `path` and returns its audio as 16 kHz mono samples in [-1, 1].
pub fn read_16k_mono(path: &Path) -> Result<(Vec<f32>, WavInfo)> {
    let (interleaved, info) = read_interleaved(path)?;
    let mut mono = Vec::with_capacity(interleaved.len() / info.channels as usize);
    downmix_into(&interleaved, info.channels as usize, &mut mono);
    let samples = resample::to_16k(&mono, info.sample_rate)
        .with_context(|| format!("resampling {}", path.display()))?;
    Ok((samples, info))
}

/// Reads `path` as interleaved `f32` at its own rate and channel count.
pub fn read_interleaved(path: &Path) -> Result<(Vec<f32>, WavInfo)> {
    let reader = WavReader::open(path)
        .with_context(|| format!("{}: not a readable WAV file", path.display()))?;
    let spec = reader.spec();
    let info = WavInfo {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits: spec.bits_per_sample,
        float: spec.sample_format == SampleFormat::Float,
        frames: reader.duration(),
    };
    check_spec(path, &spec)?;
    let samples: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: reading float samples", path.display()))?,
        (SampleFormat::Int, bits) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .with_context(|| format!("{}: reading {bits}-bit samples", path.display()))?
        }
        (SampleFormat::Float, bits) => bail!(
            "{}: {bits}-bit float samples are not supported (32-bit float is)",
            path.display()
        ),
    };
    if !samples.len().is_multiple_of(spec.channels as usize) {
        bail!("{}: the last frame is incomplete", path.display());
    }
    Ok((samples, info))
}

fn check_spec(path: &Path, spec: &WavSpec) -> Result<()> {
    if !RATES.contains(&spec.sample_rate) {
        bail!(
            "{}: sample rate {} Hz is outside the supported {}–{} Hz",
            path.display(),
            spec.sample_rate,
            RATES.start(),
            RATES.end()
        );
    }
    if spec.channels == 0 || spec.channels > MAX_CHANNELS {
        bail!(
            "{}: {} channels; only mono and stereo are supported",
            path.display(),
            spec.channels
        );
    }
    if spec.sample_format == SampleFormat::Int && ![8, 16, 24, 32].contains(&spec.bits_per_sample) {
        bail!(
            "{}: {}-bit integer samples are not supported (8, 16, 24 or 32)",
            path.display(),
            spec.bits_per_sample
        );
    }
    Ok(())
}

/// Writes 16-bit PCM mono at `rate`, clipping to [-1, 1].
pub fn write_mono_i16(path: &Path, samples: &[f32], rate: u32) -> Result<()> {
    let spec = WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let mut w =
        WavWriter::create(path, spec).with_context(|| format!("creating {}", path.display()))?;
    for &s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    w.finalize()
        .with_context(|| format!("finishing {}", path.display()))?;
    Ok(())
}

/// Duration of `samples` at 16 kHz, in seconds.
pub fn seconds_16k(samples: &[f32]) -> f64 {
    samples.len() as f64 / SAMPLE_RATE as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("edgevox-wav-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(path: &Path, spec: WavSpec, frames: usize) {
        let mut w = WavWriter::create(path, spec).unwrap();
        for i in 0..frames * spec.channels as usize {
            let x = ((i / spec.channels as usize) as f32 * 0.05).sin() * 0.5;
            match (spec.sample_format, spec.bits_per_sample) {
                (SampleFormat::Float, _) => w.write_sample(x).unwrap(),
                (SampleFormat::Int, 8) => w.write_sample((x * 127.0) as i8).unwrap(),
                (SampleFormat::Int, 16) => w.write_sample((x * 32767.0) as i16).unwrap(),
                (SampleFormat::Int, b) => w
                    .write_sample((x * ((1i64 << (b - 1)) - 1) as f32) as i32)
                    .unwrap(),
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn reads_every_supported_format_as_16k_mono() {
        let d = dir();
        for (rate, channels, bits, fmt) in [
            (8_000, 1, 16, SampleFormat::Int),
            (16_000, 2, 24, SampleFormat::Int),
            (44_100, 1, 32, SampleFormat::Int),
            (48_000, 2, 32, SampleFormat::Float),
            (22_050, 1, 8, SampleFormat::Int),
        ] {
            let path = d.join(format!("t{rate}_{channels}_{bits}.wav"));
            let spec = WavSpec {
                channels,
                sample_rate: rate,
                bits_per_sample: bits,
                sample_format: fmt,
            };
            write(&path, spec, rate as usize / 2);
            let (x, info) = read_16k_mono(&path).unwrap();
            assert_eq!(info.channels, channels);
            assert!((x.len() as i64 - 8_000).abs() <= 2, "{path:?}: {}", x.len());
            let peak = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((0.4..0.6).contains(&peak), "{path:?}: peak {peak}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_use_with_the_file_named() {
        let d = dir();
        let bad_rate = d.join("rate.wav");
        write(
            &bad_rate,
            WavSpec {
                channels: 1,
                sample_rate: 96_000,
                bits_per_sample: 16,
                sample_format: SampleFormat::Int,
            },
            100,
        );
        let e = format!("{:#}", read_16k_mono(&bad_rate).unwrap_err());
        assert!(e.contains("rate.wav") && e.contains("96000 Hz"), "{e}");

        let six = d.join("six.wav");
        write(
            &six,
            WavSpec {
                channels: 6,
                sample_rate: 16_000,
                bits_per_sample: 16,
                sample_format: SampleFormat::Int,
            },
            100,
        );
        let e = format!("{:#}", read_16k_mono(&six).unwrap_err());
        assert!(e.contains("six.wav") && e.contains("6 channels"), "{e}");

        let garbage = d.join("garbage.wav");
        std::fs::write(&garbage, b"RIFF\x10\x00\x00\x00WAVEjunkjunk").unwrap();
        let e = format!("{:#}", read_16k_mono(&garbage).unwrap_err());
        assert!(
            e.contains("garbage.wav") && e.contains("not a readable WAV"),
            "{e}"
        );

        let missing = d.join("missing.wav");
        let e = format!("{:#}", read_16k_mono(&missing).unwrap_err());
        assert!(e.contains("missing.wav"), "{e}");
    }

    #[test]
    fn empty_file_is_empty_not_an_error() {
        let d = dir();
        let p = d.join("empty.wav");
        write_mono_i16(&p, &[], 16_000).unwrap();
        let (x, info) = read_16k_mono(&p).unwrap();
        assert!(x.is_empty());
        assert_eq!(info.frames, 0);
    }

    #[test]
    fn round_trips_16_bit() {
        let d = dir();
        let p = d.join("rt.wav");
        let x: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.01).sin() * 0.9).collect();
        write_mono_i16(&p, &x, 16_000).unwrap();
        let (y, _) = read_16k_mono(&p).unwrap();
        assert_eq!(y.len(), x.len());
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-4));
    }
}
