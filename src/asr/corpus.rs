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
