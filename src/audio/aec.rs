//! Acoustic echo cancellation: the assistant's own voice, as it comes back through the
//! microphone, subtracted before anything listens.
//!
//! The speaker's renderer copies every block it plays to the echo tap (see
//! [`super::playback`]). [`EchoCanceller`] wraps the microphone [`Source`]: it lines the tap
//! up with the microphone sample for sample, brings it to 16 kHz, and runs an NLMS adaptive
//! filter ([`super::nlms::Nlms`]) that learns the echo path (the speaker, the air, the microphone and both
//! devices' buffering: up to `tail_ms`) and subtracts its estimate. What is left is the user,
//! so voice detection, barge-in and Whisper hear the user rather than the reply.
//!
//! The filter only learns while the speaker alone is heard: the Geigel double-talk rule
//! ([`super::doubletalk`]) stops adaptation while the microphone is louder than `double_talk_ratio` times what the
//! speaker played within the tail (the user is talking), and for [`HOLD_BLOCKS`] after. A
//! filter gone numerically wrong (a NaN, or an impossible echo path) is reset.
//!
//! Alignment: sample `j` of the tap was played at the same time as microphone sample
//! `j + offset`. A replay renders and records on one clock (`offset` 0); live, each stream
//! stamps when its first block was played or captured (the callback's time, corrected by the
//! latency cpal reports: [`super::clock::stamp_shifted`]) and the difference gives `offset`. What remains
//! (latency the driver does not report, the air) is part of the echo path the filter learns. Two
//! devices on two clocks drift apart, which no canceller of this kind follows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use log::{info, warn};

use super::doubletalk::Geigel;
use super::nlms::Nlms;
use super::resample::Resampler;
use super::{SAMPLE_RATE, Source, take_from_ring};
use crate::simd;

/// Double-talk decisions are taken per block of 10 ms.
const BLOCK: usize = SAMPLE_RATE as usize / 100;
/// Blocks without adaptation after double talk was last detected (250 ms: a talker's quiet
/// moments between syllables must not count as the speaker alone).
pub const HOLD_BLOCKS: u32 = 25;
/// Mean square of the tail under which the speaker counts as silent (about -60 dBFS).
const SILENT_POWER: f32 = 1e-6;
/// Sum of squared filter weights beyond which the filter counts as broken: an echo 10 times
/// louder than the speaker's signal.
const MAX_PATH_ENERGY: f32 = 100.0;
/// The most tap audio kept waiting for the microphone (at 16 kHz).
const MAX_FAR_BACKLOG: usize = 4 * SAMPLE_RATE as usize;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AecOptions {
    /// Longest echo path the filter models, in milliseconds (taps = 16 per ms).
    pub tail_ms: u32,
    /// Geigel threshold: the microphone louder than this fraction of the speaker means the
    /// user is talking. Must exceed the speaker-to-microphone coupling (the echo guard's
    /// ratio is the same quantity).
    pub double_talk_ratio: f32,
    /// NLMS step size, in (0, 1]: larger converges faster, smaller is steadier.
    pub step: f32,
}

impl Default for AecOptions {
    fn default() -> Self {
        Self {
            tail_ms: 64,
            double_talk_ratio: 0.6,
            step: 0.5,
        }
    }
}

impl AecOptions {
    pub fn taps(&self) -> usize {
        (self.tail_ms as usize * SAMPLE_RATE as usize / 1000).max(16)
    }

    pub fn check(&self) -> Result<()> {
        anyhow::ensure!(
            (1..=1000).contains(&self.tail_ms),
            "echo canceller tail must be within 1..1000 ms, not {}",
            self.tail_ms
        );
        anyhow::ensure!(
            self.step > 0.0 && self.step <= 1.0,
            "echo canceller step must be within (0, 1], not {}",
            self.step
        );
        anyhow::ensure!(
            self.double_talk_ratio > 0.0 && self.double_talk_ratio.is_finite(),
            "double-talk ratio must be positive, not {}",
            self.double_talk_ratio
        );
        Ok(())
    }
}

/// How the tap lines up with the microphone.
pub enum Align {
    /// Both start together on one clock (a replay).
    SameClock,
    /// Each stream stamped its first block ([`super::clock::stamp`]).
    Stamps {
        mic: Arc<AtomicU64>,
        speaker: Arc<AtomicU64>,
    },
}

/// What the canceller did, for logs and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct AecStats {
    /// Microphone energy and residual energy over the blocks the filter learned from (the
    /// speaker alone), after the first second of them.
    pub echo_in: f64,
    pub echo_out: f64,
    /// Seconds of microphone audio during which the filter learned.
    pub adapted_s: f64,
    /// Blocks judged double talk.
    pub double_talk_blocks: u64,
    /// Times the filter went wrong and was reset.
    pub resets: u64,
    /// Microphone samples passed through because the speaker's samples for them were not
    /// there (yet): before alignment, or the tap late.
    pub passed_through: u64,
}

impl AecStats {
    /// Echo return loss enhancement: how much quieter the echo is after cancelling, in dB.
    pub fn erle_db(&self) -> Option<f64> {
        (self.echo_in > 0.0 && self.echo_out > 0.0)
            .then(|| 10.0 * (self.echo_in / self.echo_out).log10())
    }
}

/// A [`Source`] that is the microphone with the speaker's echo removed.
pub struct EchoCanceller {
    mic: Box<dyn Source>,
    tap: rtrb::Consumer<f32>,
    tap_rate: u32,
    resampler: Resampler,
    tap_raw: Vec<f32>,
    /// The tap at 16 kHz, from `far_pos` on not yet used.
    far: Vec<f32>,
    far_pos: usize,
    /// Tap samples (16 kHz) to drop before the next one used.
    far_skip: u64,
    align: Option<Align>,
    /// Microphone samples read so far.
    mic_read: u64,
    nlms: Nlms,
    geigel: Geigel,
    /// Peaks of the last blocks of speaker signal, covering the tail.
    far_peaks: Vec<f32>,
    far_peak_pos: usize,
    hold: u32,
    x_block: [f32; BLOCK],
    d_block: [f32; BLOCK],
    warned_backlog: bool,
    stats: AecStats,
}

impl EchoCanceller {
    /// Cancels the echo of `tap` (the speaker's signal at `tap_rate`) from `mic`.
    pub fn new(
        mic: Box<dyn Source>,
        tap: rtrb::Consumer<f32>,
        tap_rate: u32,
        align: Align,
        opts: &AecOptions,
    ) -> Result<Self> {
        opts.check()?;
        super::clock::init();
        let taps = opts.taps();
        Ok(Self {
            mic,
            tap,
            tap_rate,
            resampler: Resampler::new(tap_rate, SAMPLE_RATE)?,
            tap_raw: Vec::with_capacity(8192),
            far: Vec::with_capacity(MAX_FAR_BACKLOG),
            far_pos: 0,
            far_skip: 0,
            align: Some(align),
            mic_read: 0,
            nlms: Nlms::new(taps, opts.step),
            geigel: Geigel::new(opts.double_talk_ratio),
            far_peaks: vec![0.0; taps.div_ceil(BLOCK) + 1],
            far_peak_pos: 0,
            hold: 0,
            x_block: [0.0; BLOCK],
            d_block: [0.0; BLOCK],
            warned_backlog: false,
            stats: AecStats::default(),
        })
    }

    pub fn stats(&self) -> AecStats {
        self.stats
    }

    /// Moves what the tap holds to `far`, at 16 kHz.
    fn pull_tap(&mut self) -> Result<()> {
        self.far.drain(..self.far_pos);
        self.far_pos = 0;
        let n = self.tap.slots();
        if n > 0 {
            take_from_ring(&mut self.tap, n, &mut self.tap_raw, "echo tap")?;
            self.resampler.push(&self.tap_raw, &mut self.far)?;
        }
        // Alignment and late samples first.
        let drop = (self.far_skip as usize).min(self.far.len());
        self.far.drain(..drop);
        self.far_skip -= drop as u64;
        if self.far.len() > MAX_FAR_BACKLOG {
            // The speaker is far ahead of the microphone: something stalled. Keep the newest.
            if !self.warned_backlog {
                warn!(
                    "echo canceller: the speaker's signal is {:.1} s ahead of the microphone; dropping the oldest",
                    self.far.len() as f64 / SAMPLE_RATE as f64
                );
                self.warned_backlog = true;
            }
            let excess = self.far.len() - MAX_FAR_BACKLOG;
            self.far.drain(..excess);
        }
        Ok(())
    }

    /// Once both streams have started: which tap sample goes with the next microphone one.
    fn try_align(&mut self) {
        let offset = match &self.align {
            None => return,
            Some(Align::SameClock) => 0i64,
            Some(Align::Stamps { mic, speaker }) => {
                let (m, s) = (mic.load(Ordering::Acquire), speaker.load(Ordering::Acquire));
                if m == 0 || s == 0 {
                    return;
                }
                // Tap sample j was played with microphone sample j + offset.
                ((s as i128 - m as i128) * SAMPLE_RATE as i128 / 1_000_000_000) as i64
            }
        };
        let first_far = self.mic_read as i64 - offset;
        if first_far >= 0 {
            self.far_skip += first_far as u64;
        } else {
            // The speaker started after this microphone sample: silence until it did.
            let zeros = (-first_far) as usize;
            self.far
                .splice(self.far_pos..self.far_pos, std::iter::repeat_n(0.0, zeros));
        }
        info!(
            "echo canceller: {} taps ({} ms), speaker at {} Hz, offset {offset} samples",
            self.nlms.taps(),
            self.nlms.taps() * 1000 / SAMPLE_RATE as usize,
            self.tap_rate
        );
        self.align = None;
    }

    /// Cancels the echo in one block (at most [`BLOCK`] samples) of `buf`.
    fn cancel_block(&mut self, buf: &mut [f32]) {
        let n = buf.len();
        let have = (self.far.len() - self.far_pos).min(n);
        if have < n {
            // The tap is late: these samples pass unchanged, and their speaker samples are
            // dropped when they come.
            self.far_skip += (n - have) as u64;
            self.stats.passed_through += (n - have) as u64;
        }
        if have == 0 {
            return;
        }
        let x = &self.far[self.far_pos..self.far_pos + have];
        self.far_pos += have;
        self.x_block[..have].copy_from_slice(x);
        self.d_block[..have].copy_from_slice(&buf[..have]);

        // Geigel double-talk detection over the tail.
        self.far_peaks[self.far_peak_pos] = simd::peak_abs(&self.x_block[..have]);
        self.far_peak_pos = (self.far_peak_pos + 1) % self.far_peaks.len();
        let far_peak = self.far_peaks.iter().fold(0.0f32, |m, &p| m.max(p));
        let mic_peak = simd::peak_abs(&self.d_block[..have]);
        if self.geigel.talking_over(mic_peak, far_peak) {
            if far_peak > 0.0 {
                self.stats.double_talk_blocks += 1;
            }
            self.hold = HOLD_BLOCKS;
        } else if self.hold > 0 {
            self.hold -= 1;
        }
        let speaker_on = self.nlms.far_power() > SILENT_POWER;
        let adapt = self.hold == 0 && speaker_on;

        let pairs = self.x_block[..have].iter().zip(&self.d_block[..have]);
        for (out, (&x, &d)) in buf.iter_mut().zip(pairs) {
            *out = self.nlms.process(x, d, adapt);
        }
        let d_energy = simd::sum_squares(&self.d_block[..have]) as f64;
        let e_energy = simd::sum_squares(&buf[..have]) as f64;
        // NLMS with a step under 2 is stable; what can still go wrong is numeric (a NaN from
        // a corrupt sample) or an absurd path (more gain than any speaker next to a
        // microphone). Then start over, and pass this block unchanged.
        if !e_energy.is_finite() || simd::sum_squares(self.nlms.weights()) > MAX_PATH_ENERGY {
            self.nlms.reset();
            self.stats.resets += 1;
            buf[..have].copy_from_slice(&self.d_block[..have]);
            return;
        }
        if adapt {
            self.stats.adapted_s += have as f64 / SAMPLE_RATE as f64;
            if self.stats.adapted_s > 1.0 {
                self.stats.echo_in += d_energy;
                self.stats.echo_out += e_energy;
            }
        }
    }
}

impl Source for EchoCanceller {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize> {
        let n = self.mic.read(buf)?;
        if n == 0 {
            return Ok(0);
        }
        self.pull_tap()?;
        self.try_align();
        if self.align.is_some() {
            // Not lined up yet (a stream has not started): nothing to cancel with.
            self.mic_read += n as u64;
            self.stats.passed_through += n as u64;
            return Ok(n);
        }
        self.mic_read += n as u64;
        for block in buf[..n].chunks_mut(BLOCK) {
            if self.far_skip > 0 {
                self.pull_tap()?;
            }
            self.cancel_block(block);
        }
        Ok(n)
    }

    fn overruns(&self) -> u64 {
        self.mic.overruns()
    }
}

impl Drop for EchoCanceller {
    fn drop(&mut self) {
        let s = &self.stats;
        let erle = s
            .erle_db()
            .map_or("n/a".to_string(), |e| format!("{e:.1} dB"));
        info!(
            "echo canceller: ERLE {erle}, learned over {:.1} s, {} double-talk blocks, {} resets, {:.2} s passed through",
            s.adapted_s,
            s.double_talk_blocks,
            s.resets,
            s.passed_through as f64 / SAMPLE_RATE as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::MemorySource;

    const SR: usize = SAMPLE_RATE as usize;

    /// Speech-like test signal: noise, low-passed, with a syllable-rate envelope.
    fn voice(n: usize, seed: u64, level: f32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut lp = 0.0f32;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let white = (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                lp = 0.7 * lp + 0.3 * white;
                let t = i as f32 / SR as f32;
                let envelope = 0.55 + 0.45 * (std::f32::consts::TAU * 4.0 * t + seed as f32).sin();
                level * lp * envelope * 3.0
            })
            .collect()
    }

    /// The echo path: 20 ms of delay and a short room response, 0.3 overall.
    fn echo_of(far: &[f32], delay: usize) -> Vec<f32> {
        let h = [0.3f32, -0.12, 0.06, 0.0, 0.02];
        (0..far.len())
            .map(|i| {
                h.iter()
                    .enumerate()
                    .filter(|(k, _)| i >= delay + k)
                    .map(|(k, &g)| g * far[i - delay - k])
                    .sum()
            })
            .collect()
    }

    /// The microphone, with the speaker rendering in step: before microphone samples up to
    /// `m` are handed out, the tap holds the speaker's samples up to `m - lag` and 10 ms more
    /// (a renderer runs ahead of what is heard).
    struct Devices {
        mic: MemorySource,
        read: usize,
        far: Vec<f32>,
        fed: usize,
        lag: isize,
        tap: rtrb::Producer<f32>,
    }

    impl Source for Devices {
        fn read(&mut self, buf: &mut [f32]) -> Result<usize> {
            let n = self.mic.read(buf)?;
            self.read += n;
            let want = (self.read as isize - self.lag + 160).clamp(0, self.far.len() as isize);
            while self.fed < want as usize {
                self.tap.push(self.far[self.fed]).unwrap();
                self.fed += 1;
            }
            Ok(n)
        }
    }

    fn run(mic: Vec<f32>, far: &[f32], lag: isize, align: Align) -> (Vec<f32>, AecStats) {
        let (tap, consumer) = rtrb::RingBuffer::new(SR);
        let devices = Devices {
            mic: MemorySource::new(mic),
            read: 0,
            far: far.to_vec(),
            fed: 0,
            lag,
            tap,
        };
        let mut aec = EchoCanceller::new(
            Box::new(devices),
            consumer,
            SAMPLE_RATE,
            align,
            &AecOptions::default(),
        )
        .unwrap();
        let mut out = Vec::new();
        let mut buf = [0.0f32; 512];
        loop {
            let n = aec.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        (out, aec.stats())
    }

    fn energy(x: &[f32]) -> f64 {
        x.iter().map(|&v| v as f64 * v as f64).sum()
    }

    fn db(num: f64, den: f64) -> f64 {
        10.0 * (num / den).log10()
    }

    #[test]
    fn the_echo_of_the_speaker_is_removed() {
        let far = voice(4 * SR, 1, 0.3);
        let mic = echo_of(&far, 320);
        let (out, stats) = run(mic.clone(), &far, 0, Align::SameClock);
        assert_eq!(out.len(), mic.len());
        // After a second of learning, the echo is at least 25 dB down.
        let late = 2 * SR..;
        let erle = db(energy(&mic[late.clone()]), energy(&out[late]));
        assert!(erle > 25.0, "ERLE {erle:.1} dB");
        assert!(stats.erle_db().unwrap() > 20.0, "{stats:?}");
        assert_eq!(stats.resets, 0);
        assert_eq!(stats.passed_through, 0);
    }

    #[test]
    fn the_user_talking_over_the_speaker_is_kept_and_does_not_unlearn_the_echo() {
        let far = voice(5 * SR, 2, 0.3);
        let user = voice(5 * SR, 3, 0.5);
        let echo = echo_of(&far, 320);
        // The user talks from 2 s to 3.5 s.
        let talk = 2 * SR..7 * SR / 2;
        let mic: Vec<f32> = (0..far.len())
            .map(|i| echo[i] + if talk.contains(&i) { user[i] } else { 0.0 })
            .collect();
        let (out, stats) = run(mic, &far, 0, Align::SameClock);
        assert!(stats.double_talk_blocks > 100, "{stats:?}");
        // During double talk the output is the user, the echo nearly gone.
        let residual: Vec<f32> = talk.clone().map(|i| out[i] - user[i]).collect();
        let kept = db(energy(&user[talk.clone()]), energy(&residual));
        let echo_left = db(energy(&echo[talk.clone()]), energy(&residual));
        assert!(
            echo_left > 25.0,
            "echo cancelled by {echo_left:.1} dB during double talk"
        );
        assert!(kept > 20.0, "user-to-residual {kept:.1} dB");
        // And the filter still cancels the echo after the user stops.
        let after = 4 * SR..;
        let erle = db(energy(&echo[after.clone()]), energy(&out[after]));
        assert!(erle > 25.0, "ERLE after double talk {erle:.1} dB");
    }

    #[test]
    fn without_the_speaker_the_microphone_passes_unchanged() {
        let mic = voice(SR, 4, 0.4);
        let (out, stats) = run(mic.clone(), &vec![0.0; SR], 0, Align::SameClock);
        assert_eq!(out, mic);
        assert_eq!(stats.adapted_s, 0.0);
    }

    #[test]
    fn streams_started_apart_are_lined_up_by_their_stamps() {
        let far = voice(4 * SR, 5, 0.3);
        for lag_ms in [50i64, -30] {
            // The speaker's first block came `lag_ms` after the microphone's.
            let lag = (lag_ms * SR as i64 / 1000) as isize;
            let mic: Vec<f32> = {
                let echo = echo_of(&far, 320);
                // Microphone sample m hears tap sample m - lag.
                (0..far.len() as isize)
                    .map(|m| {
                        let j = m - lag;
                        if (0..far.len() as isize).contains(&j) {
                            echo[j as usize]
                        } else {
                            0.0
                        }
                    })
                    .collect()
            };
            let base = 1_000_000_000u64;
            let align = Align::Stamps {
                mic: Arc::new(AtomicU64::new(base)),
                speaker: Arc::new(AtomicU64::new((base as i64 + lag_ms * 1_000_000) as u64)),
            };
            let (out, _) = run(mic.clone(), &far, lag, align);
            let late = 2 * SR..3 * SR;
            let erle = db(energy(&mic[late.clone()]), energy(&out[late]));
            assert!(erle > 25.0, "lag {lag_ms} ms: ERLE {erle:.1} dB");
        }
    }

    #[test]
    fn a_stream_not_started_yet_means_pass_through() {
        let far = voice(SR, 6, 0.3);
        let mic = echo_of(&far, 320);
        let align = Align::Stamps {
            mic: Arc::new(AtomicU64::new(5)),
            speaker: Arc::new(AtomicU64::new(0)),
        };
        let (out, stats) = run(mic.clone(), &far, 0, align);
        assert_eq!(out, mic);
        assert_eq!(stats.passed_through, SR as u64);
    }

    #[test]
    fn bad_options_are_refused() {
        for opts in [
            AecOptions {
                tail_ms: 0,
                ..Default::default()
            },
            AecOptions {
                step: 1.5,
                ..Default::default()
            },
            AecOptions {
                double_talk_ratio: 0.0,
                ..Default::default()
            },
        ] {
            assert!(opts.check().is_err(), "{opts:?}");
        }
    }
}
