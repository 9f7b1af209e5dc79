//! Turns per-window speech probabilities into utterances.
//!
//! Idle until a window scores at least `start_threshold`; the utterance then starts with
//! `pre_roll_ms` of audio from before that window, so the first syllable is kept. It ends when
//! `end_silence_ms` of windows have scored under `end_threshold` (hysteresis), or when it
//! reaches `max_utterance_ms`. An utterance with less than `min_speech_ms` of speech is
//! dropped as a click or a cough.

use std::collections::VecDeque;

use super::WINDOW;
use crate::audio::SAMPLE_RATE;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EndpointConfig {
    pub start_threshold: f32,
    pub end_threshold: f32,
    pub min_speech_ms: u32,
    pub end_silence_ms: u32,
    pub max_utterance_ms: u32,
    pub pre_roll_ms: u32,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            start_threshold: 0.5,
            end_threshold: 0.35,
            min_speech_ms: 250,
            end_silence_ms: 700,
            max_utterance_ms: 20_000,
            pre_roll_ms: 300,
        }
    }
}

impl EndpointConfig {
    fn windows(ms: u32) -> usize {
        (ms as usize * SAMPLE_RATE as usize / 1000).div_ceil(WINDOW)
    }
}

/// Why an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Silence,
    MaxLength,
    EndOfStream,
}

#[derive(Debug, Clone)]
pub struct Utterance {
    /// 16 kHz mono, pre-roll included.
    pub samples: Vec<f32>,
    /// Stream time of the first sample, in seconds.
    pub start_s: f64,
    /// Stream time just after the last sample, in seconds.
    pub end_s: f64,
    /// Time the detector scored as speech.
    pub speech_ms: u32,
    pub reason: EndReason,
}

#[derive(Debug)]
pub struct Endpointer {
    cfg: EndpointConfig,
    pre_roll: VecDeque<f32>,
    pre_roll_cap: usize,
    current: Option<Vec<f32>>,
    start_sample: u64,
    /// First window scored as speech in the open utterance (after the pre-roll).
    onset_sample: u64,
    speech_windows: usize,
    silent_run: usize,
    processed: u64,
}

impl Endpointer {
    pub fn new(cfg: EndpointConfig) -> Self {
        let pre_roll_cap = EndpointConfig::windows(cfg.pre_roll_ms) * WINDOW;
        Self {
            cfg,
            pre_roll: VecDeque::with_capacity(pre_roll_cap + WINDOW),
            pre_roll_cap,
            current: None,
            start_sample: 0,
            onset_sample: 0,
            speech_windows: 0,
            silent_run: 0,
            processed: 0,
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// True while an utterance is open.
    pub fn in_speech(&self) -> bool {
        self.current.is_some()
    }

    /// While an utterance is open: where its speech began (stream seconds) and how much of it
    /// has scored as speech so far, in milliseconds.
    pub fn open_speech(&self) -> Option<(f64, u32)> {
        self.current.as_ref()?;
        let window_ms = WINDOW as u32 * 1000 / SAMPLE_RATE;
        Some((
            self.onset_sample as f64 / SAMPLE_RATE as f64,
            self.speech_windows as u32 * window_ms,
        ))
    }

    /// Feeds one window and its speech probability; returns an utterance when one ends.
    pub fn push(&mut self, window: &[f32], prob: f32) -> Option<Utterance> {
        let at = self.processed;
        self.processed += window.len() as u64;
        match self.current.as_mut() {
            None => {
                if prob >= self.cfg.start_threshold {
                    let mut samples = Vec::with_capacity(SAMPLE_RATE as usize * 4);
                    samples.extend(self.pre_roll.drain(..));
                    self.start_sample = at - samples.len() as u64;
                    self.onset_sample = at;
                    samples.extend_from_slice(window);
                    self.current = Some(samples);
                    self.speech_windows = 1;
                    self.silent_run = 0;
                } else {
                    self.pre_roll.extend(window);
                    while self.pre_roll.len() > self.pre_roll_cap {
                        self.pre_roll.pop_front();
                    }
                }
                None
            }
            Some(samples) => {
                samples.extend_from_slice(window);
                if prob >= self.cfg.end_threshold {
                    self.speech_windows += 1;
                    self.silent_run = 0;
                } else {
                    self.silent_run += 1;
                }
                let max = EndpointConfig::windows(self.cfg.max_utterance_ms) * WINDOW;
                if self.silent_run >= EndpointConfig::windows(self.cfg.end_silence_ms) {
                    self.close(EndReason::Silence)
                } else if samples.len() >= max {
                    self.close(EndReason::MaxLength)
                } else {
                    None
                }
            }
        }
    }

    /// Ends the stream: closes an open utterance.
    pub fn finish(&mut self) -> Option<Utterance> {
        self.current.as_ref()?;
        self.close(EndReason::EndOfStream)
    }

    fn close(&mut self, reason: EndReason) -> Option<Utterance> {
        let samples = self.current.take()?;
        self.pre_roll.clear();
        let window_ms = WINDOW as u32 * 1000 / SAMPLE_RATE;
        let speech_ms = self.speech_windows as u32 * window_ms;
        if speech_ms < self.cfg.min_speech_ms {
            log::debug!("endpoint: dropped {speech_ms} ms of speech (under the minimum)");
            return None;
        }
        let rate = SAMPLE_RATE as f64;
        Some(Utterance {
            start_s: self.start_sample as f64 / rate,
            end_s: (self.start_sample + samples.len() as u64) as f64 / rate,
            samples,
            speech_ms,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: EndpointConfig, probs: &[f32]) -> Vec<Utterance> {
        let mut ep = Endpointer::new(cfg);
        let mut out = Vec::new();
        for (i, &p) in probs.iter().enumerate() {
            let w = vec![i as f32; WINDOW];
            out.extend(ep.push(&w, p));
        }
        out.extend(ep.finish());
        out
    }

    #[test]
    fn keeps_pre_roll_and_ends_on_silence() {
        let cfg = EndpointConfig::default();
        // 20 quiet, 30 speech (0.96 s), 40 quiet windows.
        let mut probs = vec![0.0; 20];
        probs.extend(vec![0.9; 30]);
        probs.extend(vec![0.0; 40]);
        let u = run(cfg, &probs);
        assert_eq!(u.len(), 1);
        let u = &u[0];
        assert_eq!(u.reason, EndReason::Silence);
        let pre = EndpointConfig::windows(cfg.pre_roll_ms);
        // The first sample comes from the pre-roll: window 20 - pre.
        assert_eq!(u.samples[0], (20 - pre) as f32);
        assert!((u.start_s - ((20 - pre) * WINDOW) as f64 / 16_000.0).abs() < 1e-9);
        let silence = EndpointConfig::windows(cfg.end_silence_ms);
        assert_eq!(u.samples.len(), (pre + 30 + silence) * WINDOW);
        assert_eq!(u.speech_ms, 30 * 32);
    }

    #[test]
    fn hysteresis_keeps_an_utterance_through_dips() {
        let cfg = EndpointConfig::default();
        let mut probs = vec![0.9; 10];
        probs.extend(vec![0.4; 30]); // above end_threshold: still speech
        probs.extend(vec![0.9; 10]);
        probs.extend(vec![0.0; 40]);
        assert_eq!(run(cfg, &probs).len(), 1);
    }

    #[test]
    fn drops_clicks_and_splits_at_max_length() {
        let cfg = EndpointConfig::default();
        let mut probs = vec![0.9; 3]; // 96 ms: a click
        probs.extend(vec![0.0; 40]);
        assert!(run(cfg, &probs).is_empty());

        let cfg = EndpointConfig {
            max_utterance_ms: 1_000,
            ..Default::default()
        };
        let u = run(cfg, &vec![0.9; 100]);
        assert!(u.len() >= 3);
        assert_eq!(u[0].reason, EndReason::MaxLength);
        assert!(u[0].samples.len() <= 32 * WINDOW);
    }

    #[test]
    fn silence_only_gives_nothing() {
        assert!(run(EndpointConfig::default(), &[0.0; 1000]).is_empty());
    }
}
