//! Hearing, joined up: a [`Source`] read window by window, scored by a speech detector, cut
//! into utterances by the [`Endpointer`].
//!
//! [`spawn`] runs this on its own thread and hands utterances over a bounded channel, so the
//! recognizer can take its time on one utterance while the next is being heard; if it falls
//! far behind, the channel fills and the capture ring absorbs the rest (and counts overruns).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::audio::Source;
use crate::vad::{EndpointConfig, Endpointer, SpeechDetector, Utterance, WINDOW};

pub struct Listener {
    source: Box<dyn Source>,
    detector: Box<dyn SpeechDetector>,
    endpointer: Endpointer,
    window: Vec<f32>,
    filled: usize,
    ended: bool,
    /// Time spent in the speech detector.
    pub vad_time: Duration,
    /// Samples read from the source.
    pub samples: u64,
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
            vad_time: Duration::ZERO,
            samples: 0,
        }
    }

    pub fn detector_name(&self) -> &'static str {
        self.detector.name()
    }

    /// The next utterance, or `None` when the source has ended.
    pub fn next_utterance(&mut self) -> Result<Option<Utterance>> {
        while !self.ended {
            let n = self.source.read(&mut self.window[self.filled..])?;
            if n == 0 {
                self.ended = true;
                if self.filled > 0 {
                    // Pad the last partial window with silence.
                    self.window[self.filled..].iter_mut().for_each(|x| *x = 0.0);
                    self.filled = WINDOW;
                    if let Some(u) = self.score_window()? {
                        return Ok(Some(u));
                    }
                }
                return Ok(self.endpointer.finish());
            }
            self.samples += n as u64;
            self.filled += n;
            if self.filled == WINDOW
                && let Some(u) = self.score_window()?
            {
                return Ok(Some(u));
            }
        }
        Ok(None)
    }

    /// Every utterance to the end of the source (for files).
    pub fn collect(&mut self) -> Result<Vec<Utterance>> {
        let mut out = Vec::new();
        while let Some(u) = self.next_utterance()? {
            out.push(u);
        }
        Ok(out)
    }

    fn score_window(&mut self) -> Result<Option<Utterance>> {
        self.filled = 0;
        let t = Instant::now();
        let p = self
            .detector
            .probability(&self.window)
            .context("speech detector")?;
        self.vad_time += t.elapsed();
        Ok(self.endpointer.push(&self.window, p))
    }

    pub fn overruns(&self) -> u64 {
        self.source.overruns()
    }
}

/// What the listening thread reports.
pub enum Heard {
    Utterance(Utterance),
    /// The source ended; the listener's statistics.
    End {
        samples: u64,
        vad_time: Duration,
    },
}

/// Runs `listener` on its own thread; utterances arrive on the returned channel (capacity
/// `queue`), an error ends the stream.
pub fn spawn(
    mut listener: Listener,
    queue: usize,
) -> Result<(mpsc::Receiver<Result<Heard>>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(queue.max(1));
    let handle = std::thread::Builder::new()
        .name("edgevox-listen".into())
        .spawn(move || {
            loop {
                match listener.next_utterance() {
                    Ok(Some(u)) => {
                        if tx.send(Ok(Heard::Utterance(u))).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = tx.send(Ok(Heard::End {
                            samples: listener.samples,
                            vad_time: listener.vad_time,
                        }));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        })
        .context("spawning the listening thread")?;
    Ok((rx, handle))
}
