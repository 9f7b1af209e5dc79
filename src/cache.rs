//! The model cache's layout, in one place: where `make models` (the converters in `models/`)
//! puts each artefact, and so where every stage, the planner, the benches and the board
//! packages look for it.
//!
//! ```text
//! $EDGEVOX_CACHE/                 (models/cache in a checkout; /usr/share/edgevox/models on a board)
//!   smollm2/<variant>/llm.json    the LLM exports (q4_1 is the default; q4, f32)
//!   whisper/whisper.json          Whisper base, one ggml file per quantization
//!   vad/silero_vad_op18_ifless.onnx
//!   wake/                         openWakeWord's front end and pretrained heads
//!   speech/, speech/synthetic/    recorded and synthesized test speech
//!   stamps/<package>.json         what models/fetch.py extracted (size and sha256 per file)
//! ```
//!
//! The Python side (`models/fetch.py`, `models/packages.toml`, the Makefile) writes the same
//! names; `boards/deb/build.sh` copies this tree into a board's models package.

use std::path::{Path, PathBuf};

/// The LLM export used unless one is named.
pub const DEFAULT_LLM: &str = "q4_1";
/// The Silero VAD file the VAD stage runs.
pub const VAD_FILE: &str = "silero_vad_op18_ifless.onnx";

/// A model cache directory and the paths inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// `$EDGEVOX_CACHE`, else `models/cache` under the working directory (where `make` puts it).
    pub fn from_env() -> Cache {
        Self::from_env_or(Path::new("models/cache"))
    }

    /// `$EDGEVOX_CACHE`, else `default` (the tests pass the checkout's own cache, so they run
    /// from any directory).
    pub fn from_env_or(default: &Path) -> Cache {
        Cache::at(
            std::env::var_os("EDGEVOX_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| default.to_path_buf()),
        )
    }

    /// The checkout's cache, for tests: `$EDGEVOX_CACHE`, else `models/cache` in the source tree.
    pub fn for_tests() -> Cache {
        Self::from_env_or(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cache"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the LLM exports are, one directory per variant.
    pub fn llms(&self) -> PathBuf {
        self.root.join("smollm2")
    }

    /// One LLM export (`q4_1`, `q4`, `f32`).
    pub fn llm(&self, variant: &str) -> PathBuf {
        self.llms().join(variant)
    }

    /// A directory at the cache's top level (the tiny test models: `tiny-llm`, `tiny-llm-q4_1`).
    pub fn named(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The converted Whisper models and their `whisper.json`.
    pub fn whisper(&self) -> PathBuf {
        self.root.join("whisper")
    }

    pub fn vad_model(&self) -> PathBuf {
        self.root.join("vad").join(VAD_FILE)
    }

    /// openWakeWord's networks.
    pub fn wake(&self) -> PathBuf {
        self.root.join("wake")
    }

    /// Recorded speech (LibriVox, CMU ARCTIC clips).
    pub fn speech(&self) -> PathBuf {
        self.root.join("speech")
    }

    /// Speech synthesized for the tests (`models/speech_clips.py`).
    pub fn synthetic(&self, file: &str) -> PathBuf {
        self.speech().join("synthetic").join(file)
    }

    /// What `models/fetch.py` recorded per package.
    pub fn stamps(&self) -> PathBuf {
        self.root.join("stamps")
    }

    /// The onnxruntime / llama.cpp reference outputs the fidelity tests compare with.
    pub fn refs(&self) -> PathBuf {
        self.root.join("refs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_ones_make_models_writes() {
        let c = Cache::at("/c");
        assert_eq!(c.llm(DEFAULT_LLM), Path::new("/c/smollm2/q4_1"));
        assert_eq!(c.whisper(), Path::new("/c/whisper"));
        assert_eq!(
            c.vad_model(),
            Path::new("/c/vad/silero_vad_op18_ifless.onnx")
        );
        assert_eq!(c.wake(), Path::new("/c/wake"));
        assert_eq!(
            c.synthetic("capital.wav"),
            Path::new("/c/speech/synthetic/capital.wav")
        );
        // The Makefile names the same files: a rename on either side fails here.
        let make = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Makefile"))
            .unwrap();
        for line in [
            "LLM_Q41 := $(CACHE)/smollm2/q4_1",
            "WHISPER := $(CACHE)/whisper",
            "VAD_MODEL := $(CACHE)/vad/silero_vad_op18_ifless.onnx",
            "WAKE := $(CACHE)/wake",
            "SPEECH := $(CACHE)/speech",
            "SYNTH := $(SPEECH)/synthetic",
            "STAMPS := $(CACHE)/stamps",
        ] {
            assert!(make.contains(line), "the Makefile no longer says {line:?}");
        }
    }
}
