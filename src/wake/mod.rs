//! Wake word: openWakeWord's streaming front end and its pretrained phrase heads, run by tract.
//!
//! 16 kHz audio goes through three small networks, 80 ms ([`CHUNK`] samples) at a time:
//! `melspectrogram.onnx` turns each chunk, with the 480 samples before it (so its frames carry
//! on the previous chunk's 10 ms grid), into 8 frames of 32 log-mel bins; `embedding_model.onnx`
//! turns the last 76 frames (0.775 s) into one 96-value speech embedding per chunk; a head
//! (`hey_jarvis_v0.1.onnx`, …) scores the last 16 embeddings (1.28 s) with the probability that
//! they end in its phrase. [`Decider`] turns the scores into detections: a score at or above
//! the threshold for `patience` chunks in a row, then a refractory period.
//!
//! The stream starts as if two seconds of silence came first, so a phrase at the very start
//! of a file is heard like one later on. The front end is Apache-2.0; the pretrained heads are
//! CC BY-NC-SA 4.0 (non-commercial use only).

pub mod custom;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use tract_onnx::prelude::*;

/// Samples per step (80 ms at 16 kHz).
pub const CHUNK: usize = 1280;
/// Samples of the previous chunk the mel network sees again (its 512-sample window and
/// 160-sample hop give 8 frames for 1280 + 480 samples).
const MEL_CONTEXT: usize = 480;
const MEL_FRAMES: usize = 8;
const MEL_BINS: usize = 32;
/// Mel frames per embedding.
const EMB_FRAMES: usize = 76;
pub const EMB_DIM: usize = 96;
/// Embeddings per head score.
const HEAD_FRAMES: usize = 16;
/// Embeddings kept (an enrolled phrase matches up to this many steps back: 4 s).
const HISTORY: usize = 50;
/// Seconds per step.
pub const STEP_S: f64 = CHUNK as f64 / RATE;
/// Seconds of silence the stream is primed with.
const PRIME_S: f64 = 2.0;
const RATE: f64 = 16_000.0;

/// The pretrained heads `openwakeword==0.5.1` ships (files `NAME_v0.1.onnx`).
pub const PRETRAINED: [&str; 4] = ["hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy"];

/// The front end's two files and a head's file in a wake-model directory.
pub fn mel_path(dir: &Path) -> PathBuf {
    dir.join("melspectrogram.onnx")
}
pub fn embedding_path(dir: &Path) -> PathBuf {
    dir.join("embedding_model.onnx")
}
pub fn head_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}_v0.1.onnx"))
}

/// When a score counts as the phrase.
#[derive(Debug, Clone, Copy)]
pub struct WakeOptions {
    /// Score at or above which a chunk counts (openWakeWord's default is 0.5).
    pub threshold: f32,
    /// Chunks in a row at or above the threshold before a detection.
    pub patience: usize,
    /// Seconds after a detection during which the head is not listened to.
    pub refractory_s: f64,
}

impl Default for WakeOptions {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            patience: 1,
            refractory_s: 2.0,
        }
    }
}

/// A wake phrase heard.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detection {
    pub head: String,
    pub score: f32,
    /// Stream seconds at the end of the chunk that made it (the phrase ends about here).
    pub at_s: f64,
}

/// Each head's score for one chunk.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Stream seconds at the chunk's end.
    pub end_s: f64,
    /// In the order of [`WakeWord::heads`].
    pub scores: Vec<f32>,
}

/// Threshold, patience and refractory period over one head's scores: pure, so it is tested
/// without models.
#[derive(Debug, Clone)]
pub struct Decider {
    opts: WakeOptions,
    streak: usize,
    quiet_until_s: f64,
}

impl Decider {
    pub fn new(opts: WakeOptions) -> Self {
        Self {
            opts,
            streak: 0,
            quiet_until_s: f64::NEG_INFINITY,
        }
    }

    /// Whether the chunk ending at `end_s` with `score` completes a detection.
    pub fn step(&mut self, score: f32, end_s: f64) -> bool {
        if end_s < self.quiet_until_s {
            self.streak = 0;
            return false;
        }
        if score >= self.opts.threshold {
            self.streak += 1;
        } else {
            self.streak = 0;
        }
        if self.streak >= self.opts.patience.max(1) {
            self.streak = 0;
            self.quiet_until_s = end_s + self.opts.refractory_s;
            return true;
        }
        false
    }
}

/// One of the three networks, planned for its fixed input shape.
struct Net {
    plan: Arc<TypedSimplePlan>,
    shape: Vec<usize>,
}

impl Net {
    /// Loads `path` for `shape`, checking the file against its fetch record and the output's
    /// size (`out_len` values) on a run over zeros.
    fn load(path: &Path, shape: &[usize], out_len: usize) -> Result<Net> {
        if !path.exists() {
            bail!(
                "{} is missing (run `make models`: it fetches openwakeword==0.5.1)",
                path.display()
            );
        }
        if let Some(rec) = crate::artefact::fetched_record(path) {
            crate::artefact::verify(path, &rec)?;
        }
        let net = Self::plan(path, shape).with_context(|| {
            format!(
                "{}: not a usable openWakeWord model (truncated or corrupted? run `make models`)",
                path.display()
            )
        })?;
        let out = net.run(&vec![0.0; shape.iter().product()])?;
        ensure!(
            out.len() == out_len,
            "{}: gives {} values for an input of {shape:?}, expected {out_len} (not the model \
             this stage expects)",
            path.display(),
            out.len()
        );
        Ok(net)
    }

    fn plan(path: &Path, shape: &[usize]) -> Result<Net> {
        let mut model = tract_onnx::onnx().model_for_path(path)?;
        ensure!(
            model.input_outlets()?.len() == 1,
            "it has {} inputs, expected one",
            model.input_outlets()?.len()
        );
        let dims: TVec<TDim> = shape.iter().map(|d| d.to_dim()).collect();
        model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), dims))?;
        let plan = model.into_optimized()?.into_runnable()?;
        Ok(Net {
            plan,
            shape: shape.to_vec(),
        })
    }

    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let x = Tensor::from_shape(&self.shape, input)?;
        let out = self.plan.run(tvec![x.into_tvalue()])?;
        let y = out.first().context("no output")?;
        Ok(y.to_plain_array_view::<f32>()?.iter().copied().collect())
    }
}

/// What scores the embeddings: a pretrained head, or an enrolled phrase's templates.
enum Scorer {
    Net(Net),
    Phrase(custom::Phrase),
}

/// The streaming detector: the front end, one or more heads, a [`Decider`] per head.
pub struct WakeWord {
    mel: Net,
    embedding: Net,
    heads: Vec<(String, Scorer, Decider)>,
    /// The previous chunk's last [`MEL_CONTEXT`] samples, then the samples not yet stepped
    /// over (int16 scale, as the networks were trained).
    pending: Vec<f32>,
    /// The last [`EMB_FRAMES`] mel frames, oldest first.
    mels: Vec<f32>,
    /// The last [`HISTORY`] embeddings, oldest first.
    embeddings: Vec<f32>,
    /// Samples stepped over since the stream began (after the priming silence).
    stepped: u64,
}

impl WakeWord {
    /// The front end from `dir` and the heads named: a pretrained one (`hey_jarvis`: the
    /// file `hey_jarvis_v0.1.onnx` there), a path to an openWakeWord `.onnx` head, or
    /// `custom:NAME` (a phrase enrolled with `edgevox enroll NAME`, see [`custom`]).
    pub fn load(dir: &Path, heads: &[&str], opts: WakeOptions) -> Result<WakeWord> {
        ensure!(!heads.is_empty(), "no wake-word head chosen");
        ensure!(
            (0.0..=1.0).contains(&opts.threshold) && opts.threshold > 0.0,
            "a wake-word threshold of {} is outside (0, 1]",
            opts.threshold
        );
        ensure!(
            opts.patience >= 1,
            "a wake-word patience of {} chunks: a phrase needs at least one chunk at the threshold",
            opts.patience
        );
        let mut w = Self::front_end(dir)?;
        for &name in heads {
            let (label, scorer) = if let Some(phrase) = name.strip_prefix("custom:") {
                let p = custom::Phrase::load(&custom::path_of(phrase))?;
                (format!("custom:{}", p.name), Scorer::Phrase(p))
            } else {
                let path = if name.ends_with(".onnx") {
                    PathBuf::from(name)
                } else {
                    if !PRETRAINED.contains(&name) {
                        bail!(
                            "no wake-word head {name:?}: the pretrained ones are {} (or give a \
                             path to an .onnx head, or custom:NAME for an enrolled phrase)",
                            PRETRAINED.join(", ")
                        );
                    }
                    head_path(dir, name)
                };
                let label = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(|s| s.trim_end_matches("_v0.1").to_string())
                    .unwrap_or_else(|| name.to_string());
                let net = Net::load(&path, &[1, HEAD_FRAMES, EMB_DIM], 1)?;
                (label, Scorer::Net(net))
            };
            w.heads.push((label, scorer, Decider::new(opts)));
        }
        crate::metrics::release_freed_heap();
        Ok(w)
    }

    /// The front end alone (no heads): for [`Self::embeddings`] (enrollment).
    pub fn front_end(dir: &Path) -> Result<WakeWord> {
        let mel = Net::load(
            &mel_path(dir),
            &[1, MEL_CONTEXT + CHUNK],
            MEL_FRAMES * MEL_BINS,
        )?;
        let embedding = Net::load(&embedding_path(dir), &[1, EMB_FRAMES, MEL_BINS, 1], EMB_DIM)?;
        let mut w = WakeWord {
            mel,
            embedding,
            heads: Vec::new(),
            pending: vec![0.0; MEL_CONTEXT],
            mels: vec![0.0; EMB_FRAMES * MEL_BINS],
            embeddings: vec![0.0; HISTORY * EMB_DIM],
            stepped: 0,
        };
        w.prime()?;
        Ok(w)
    }

    /// Median milliseconds per call of each network over `runs` calls on zeros: the mel
    /// spectrogram, the embedding, and all the heads together (one step runs each once).
    pub fn step_profile(&self, runs: usize) -> Result<[f64; 3]> {
        let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
            let mut t = Vec::new();
            for _ in 0..runs.max(1) {
                let start = std::time::Instant::now();
                f()?;
                t.push(start.elapsed().as_secs_f64() * 1e3);
            }
            Ok(crate::metrics::median(&t).unwrap_or(0.0))
        };
        let mel_in = vec![0.0; MEL_CONTEXT + CHUNK];
        let emb_in = vec![0.0; EMB_FRAMES * MEL_BINS];
        Ok([
            time(&mut || self.mel.run(&mel_in).map(drop))?,
            time(&mut || self.embedding.run(&emb_in).map(drop))?,
            time(&mut || {
                for (_, head, _) in &self.heads {
                    match head {
                        Scorer::Net(n) => {
                            drop(n.run(&self.embeddings[(HISTORY - HEAD_FRAMES) * EMB_DIM..])?)
                        }
                        Scorer::Phrase(p) => drop(p.score(&self.embeddings)),
                    }
                }
                Ok(())
            })?,
        ])
    }

    /// The heads' names, in the order of [`Scored::scores`].
    pub fn heads(&self) -> Vec<&str> {
        self.heads.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    /// Forgets the stream: as if it began now, after the priming silence.
    pub fn reset(&mut self) -> Result<()> {
        self.pending = vec![0.0; MEL_CONTEXT];
        self.mels.fill(0.0);
        self.embeddings.fill(0.0);
        for (_, _, d) in &mut self.heads {
            *d = Decider::new(d.opts);
        }
        self.prime()
    }

    fn prime(&mut self) -> Result<()> {
        let silence = vec![0.0; (PRIME_S * RATE) as usize];
        self.feed(&silence, false, None)?;
        self.stepped = 0;
        Ok(())
    }

    /// Feeds 16 kHz samples in [-1, 1]; returns the embedding of each step they complete
    /// (steps × [`EMB_DIM`] values; step `k` ends at `(k + 1) * STEP_S` after a reset).
    pub fn embeddings(&mut self, samples: &[f32]) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.feed(samples, false, Some(&mut out))?;
        Ok(out)
    }

    /// Feeds 16 kHz samples in [-1, 1]; returns the detections they complete.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<Detection>> {
        let scored = self.scores(samples)?;
        let mut found = Vec::new();
        for s in &scored {
            for (i, (name, _, decider)) in self.heads.iter_mut().enumerate() {
                if decider.step(s.scores[i], s.end_s) {
                    found.push(Detection {
                        head: name.clone(),
                        score: s.scores[i],
                        at_s: s.end_s,
                    });
                }
            }
        }
        Ok(found)
    }

    /// Feeds 16 kHz samples in [-1, 1]; returns every head's score for each chunk they
    /// complete (a partial chunk waits for the next call).
    pub fn scores(&mut self, samples: &[f32]) -> Result<Vec<Scored>> {
        self.feed(samples, true, None)
    }

    fn feed(
        &mut self,
        samples: &[f32],
        score: bool,
        mut capture: Option<&mut Vec<f32>>,
    ) -> Result<Vec<Scored>> {
        self.pending.extend(samples.iter().map(|x| x * 32768.0));
        let mut out = Vec::new();
        while self.pending.len() >= MEL_CONTEXT + CHUNK {
            let mel = self.mel.run(&self.pending[..MEL_CONTEXT + CHUNK])?;
            self.pending.drain(..CHUNK);
            self.stepped += CHUNK as u64;
            // openWakeWord's scaling of the mel network's output.
            shift_in(&mut self.mels, mel.iter().map(|m| m / 10.0 + 2.0));
            let emb = self.embedding.run(&self.mels)?;
            if let Some(c) = capture.as_deref_mut() {
                c.extend_from_slice(&emb);
            }
            shift_in(&mut self.embeddings, emb.into_iter());
            if score {
                let mut scores = Vec::with_capacity(self.heads.len());
                let last = &self.embeddings[(HISTORY - HEAD_FRAMES) * EMB_DIM..];
                for (_, head, _) in &self.heads {
                    scores.push(match head {
                        Scorer::Net(net) => net.run(last)?[0],
                        Scorer::Phrase(p) => {
                            let n = p.history_steps().min(HISTORY);
                            p.score(&self.embeddings[(HISTORY - n) * EMB_DIM..])
                        }
                    });
                }
                out.push(Scored {
                    end_s: self.stepped as f64 / RATE,
                    scores,
                });
            }
        }
        Ok(out)
    }
}

/// Appends `new` to a fixed-length window, dropping as many values from its front.
fn shift_in(window: &mut Vec<f32>, new: impl ExactSizeIterator<Item = f32>) {
    let n = new.len().min(window.len());
    window.drain(..n);
    window.extend(new.take(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detection_needs_patience_and_is_followed_by_quiet() {
        let mut d = Decider::new(WakeOptions {
            threshold: 0.5,
            patience: 2,
            refractory_s: 1.0,
        });
        let step = |d: &mut Decider, s: f32, t: f64| d.step(s, t);
        assert!(!step(&mut d, 0.9, 0.08));
        assert!(!step(&mut d, 0.2, 0.16), "a dip resets the streak");
        assert!(!step(&mut d, 0.9, 0.24));
        assert!(step(&mut d, 0.5, 0.32), "two in a row at the threshold");
        assert!(!step(&mut d, 0.99, 0.40));
        assert!(
            !step(&mut d, 0.99, 1.30),
            "still within a second of the detection"
        );
        assert!(!step(&mut d, 0.99, 1.40));
        assert!(step(&mut d, 0.99, 1.48));
    }

    #[test]
    fn the_window_keeps_its_length_and_order() {
        let mut w = vec![1.0, 2.0, 3.0, 4.0];
        shift_in(&mut w, [5.0, 6.0].into_iter());
        assert_eq!(w, [3.0, 4.0, 5.0, 6.0]);
        shift_in(&mut w, [7.0, 8.0, 9.0, 10.0, 11.0].into_iter());
        assert_eq!(w, [7.0, 8.0, 9.0, 10.0]);
    }

    #[test]
    fn a_file_that_is_not_a_model_is_refused_naming_it() {
        let dir = std::env::temp_dir().join(format!("edgevox-wake-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(mel_path(&dir), b"not an onnx file").unwrap();
        let err = WakeWord::load(&dir, &["hey_jarvis"], WakeOptions::default())
            .err()
            .expect("refused");
        let msg = format!("{err:#}");
        assert!(msg.contains("melspectrogram.onnx"), "{msg}");
        assert!(msg.contains("not a usable openWakeWord model"), "{msg}");
        std::fs::remove_file(mel_path(&dir)).unwrap();
        let msg = format!(
            "{:#}",
            WakeWord::load(&dir, &["hey_jarvis"], WakeOptions::default())
                .err()
                .expect("refused")
        );
        assert!(msg.contains("is missing"), "{msg}");
    }
}
