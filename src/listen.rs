//! Hearing, joined up: a [`Source`] read window by window, scored by a speech detector, cut
//! into utterances by the [`Endpointer`].
//!
//! [`spawn`] runs this on its own thread and hands utterances over a bounded channel, so the
//! recognizer can take its time on one utterance while the next is being heard; if it falls
//! far behind, the channel fills and the capture ring absorbs the rest (and counts overruns).
//!
//! Besides utterances, the listener reports when someone has *started* speaking (after
//! [`Listener::barge_in_ms`] of speech): the assistant uses it to stop talking (barge-in).
//! While the assistant talks, an [`EchoGuard`] keeps its own voice from counting as speech.

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::audio::Source;
use crate::audio::doubletalk::Geigel;
use crate::audio::playback::EchoReference;
use crate::vad::{EndpointConfig, Endpointer, SpeechDetector, Utterance, WINDOW};
use crate::wake::{Detection, WakeWord};

/// The echo guard: while the speaker plays, a microphone window counts as the user's speech
/// only if it is double talk by Geigel's rule ([`Geigel`]) against the loudest block the
/// speaker played within `window` (which covers the echo path's delay and the listener's
/// lag). The speaker's echo alone stays under it; a user talking over it does not.
#[derive(Clone)]
pub struct EchoGuard {
    pub reference: Arc<EchoReference>,
    pub geigel: Geigel,
    pub window: Duration,
}

impl EchoGuard {
    /// True when the window may be the speaker's echo rather than the user.
    fn gates(&self, window: &[f32]) -> bool {
        let speaker = self.reference.recent_peak(self.window);
        self.geigel
            .may_be_echo(crate::simd::peak_abs(window), speaker)
    }
}

/// What the listener reports, in order.
#[derive(Debug)]
pub enum Event {
    /// Someone has been speaking for [`Listener::barge_in_ms`]; `at_s` is where the speech
    /// began in the stream.
    SpeechStart { at_s: f64, detected: Instant },
    /// An utterance ended.
    Utterance(Utterance),
    /// The wake phrase was heard (see [`Listener::with_wake`]).
    Wake(Detection),
}

pub struct Listener {
    source: Box<dyn Source>,
    detector: Box<dyn SpeechDetector>,
    endpointer: Endpointer,
    window: Vec<f32>,
    filled: usize,
    ended: bool,
    echo_guard: Option<EchoGuard>,
    wake: Option<WakeWord>,
    /// Events found but not returned yet (a wake phrase and a speech event in one read).
    pending: std::collections::VecDeque<Event>,
    /// Speech needed before a speech start is reported.
    pub barge_in_ms: u32,
    start_reported: bool,
    /// Time spent in the speech detector.
    pub vad_time: Duration,
    /// Samples read from the source.
    pub samples: u64,
    /// Windows the echo guard kept from counting as speech.
    pub echo_gated: u64,
    /// Time spent in the wake-word detector.
    pub wake_time: Duration,
    /// [`Self::samples`], shared with the conductor.
    position: Arc<std::sync::atomic::AtomicU64>,
}

impl Listener {
    pub fn new(
        source: Box<dyn Source>,
        detector: Box<dyn SpeechDetector>,
        cfg: EndpointConfig,
    ) -> Self {
        Self {
            source,
            detector,
            endpointer: Endpointer::new(cfg),
            window: vec![0.0; WINDOW],
            filled: 0,
            ended: false,
            echo_guard: None,
            wake: None,
            pending: Default::default(),
            barge_in_ms: 96,
            start_reported: false,
            vad_time: Duration::ZERO,
            samples: 0,
            echo_gated: 0,
            wake_time: Duration::ZERO,
            position: Default::default(),
        }
    }

    pub fn with_echo_guard(mut self, guard: Option<EchoGuard>) -> Self {
        self.echo_guard = guard;
        self
    }

    /// Listens for a wake phrase too: every sample read goes through `wake`, and each
    /// detection is reported ([`Event::Wake`]) before the speech detector's events for the
    /// same window. Its seconds are the listener's stream seconds.
    pub fn with_wake(mut self, wake: Option<WakeWord>) -> Self {
        self.wake = wake;
        self
    }

    /// Whether a wake word is listened for.
    pub fn has_wake(&self) -> bool {
        self.wake.is_some()
    }

    /// The endpointer's settings.
    pub fn endpoint(&self) -> &EndpointConfig {
        self.endpointer.config()
    }

    /// Samples read so far, updated as they are read (the stream's clock, for other threads).
    pub fn position(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.position.clone()
    }

    pub fn detector_name(&self) -> &'static str {
        self.detector.name()
    }

    /// The next utterance, or `None` when the source has ended.
    pub fn next_utterance(&mut self) -> Result<Option<Utterance>> {
        loop {
            match self.next_event()? {
                Some(Event::Utterance(u)) => return Ok(Some(u)),
                Some(Event::SpeechStart { .. } | Event::Wake(_)) => continue,
                None => return Ok(None),
            }
        }
    }

    /// The next wake phrase, speech start or utterance, or `None` when the source has ended.
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            if self.ended {
                return Ok(None);
            }
            let n = self.source.read(&mut self.window[self.filled..])?;
            if n > 0
                && let Some(w) = self.wake.as_mut()
            {
                let t = Instant::now();
                let found = w
                    .push(&self.window[self.filled..self.filled + n])
                    .context("wake-word detector")?;
                self.wake_time += t.elapsed();
                self.pending.extend(found.into_iter().map(Event::Wake));
            }
            if n == 0 {
                self.ended = true;
                if self.filled > 0 {
                    // Pad the last partial window with silence.
                    self.window[self.filled..].iter_mut().for_each(|x| *x = 0.0);
                    self.filled = WINDOW;
                    if let Some(e) = self.score_window()? {
                        self.pending.push_back(e);
                    }
                }
                self.pending
                    .extend(self.endpointer.finish().map(Event::Utterance));
                continue;
            }
            self.samples += n as u64;
            self.position
                .store(self.samples, std::sync::atomic::Ordering::Release);
            self.filled += n;
            if self.filled == WINDOW
                && let Some(e) = self.score_window()?
            {
                self.pending.push_back(e);
            }
        }
    }

    /// Every utterance to the end of the source (for files).
    pub fn collect(&mut self) -> Result<Vec<Utterance>> {
        let mut out = Vec::new();
        while let Some(u) = self.next_utterance()? {
            out.push(u);
        }
        Ok(out)
    }

    fn score_window(&mut self) -> Result<Option<Event>> {
        self.filled = 0;
        let t = Instant::now();
        let mut p = self
            .detector
            .probability(&self.window)
            .context("speech detector")?;
        self.vad_time += t.elapsed();
        if let Some(g) = &self.echo_guard
            && p >= self.endpointer.config().end_threshold
            && g.gates(&self.window)
        {
            p = 0.0;
            self.echo_gated += 1;
        }
        if let Some(u) = self.endpointer.push(&self.window, p) {
            self.start_reported = false;
            return Ok(Some(Event::Utterance(u)));
        }
        match self.endpointer.open_speech() {
            Some((at_s, speech_ms)) if !self.start_reported && speech_ms >= self.barge_in_ms => {
                self.start_reported = true;
                Ok(Some(Event::SpeechStart {
                    at_s,
                    detected: Instant::now(),
                }))
            }
            Some(_) => Ok(None),
            None => {
                self.start_reported = false;
                Ok(None)
            }
        }
    }

    pub fn overruns(&self) -> u64 {
        self.source.overruns()
    }
}

/// What the listening thread reports.
pub enum Heard {
    SpeechStart {
        at_s: f64,
        detected: Instant,
    },
    Utterance(Utterance),
    /// The wake phrase was heard.
    Wake(Detection),
    /// The source ended; the listener's statistics.
    End {
        samples: u64,
        vad_time: Duration,
        echo_gated: u64,
        wake_time: Duration,
    },
}

/// Runs `listener` on its own thread; what it hears arrives on the returned channel
/// (capacity `queue`), an error ends the stream.
pub fn spawn(
    listener: Listener,
    queue: usize,
) -> Result<(mpsc::Receiver<Result<Heard>>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(queue.max(1));
    let handle = spawn_into(listener, tx, |h| h)?;
    Ok((rx, handle))
}

/// Runs `listener` on its own thread, sending what it hears, wrapped by `wrap`, into `tx`
/// (so one channel can carry the listener's and other threads' events).
pub fn spawn_into<T: Send + 'static>(
    mut listener: Listener,
    tx: mpsc::SyncSender<T>,
    wrap: impl Fn(Result<Heard>) -> T + Send + 'static,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("edgevox-listen".into())
        .spawn(move || {
            loop {
                let heard = match listener.next_event() {
                    Ok(Some(Event::Utterance(u))) => Ok(Heard::Utterance(u)),
                    Ok(Some(Event::SpeechStart { at_s, detected })) => {
                        Ok(Heard::SpeechStart { at_s, detected })
                    }
                    Ok(Some(Event::Wake(d))) => Ok(Heard::Wake(d)),
                    Ok(None) => Ok(Heard::End {
                        samples: listener.samples,
                        vad_time: listener.vad_time,
                        echo_gated: listener.echo_gated,
                        wake_time: listener.wake_time,
                    }),
                    Err(e) => Err(e),
                };
                let last = !matches!(
                    heard,
                    Ok(Heard::Utterance(_) | Heard::SpeechStart { .. } | Heard::Wake(_))
                );
                if tx.send(wrap(heard)).is_err() || last {
                    return;
                }
            }
        })
        .context("spawning the listening thread")
}
