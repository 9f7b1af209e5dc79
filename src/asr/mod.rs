//! Speech to text: Whisper run by whisper.cpp (through whisper-rs) on 16 kHz mono audio.
//!
//! The model files are whisper.cpp ggml files written by `models/convert_whisper.py`, which
//! records each one's size and sha256 in `whisper.json`; [`Whisper::load`] checks them first,
//! because whisper.cpp reads a truncated tensor without noticing.

pub mod corpus;
pub mod wer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use log::{debug, info};
use serde::{Deserialize, Serialize};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use crate::artefact::{self, Recorded};
use crate::audio::SAMPLE_RATE;

/// Whisper's encoder sees 30 s as 1500 frames: 50 frames per second.
const FRAMES_PER_SECOND: f64 = 50.0;
const FULL_AUDIO_CTX: usize = 1500;

/// Model variants the converter writes.
pub const VARIANTS: [&str; 3] = ["f16", "q8_0", "q5_1"];

/// What `whisper.json` records.
#[derive(Debug, Clone, Deserialize)]
pub struct WhisperMeta {
    pub hparams: serde_json::Value,
    pub files: std::collections::BTreeMap<String, RecordedFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordedFile {
    pub file: String,
    #[serde(flatten)]
    pub recorded: Recorded,
}

/// How much of Whisper's 30 s encoder window to compute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioCtx {
    /// The full 30 s window, as Whisper was trained: slowest, most robust.
    Full,
    /// The audio's own length plus `pad_s` seconds (rounded up to 64 frames), never under
    /// [`MIN_FIT_FRAMES`], full beyond 30 s.
    Fit { pad_s: f64 },
    /// A fixed number of encoder frames (50 per second).
    Frames(usize),
}

impl AudioCtx {
    /// Encoder frames for `seconds` of audio; 0 means whisper.cpp's full window.
    pub fn frames(&self, seconds: f64) -> usize {
        match *self {
            AudioCtx::Full => 0,
            AudioCtx::Frames(n) => n.min(FULL_AUDIO_CTX),
            AudioCtx::Fit { pad_s } => {
                let frames = ((seconds + pad_s) * FRAMES_PER_SECOND).ceil() as usize;
                let frames = (frames.div_ceil(64) * 64).max(MIN_FIT_FRAMES);
                if frames >= FULL_AUDIO_CTX { 0 } else { frames }
            }
        }
    }
}

impl std::str::FromStr for AudioCtx {
    type Err = anyhow::Error;
    /// `full`, `fit` (default padding), `fit+1.5` (padding in seconds) or a frame count.
    fn from_str(s: &str) -> Result<Self> {
        if s == "full" {
            return Ok(AudioCtx::Full);
        }
        if let Some(rest) = s.strip_prefix("fit") {
            let pad_s = match rest.strip_prefix('+') {
                Some(p) => p.parse().with_context(|| format!("bad padding in {s:?}"))?,
                None if rest.is_empty() => DEFAULT_PAD_S,
                None => bail!("expected fit or fit+SECONDS, got {s:?}"),
            };
            return Ok(AudioCtx::Fit { pad_s });
        }
        let n: usize = s
            .parse()
            .with_context(|| format!("audio context {s:?}: expected full, fit, fit+S or frames"))?;
        ensure!(
            (64..=FULL_AUDIO_CTX).contains(&n),
            "audio context {n} frames: must be 64..=1500"
        );
        Ok(AudioCtx::Frames(n))
    }
}

/// Padding of the default audio context (see the README's accuracy/latency table).
pub const DEFAULT_PAD_S: f64 = 3.0;

/// Floor of a fitted window (7.7 s): with much less, Whisper base starts repeating itself on
/// short utterances ("Fail again. Fail again.") and whisper.cpp's temperature fallback then
/// re-decodes, which costs more time than the smaller window saved.
pub const MIN_FIT_FRAMES: usize = 384;

#[derive(Debug, Clone, Serialize)]
pub struct AsrOptions {
    /// ISO code ("en"), or "auto" to detect.
    pub language: String,
    pub threads: usize,
    /// `None`: greedy; `Some(n)`: beam search of width n.
    pub beam_size: Option<usize>,
    pub initial_prompt: Option<String>,
    pub audio_ctx: AudioCtx,
    pub timestamps: bool,
}

impl Default for AsrOptions {
    fn default() -> Self {
        Self {
            language: "en".into(),
            threads: 2,
            beam_size: None,
            initial_prompt: None,
            audio_ctx: AudioCtx::Fit {
                pad_s: DEFAULT_PAD_S,
            },
            timestamps: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    pub audio_s: f64,
    /// Wall time of whisper.cpp's full pass (mel, encoder, decoder).
    pub asr_ms: f64,
    /// Encoder frames used (1500 = the full 30 s window).
    pub audio_ctx: usize,
}

impl Transcript {
    pub fn real_time_factor(&self) -> f64 {
        if self.audio_s > 0.0 {
            self.asr_ms / 1e3 / self.audio_s
        } else {
            0.0
        }
    }
}

/// A loaded Whisper model with one decoding state (one transcription at a time).
pub struct Whisper {
    // The state borrows nothing but must go before the context; field order drops it first.
    state: WhisperState,
    _ctx: WhisperContext,
    path: PathBuf,
}

/// The ggml file of `variant` in `dir`, checked against `whisper.json`.
pub fn model_path(dir: &Path, variant: &str, verify_checksum: bool) -> Result<PathBuf> {
    let meta_path = dir.join("whisper.json");
    let text = std::fs::read_to_string(&meta_path).with_context(|| {
        format!(
            "{} is missing: the Whisper model was not converted (run `make models`)",
            meta_path.display()
        )
    })?;
    let meta: WhisperMeta = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a whisper.json", meta_path.display()))?;
    let rec = meta.files.get(variant).ok_or_else(|| {
        anyhow!(
            "{}: no {variant:?} model (have {})",
            meta_path.display(),
            meta.files.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let path = dir.join(&rec.file);
    if verify_checksum {
        artefact::verify(&path, &rec.recorded)?;
    } else {
        artefact::verify_size(&path, &rec.recorded)?;
    }
    Ok(path)
}

/// Speech to text, as the assistant's loop uses it (Whisper here; another backend, or a test
/// double that injects failures, plugs in the same way).
pub trait Recognizer: Send {
    fn transcribe(&mut self, samples: &[f32], opts: &AsrOptions) -> Result<Transcript>;
}

impl Recognizer for Whisper {
    fn transcribe(&mut self, samples: &[f32], opts: &AsrOptions) -> Result<Transcript> {
        Whisper::transcribe(self, samples, opts)
    }
}

impl Whisper {
    /// Loads a ggml model file (check it first with [`model_path`]).
    pub fn load(path: &Path) -> Result<Self> {
        whisper_rs::install_logging_hooks();
        let t = Instant::now();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let path_str = path
            .to_str()
            .ok_or_else(|| anyhow!("{}: path is not UTF-8", path.display()))?;
        let ctx = WhisperContext::new_with_params(path_str, params).map_err(|e| {
            anyhow!(
                "{}: whisper.cpp could not load it ({e}); is it a whisper.cpp ggml model? \
                 (run `make models`)",
                path.display()
            )
        })?;
        let state = ctx
            .create_state()
            .map_err(|e| anyhow!("{}: creating a decoding state: {e}", path.display()))?;
        info!(
            "asr: loaded {} in {:.0} ms",
            path.display(),
            t.elapsed().as_secs_f64() * 1e3
        );
        Ok(Self {
            state,
            _ctx: ctx,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transcribes 16 kHz mono samples. Empty or silent input gives an empty transcript.
    pub fn transcribe(&mut self, samples: &[f32], opts: &AsrOptions) -> Result<Transcript> {
        let audio_s = samples.len() as f64 / SAMPLE_RATE as f64;
        // whisper.cpp wants at least 100 ms and pads to its window; a shorter clip is no speech.
        if samples.len() < SAMPLE_RATE as usize / 10 {
            return Ok(Transcript {
                text: String::new(),
                segments: vec![],
                audio_s,
                asr_ms: 0.0,
                audio_ctx: 0,
            });
        }
        ensure!(opts.threads >= 1, "ASR threads must be at least 1");
        let strategy = match opts.beam_size {
            Some(n) => SamplingStrategy::BeamSearch {
                beam_size: n.max(1) as i32,
                patience: -1.0,
            },
            None => SamplingStrategy::Greedy { best_of: 1 },
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(opts.threads as i32);
        if opts.language == "auto" {
            params.set_language(None);
            params.set_detect_language(false);
        } else {
            params.set_language(Some(&opts.language));
        }
        params.set_translate(false);
        params.set_no_timestamps(!opts.timestamps);
        params.set_no_context(true);
        params.set_suppress_nst(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        if let Some(p) = opts.initial_prompt.as_deref() {
            params.set_initial_prompt(p);
        }
        let frames = opts.audio_ctx.frames(audio_s);
        params.set_audio_ctx(frames as i32);
        let t = Instant::now();
        self.state
            .full(params, samples)
            .map_err(|e| anyhow!("whisper.cpp failed on {audio_s:.1} s of audio: {e}"))?;
        let asr_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut segments = Vec::new();
        for seg in self.state.as_iter() {
            let text = seg
                .to_str_lossy()
                .map_err(|e| anyhow!("reading a segment: {e}"))?
                .to_string();
            segments.push(Segment {
                start_s: seg.start_timestamp() as f64 / 100.0,
                end_s: seg.end_timestamp() as f64 / 100.0,
                text,
            });
        }
        let text = segments
            .iter()
            .map(|s| s.text.trim())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        debug!("asr: {audio_s:.2} s in {asr_ms:.0} ms: {text:?}");
        Ok(Transcript {
            text,
            segments,
            audio_s,
            asr_ms,
            audio_ctx: if frames == 0 { FULL_AUDIO_CTX } else { frames },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_fits_the_audio() {
        let fit = AudioCtx::Fit { pad_s: 1.0 };
        assert_eq!(fit.frames(2.0), MIN_FIT_FRAMES); // 150 frames, raised to the floor
        assert_eq!(fit.frames(10.0), 576); // 550 frames -> 576
        assert_eq!(fit.frames(29.5), 0); // past the window: full
        assert_eq!(AudioCtx::Full.frames(2.0), 0);
        assert_eq!(
            "fit+0.5".parse::<AudioCtx>().unwrap(),
            AudioCtx::Fit { pad_s: 0.5 }
        );
        assert_eq!("768".parse::<AudioCtx>().unwrap(), AudioCtx::Frames(768));
        assert!("12".parse::<AudioCtx>().is_err());
        assert!("fitx".parse::<AudioCtx>().is_err());
    }
}
