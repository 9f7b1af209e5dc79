//! The speech clips with known text that the tests and `edgevox bench asr` score against
//! (`models/testdata/speech.toml`; the audio is in the models cache).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Clip {
    pub name: String,
    pub path: PathBuf,
    /// Reference transcript, when the clip's text is known.
    pub text: Option<String>,
    pub synthetic: bool,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    recorded: Vec<Entry>,
    #[serde(default)]
    synthetic: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    file: Option<String>,
    text: Option<String>,
}

/// Clips of `manifest`, with recorded audio under `cache/speech/` and synthetic audio under
/// `cache/speech/synthetic/`.
pub fn load(manifest: &Path, cache: &crate::cache::Cache) -> Result<Vec<Clip>> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let m: Manifest =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let speech = cache.speech();
    let mut clips = Vec::new();
    for e in m.recorded {
        let file = e.file.unwrap_or_else(|| format!("{}.wav", e.name));
        clips.push(Clip {
            path: speech.join(file),
            name: e.name,
            text: e.text,
            synthetic: false,
        });
    }
    for e in m.synthetic {
        clips.push(Clip {
            path: speech.join("synthetic").join(format!("{}.wav", e.name)),
            name: e.name,
            text: e.text,
            synthetic: true,
        });
    }
    Ok(clips)
}

/// One stretch of recorded human speech, for measuring what must not react to it (false
/// accepts of a wake word).
pub struct Recording {
    pub name: String,
    /// 16 kHz mono.
    pub samples: Vec<f32>,
}

impl Recording {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / crate::audio::SAMPLE_RATE as f64
    }
}

/// Pause put between the prompts of a collection.
const PROMPT_GAP_S: f64 = 0.5;
/// Longest part a collection of prompts is streamed as (seconds).
pub const PROMPT_PART_S: f64 = 300.0;

/// All the recorded human speech the cache has: each `speech/*.wav` (LibriVox readings, the
/// CMU ARCTIC clips, ...) as one recording, and each collection of short prompts under
/// `speech/prompts/NAME/` (every WAV below it, in path order, 0.5 s apart) as recordings of up
/// to [`PROMPT_PART_S`] each, cut between prompts, so a detector streams through them as
/// through long sessions instead of restarting per prompt (and the parts can be streamed side
/// by side). Synthetic speech (`speech/synthetic/`) is not included.
pub fn real_speech(cache: &crate::cache::Cache) -> Result<Vec<Recording>> {
    use crate::audio::wav;
    let speech = cache.speech();
    let wavs = |dir: &Path, deep: bool| -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d)
                .with_context(|| format!("{}: cannot list it (run `make models`)", d.display()))?
            {
                let p = e?.path();
                if p.is_dir() {
                    if deep {
                        todo.push(p);
                    }
                } else if p.extension().is_some_and(|x| x == "wav") {
                    out.push(p);
                }
            }
        }
        out.sort();
        Ok(out)
    };
    let mut out = Vec::new();
    for p in wavs(&speech, false)? {
        out.push(Recording {
            name: p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            samples: wav::read_16k_mono(&p)?.0,
        });
    }
    let prompts = speech.join("prompts");
    if prompts.is_dir() {
        let mut sets: Vec<PathBuf> = std::fs::read_dir(&prompts)
            .with_context(|| format!("{}: cannot list it", prompts.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        sets.sort();
        let gap = (PROMPT_GAP_S * crate::audio::SAMPLE_RATE as f64) as usize;
        let most = (PROMPT_PART_S * crate::audio::SAMPLE_RATE as f64) as usize;
        for set in sets {
            let files = wavs(&set, true)?;
            let set_name = set
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            // (first prompt, samples) of each part.
            let mut parts: Vec<(usize, Vec<f32>)> = vec![(0, Vec::new())];
            for (i, p) in files.iter().enumerate() {
                let x = wav::read_16k_mono(p)?.0;
                let last = parts.last_mut().expect("one part at least");
                if !last.1.is_empty() && last.1.len() + x.len() + gap > most {
                    parts.push((i, Vec::new()));
                }
                let samples = &mut parts.last_mut().expect("one part at least").1;
                samples.extend(x);
                samples.resize(samples.len() + gap, 0.0);
            }
            let n = parts.len();
            let firsts: Vec<usize> = parts.iter().map(|p| p.0).collect();
            for (k, (first, samples)) in parts.into_iter().enumerate() {
                let end = firsts.get(k + 1).copied().unwrap_or(files.len());
                out.push(Recording {
                    name: format!(
                        "prompts/{set_name} part {}/{n} (prompts {}-{} of {})",
                        k + 1,
                        first + 1,
                        end,
                        files.len()
                    ),
                    samples,
                });
            }
        }
    }
    Ok(out)
}
