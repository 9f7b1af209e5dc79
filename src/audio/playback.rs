//! Audio out: a lock-free ring from the speech thread ([`Player`]) to whatever renders it in
//! real time ([`Renderer`]: the cpal output callback, or the replay device's clock).
//!
//! The renderer's side never allocates, locks or blocks: it pops samples, answers a stop
//! request by dropping what is queued, and publishes counters and the level of what it played
//! (the [`EchoReference`] the listener's echo guard compares the microphone against), and
//! copies every block it renders, silence included, to the echo tap: the reference signal the
//! echo canceller ([`super::aec`]) subtracts from the microphone.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::resample;

/// How long playback may make no progress before the device counts as stalled.
const STALL: Duration = Duration::from_secs(3);

/// The level of what the speaker played lately, block by block, with the time it was played.
pub struct EchoReference {
    base: Instant,
    at_ms: [AtomicU64; Self::SLOTS],
    peak: [AtomicU32; Self::SLOTS],
    next: AtomicUsize,
}

impl EchoReference {
    const SLOTS: usize = 128;

    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            at_ms: std::array::from_fn(|_| AtomicU64::new(0)),
            peak: std::array::from_fn(|_| AtomicU32::new(0)),
            next: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }

    /// Records the peak of one rendered block (real-time safe: atomics only).
    pub fn record(&self, peak: f32) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % Self::SLOTS;
        self.peak[i].store(peak.to_bits(), Ordering::Relaxed);
        self.at_ms[i].store(self.now_ms(), Ordering::Release);
    }

    /// The loudest block played in the last `window`.
    pub fn recent_peak(&self, window: Duration) -> f32 {
        let now = self.now_ms();
        let since = now.saturating_sub(window.as_millis() as u64);
        let mut peak = 0.0f32;
        for i in 0..Self::SLOTS {
            if self.at_ms[i].load(Ordering::Acquire) >= since {
                peak = peak.max(f32::from_bits(self.peak[i].load(Ordering::Relaxed)));
            }
        }
        peak
    }
}

impl Default for EchoReference {
    fn default() -> Self {
        Self::new()
    }
}

/// State shared by the player, the renderer and whoever may stop playback.
pub struct PlaybackShared {
    rate: u32,
    /// Bumped by every stop: audio queued before it must not play.
    epoch: AtomicU64,
    /// Set by a stop, cleared by the renderer once it has dropped what was queued.
    flush: AtomicBool,
    /// Samples queued by the player, and taken by the renderer (played or dropped).
    pushed: AtomicU64,
    consumed: AtomicU64,
    played: AtomicU64,
    /// A device or recording error (not touched by the real-time path).
    failure: Mutex<Option<String>>,
    echo: Arc<EchoReference>,
    /// The echo tap's reading end, until the echo canceller takes it.
    tap: Mutex<Option<rtrb::Consumer<f32>>>,
    /// When the renderer first ran ([`super::clock::stamp`]; 0 before).
    started: Arc<AtomicU64>,
    /// Applied by the player to what it queues.
    volume: super::volume::Volume,
}

impl PlaybackShared {
    /// The speaker's volume (the player scales what it queues by its gain).
    pub fn volume(&self) -> &super::volume::Volume {
        &self.volume
    }

    /// Stops playback now: queued audio is dropped at the renderer's next block. Returns the
    /// new epoch.
    pub fn stop(&self) -> u64 {
        let e = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.flush.store(true, Ordering::SeqCst);
        e
    }

    /// True once the renderer has acted on the last stop.
    pub fn stopped(&self) -> bool {
        !self.flush.load(Ordering::SeqCst)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Audio is queued and not yet played.
    pub fn busy(&self) -> bool {
        self.consumed.load(Ordering::Acquire) < self.pushed.load(Ordering::Acquire)
    }

    pub fn played_samples(&self) -> u64 {
        self.played.load(Ordering::Relaxed)
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    pub fn echo(&self) -> &Arc<EchoReference> {
        &self.echo
    }

    /// Records a failure of the device (or of the recording behind it).
    pub fn fail(&self, msg: String) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(msg);
        }
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// The echo tap: every sample rendered (at [`Self::rate`]) from the first block on, for
    /// the echo canceller. There is one; the second call gets `None`.
    pub fn take_tap(&self) -> Option<rtrb::Consumer<f32>> {
        self.tap.lock().ok()?.take()
    }

    /// When the renderer first ran, as [`super::clock::stamp`] records it (0 before).
    pub fn started(&self) -> Arc<AtomicU64> {
        self.started.clone()
    }
}

/// The speech thread's end: queues audio for the device.
pub struct Player {
    producer: rtrb::Producer<f32>,
    shared: Arc<PlaybackShared>,
    pushed: u64,
}

/// The device's end: real-time safe.
pub struct Renderer {
    consumer: rtrb::Consumer<f32>,
    shared: Arc<PlaybackShared>,
    tap: rtrb::Producer<f32>,
}

/// A player and renderer at `rate` with a ring of `buffer_ms`.
pub fn channel(rate: u32, buffer_ms: u32) -> (Player, Renderer) {
    super::clock::init();
    let cap = (rate as usize * buffer_ms.max(20) as usize / 1000).max(256);
    let (producer, consumer) = rtrb::RingBuffer::new(cap);
    // Two seconds of echo reference, as much as the microphone's ring holds.
    let (tap, tap_consumer) = rtrb::RingBuffer::new(2 * rate.max(8_000) as usize);
    let shared = Arc::new(PlaybackShared {
        rate,
        epoch: AtomicU64::new(0),
        flush: AtomicBool::new(false),
        pushed: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        played: AtomicU64::new(0),
        failure: Mutex::new(None),
        echo: Arc::new(EchoReference::new()),
        tap: Mutex::new(Some(tap_consumer)),
        started: Arc::new(AtomicU64::new(0)),
        volume: Default::default(),
    });
    (
        Player {
            producer,
            shared: shared.clone(),
            pushed: 0,
        },
        Renderer {
            consumer,
            shared,
            tap,
        },
    )
}

/// Outcome of queueing or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Played {
    Done,
    /// Playback was stopped (barge-in) before all of it was queued or played.
    Stopped,
}

impl Player {
    pub fn shared(&self) -> &Arc<PlaybackShared> {
        &self.shared
    }

    pub fn rate(&self) -> u32 {
        self.shared.rate
    }

    /// Queues `samples` recorded at `rate` (resampled to the device's), unless playback has
    /// been stopped since `epoch`. Blocks while the ring is full (the bounded queue between
    /// speech and the device).
    pub fn play(&mut self, samples: &[f32], rate: u32, epoch: u64) -> Result<Played> {
        let resampled;
        let samples = if rate == self.shared.rate || samples.is_empty() {
            samples
        } else {
            resampled = resample::resample(samples, rate, self.shared.rate)?;
            &resampled[..]
        };
        let gain = self.shared.volume.gain();
        let mut pos = 0;
        let mut last_progress = Instant::now();
        while pos < samples.len() {
            if self.shared.epoch() != epoch {
                return Ok(Played::Stopped);
            }
            self.check()?;
            let n = self.producer.slots().min(samples.len() - pos);
            if n > 0 {
                if let Ok(chunk) = self.producer.write_chunk_uninit(n) {
                    chunk.fill_from_iter(samples[pos..pos + n].iter().map(|s| s * gain));
                }
                pos += n;
                self.pushed += n as u64;
                self.shared.pushed.store(self.pushed, Ordering::Release);
                last_progress = Instant::now();
                if self.shared.epoch() != epoch {
                    // A stop raced with this write: have the renderer drop it too.
                    self.shared.flush.store(true, Ordering::SeqCst);
                    return Ok(Played::Stopped);
                }
            } else {
                self.wait(&mut last_progress)?;
            }
        }
        Ok(Played::Done)
    }

    /// Waits until everything queued has been played, or playback is stopped.
    pub fn drain(&mut self, epoch: u64) -> Result<Played> {
        let mut last_progress = Instant::now();
        while self.shared.busy() {
            if self.shared.epoch() != epoch {
                return Ok(Played::Stopped);
            }
            self.check()?;
            self.wait(&mut last_progress)?;
        }
        Ok(if self.shared.epoch() == epoch {
            Played::Done
        } else {
            Played::Stopped
        })
    }

    fn check(&self) -> Result<()> {
        if let Some(msg) = self.shared.failure() {
            bail!("{msg}");
        }
        Ok(())
    }

    /// Sleeps a little; fails if the device has taken nothing for [`STALL`].
    fn wait(&self, last_progress: &mut Instant) -> Result<()> {
        let before = self.shared.consumed.load(Ordering::Acquire);
        std::thread::sleep(Duration::from_millis(5));
        if self.shared.consumed.load(Ordering::Acquire) != before {
            *last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL {
            bail!(
                "the speaker stopped taking audio for {} s (device stalled)",
                STALL.as_secs()
            );
        }
        Ok(())
    }
}

impl Renderer {
    pub fn shared(&self) -> &Arc<PlaybackShared> {
        &self.shared
    }

    /// Records when the first block is heard, `latency_ns` after this call (a device callback
    /// knows; without one, the first [`Self::render`] stamps "now").
    pub fn stamp_start(&self, latency_ns: i64) {
        super::clock::stamp_shifted(&self.shared.started, latency_ns);
    }

    /// Fills `out` with queued samples and silence after them; returns how many were queued
    /// audio. Real-time safe: no allocation, no lock, no blocking.
    pub fn render(&mut self, out: &mut [f32]) -> usize {
        let shared = &*self.shared;
        super::clock::stamp(&shared.started);
        if shared.flush.load(Ordering::Acquire) {
            let n = self.consumer.slots();
            if let Ok(chunk) = self.consumer.read_chunk(n) {
                chunk.commit_all();
            }
            shared.consumed.fetch_add(n as u64, Ordering::AcqRel);
            shared.flush.store(false, Ordering::Release);
        }
        let n = self.consumer.slots().min(out.len());
        if let Ok(chunk) = self.consumer.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            out[..a.len()].copy_from_slice(a);
            out[a.len()..n].copy_from_slice(b);
            chunk.commit_all();
        }
        let peak = crate::simd::peak_abs(&out[..n]);
        out[n..].iter_mut().for_each(|s| *s = 0.0);
        shared.played.fetch_add(n as u64, Ordering::Relaxed);
        shared.consumed.fetch_add(n as u64, Ordering::AcqRel);
        shared.echo.record(peak);
        // What does not fit is dropped: nobody is reading (no canceller), or the reader is
        // over two seconds behind.
        let room = self.tap.slots().min(out.len());
        if let Ok(chunk) = self.tap.write_chunk_uninit(room) {
            chunk.fill_from_iter(out[..room].iter().copied());
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plays_in_order_then_silence() {
        let (mut player, mut r) = channel(16_000, 100);
        let e = player.shared().epoch();
        let x: Vec<f32> = (0..300).map(|i| i as f32 / 1000.0).collect();
        assert_eq!(player.play(&x, 16_000, e).unwrap(), Played::Done);
        assert!(player.shared().busy());
        let mut out = vec![1.0; 256];
        assert_eq!(r.render(&mut out), 256);
        assert_eq!(out[..], x[..256]);
        assert_eq!(r.render(&mut out), 44);
        assert_eq!(out[..44], x[256..]);
        assert!(out[44..].iter().all(|&s| s == 0.0));
        assert!(!player.shared().busy());
        assert_eq!(player.drain(e).unwrap(), Played::Done);
        assert!((r.shared().echo().recent_peak(Duration::from_secs(1)) - 0.299).abs() < 1e-6);
    }

    #[test]
    fn stop_drops_what_is_queued_and_refuses_old_audio() {
        let (mut player, mut r) = channel(16_000, 100);
        let e = player.shared().epoch();
        player.play(&[0.5; 1000], 16_000, e).unwrap();
        let shared = player.shared().clone();
        let e2 = shared.stop();
        assert!(!shared.stopped());
        let mut out = vec![0.0; 128];
        assert_eq!(r.render(&mut out), 0, "nothing plays after a stop");
        assert!(shared.stopped() && !shared.busy());
        // Audio from before the stop is refused; audio of the new epoch plays.
        assert_eq!(player.play(&[0.5; 10], 16_000, e).unwrap(), Played::Stopped);
        assert_eq!(player.drain(e).unwrap(), Played::Stopped);
        player.play(&[0.25; 10], 16_000, e2).unwrap();
        assert_eq!(r.render(&mut out), 10);
    }

    #[test]
    fn a_full_ring_blocks_until_the_device_takes_audio() {
        let (mut player, mut r) = channel(16_000, 20); // 320 samples
        let shared = player.shared().clone();
        let device = std::thread::spawn(move || {
            let mut out = vec![0.0; 160];
            let mut got = 0;
            while got < 2000 {
                got += r.render(&mut out);
                std::thread::sleep(Duration::from_millis(1));
            }
            got
        });
        player.play(&[0.1; 2000], 16_000, shared.epoch()).unwrap();
        player.drain(shared.epoch()).unwrap();
        assert_eq!(device.join().unwrap(), 2000);
        assert_eq!(shared.played_samples(), 2000);
    }

    #[test]
    fn a_device_that_takes_nothing_is_reported_not_waited_on_forever() {
        let (mut player, _r) = channel(16_000, 20);
        let e = player.shared().epoch();
        let err = player.play(&[0.1; 2000], 16_000, e).unwrap_err();
        assert!(err.to_string().contains("stalled"), "{err}");
    }
}
