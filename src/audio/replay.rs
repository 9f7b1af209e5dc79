//! A recording replayed as a live sound card: a virtual full-duplex device that feeds the
//! input file to the "microphone" in real time (or `speed` times faster) while it renders the
//! speaker's ring on the same clock and records what was played.
//!
//! Because the assistant sees the same [`Source`] and [`Player`] as with a real microphone
//! and speaker, replays exercise the live code path: barge-in happens when the recording has
//! speech while the reply plays. `echo_gain` leaks the speaker into the microphone (after
//! `echo_delay_ms`), the way a speaker next to a microphone does, to test the echo guard.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use hound::{SampleFormat, WavSpec, WavWriter};

use super::playback::{self, Player, Renderer};
use super::{SAMPLE_RATE, Source};

/// The device's period: 10 ms.
const TICK: usize = SAMPLE_RATE as usize / 100;
/// After the recording, the microphone closes once the assistant has been idle this long
/// (longer than the endpointer's trailing silence, so a last utterance is closed by silence
/// and answered while the microphone still hears the speaker).
const TAIL_TICKS: u32 = 150;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// 1.0 = real time.
    pub speed: f32,
    /// Fraction of the speaker's signal that reaches the microphone.
    pub echo_gain: f32,
    pub echo_delay_ms: u32,
    /// Where what the speaker played is written (16 kHz mono WAV).
    pub record: Option<PathBuf>,
    /// Playback ring length.
    pub buffer_ms: u32,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            speed: 1.0,
            echo_gain: 0.0,
            echo_delay_ms: 20,
            record: None,
            buffer_ms: 2_000,
        }
    }
}

/// The microphone side of a replay.
pub struct ReplayMic {
    consumer: rtrb::Consumer<f32>,
    ended: Arc<AtomicBool>,
}

impl Source for ReplayMic {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize> {
        loop {
            let n = self.consumer.slots().min(buf.len());
            if n > 0 {
                let chunk = self
                    .consumer
                    .read_chunk(n)
                    .map_err(|e| anyhow!("replay ring: {e}"))?;
                let (a, b) = chunk.as_slices();
                buf[..a.len()].copy_from_slice(a);
                buf[a.len()..n].copy_from_slice(b);
                chunk.commit_all();
                return Ok(n);
            }
            if self.ended.load(Ordering::Acquire) && self.consumer.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// What a finished replay played.
#[derive(Debug, Clone, Copy)]
pub struct ReplayStats {
    pub played_s: f64,
    /// Microphone samples dropped because the listener fell more than the ring behind.
    pub overruns: u64,
}

/// A running replay; [`ReplayDevice::finish`] stops it and closes the recording.
pub struct ReplayDevice {
    stop: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<ReplayStats>>>,
}

type Recorder = WavWriter<std::io::BufWriter<std::fs::File>>;

impl ReplayDevice {
    /// Starts replaying `input` (16 kHz mono).
    pub fn start(
        input: Vec<f32>,
        opts: &ReplayOptions,
    ) -> Result<(ReplayDevice, ReplayMic, Player)> {
        ensure!(
            opts.speed > 0.0 && opts.speed.is_finite(),
            "replay speed must be positive, not {}",
            opts.speed
        );
        ensure!(
            (0.0..=4.0).contains(&opts.echo_gain),
            "echo gain must be within 0..4, not {}",
            opts.echo_gain
        );
        let recorder = match &opts.record {
            Some(path) => Some((create_recording(path)?, path.clone())),
            None => None,
        };
        let (player, renderer) = playback::channel(SAMPLE_RATE, opts.buffer_ms);
        // Two seconds of microphone ring, as with a real capture.
        let (producer, consumer) = rtrb::RingBuffer::new(2 * SAMPLE_RATE as usize);
        let ended = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(false));
        let clock = Clock {
            input,
            producer,
            renderer,
            ended: ended.clone(),
            stop: stop.clone(),
            busy: busy.clone(),
            recorder,
            period: Duration::from_secs_f64(TICK as f64 / SAMPLE_RATE as f64 / opts.speed as f64),
            echo_gain: opts.echo_gain,
            echo_delay: (opts.echo_delay_ms as usize * SAMPLE_RATE as usize / 1000).max(TICK),
        };
        let thread = std::thread::Builder::new()
            .name("edgevox-replay".into())
            .spawn(move || clock.run())
            .context("spawning the replay device")?;
        Ok((
            ReplayDevice {
                stop,
                busy,
                thread: Some(thread),
            },
            ReplayMic { consumer, ended },
            player,
        ))
    }

    /// Set by the assistant while it has a turn open: after the recording ends, the microphone
    /// stays open (hearing silence and the speaker's echo) until the assistant is done.
    pub fn assistant_busy(&self) -> Arc<AtomicBool> {
        self.busy.clone()
    }

    /// Stops the device and closes the recording.
    pub fn finish(mut self) -> Result<ReplayStats> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .expect("finish runs once")
            .join()
            .map_err(|_| anyhow!("the replay device panicked"))?
    }
}

impl Drop for ReplayDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn create_recording(path: &Path) -> Result<Recorder> {
    let spec = WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    WavWriter::create(path, spec)
        .with_context(|| format!("cannot write the reply to {}", path.display()))
}

struct Clock {
    input: Vec<f32>,
    producer: rtrb::Producer<f32>,
    renderer: Renderer,
    ended: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
    recorder: Option<(Recorder, PathBuf)>,
    period: Duration,
    echo_gain: f32,
    echo_delay: usize,
}

impl Clock {
    fn run(mut self) -> Result<ReplayStats> {
        let mut out = [0.0f32; TICK];
        let mut mic = [0.0f32; TICK];
        // What the speaker played, delayed: the echo path.
        let mut delay = vec![0.0f32; self.echo_delay];
        let mut delay_pos = 0;
        let mut pos = 0;
        let mut played = 0u64;
        let start = Instant::now();
        let mut ticks = 0u32;
        let mut idle_ticks = 0;
        let mut overruns = 0u64;
        while !self.stop.load(Ordering::Acquire) {
            let n = self.renderer.render(&mut out);
            played += n as u64;
            self.record(&out[..n]);
            if !self.ended.load(Ordering::Relaxed) {
                // The recording, then silence while the assistant is still busy.
                let take = TICK.min(self.input.len().saturating_sub(pos));
                mic[..take].copy_from_slice(&self.input[pos..pos + take]);
                mic[take..].iter_mut().for_each(|x| *x = 0.0);
                for (m, &o) in mic.iter_mut().zip(&out) {
                    *m += self.echo_gain * delay[delay_pos];
                    delay[delay_pos] = o;
                    delay_pos = (delay_pos + 1) % delay.len();
                }
                pos += take;
                let room = self.producer.slots().min(TICK);
                if let Ok(chunk) = self.producer.write_chunk_uninit(room) {
                    chunk.fill_from_iter(mic[..room].iter().copied());
                }
                overruns += (TICK - room) as u64;
                let busy = self.busy.load(Ordering::Acquire) || self.renderer.shared().busy();
                if pos < self.input.len() || busy {
                    idle_ticks = 0;
                } else {
                    idle_ticks += 1;
                    if idle_ticks >= TAIL_TICKS {
                        self.ended.store(true, Ordering::Release);
                    }
                }
            }
            ticks += 1;
            // Keep to the clock; when behind, catch up without sleeping.
            let due = start + self.period * ticks;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        self.ended.store(true, Ordering::Release);
        if let Some((w, path)) = self.recorder.take() {
            w.finalize()
                .with_context(|| format!("finishing {}", path.display()))?;
        }
        Ok(ReplayStats {
            played_s: played as f64 / SAMPLE_RATE as f64,
            overruns,
        })
    }

    fn record(&mut self, samples: &[f32]) {
        let Some((w, path)) = self.recorder.as_mut() else {
            return;
        };
        for &s in samples {
            if let Err(e) = w.write_sample((s.clamp(-1.0, 1.0) * i16::MAX as f32) as i16) {
                let msg = format!("writing {}: {e}", path.display());
                self.renderer.shared().fail(msg);
                // Stop recording; the failure is reported to the speech thread.
                self.recorder = None;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the microphone gives until it closes.
    fn hear_all(mic: &mut ReplayMic) -> Vec<f32> {
        let mut got = Vec::new();
        let mut buf = [0.0; 700];
        loop {
            let n = mic.read(&mut buf).unwrap();
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn feeds_the_input_in_real_time_and_records_what_plays() {
        let dir = std::env::temp_dir().join(format!("edgevox-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rec = dir.join("played.wav");
        let input: Vec<f32> = (0..8_000).map(|i| (i % 100) as f32 / 1000.0).collect();
        let opts = ReplayOptions {
            speed: 4.0,
            record: Some(rec.clone()),
            ..Default::default()
        };
        let (dev, mut mic, mut player) = ReplayDevice::start(input.clone(), &opts).unwrap();
        let e = player.shared().epoch();
        player.play(&[0.5; 1600], SAMPLE_RATE, e).unwrap();
        let t = Instant::now();
        let got = hear_all(&mut mic);
        // 0.5 s of input at 4x: about 125 ms.
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(got[..input.len()], input[..]);
        // Then a short tail of silence once nothing is playing.
        assert!(got[input.len()..].iter().all(|&x| x == 0.0));
        assert!(
            got.len() - input.len() <= 32_000,
            "{} samples of tail",
            got.len()
        );
        player.drain(e).unwrap();
        let stats = dev.finish().unwrap();
        assert!((stats.played_s - 0.1).abs() < 1e-9);
        let r = hound::WavReader::open(&rec).unwrap();
        assert_eq!(r.len(), 1600);
        drop(r);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_speaker_leaks_into_the_microphone_with_the_echo_gain() {
        let input = vec![0.0; 3_200];
        let opts = ReplayOptions {
            speed: 8.0,
            echo_gain: 0.5,
            ..Default::default()
        };
        let (dev, mut mic, mut player) = ReplayDevice::start(input, &opts).unwrap();
        player.play(&[0.4; 800], SAMPLE_RATE, 0).unwrap();
        let got = hear_all(&mut mic);
        dev.finish().unwrap();
        let peak = got.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!((peak - 0.2).abs() < 1e-6, "echo peak {peak}");
        let leaked = got.iter().filter(|x| x.abs() > 0.1).count();
        // The microphone stayed open while the speaker played, past the 0.2 s recording.
        assert!(got.len() > 3_200 + 800, "{}", got.len());
        assert_eq!(leaked, 800);
    }

    #[test]
    fn an_unwritable_recording_fails_naming_it() {
        let err = ReplayDevice::start(
            vec![0.0; 10],
            &ReplayOptions {
                record: Some("/nonexistent/dir/reply.wav".into()),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("/nonexistent/dir/reply.wav"));
    }
}
