//! The board edgevox runs on: one profile per `boards/*.toml` (target, CPU, threads, memory
//! budget, model variants, context, audio devices), all embedded at build time; the one
//! `EDGEVOX_BOARD` named is the default. [`budget`] plans memory against the profile before
//! anything is loaded.

pub mod budget;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/boards.rs"));
}

pub use embedded::DEFAULT_BOARD;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    pub name: String,
    pub description: String,
    /// Rust target triple.
    pub target: String,
    /// `-C target-cpu` for Rust and the CPU whisper.cpp is built for.
    pub target_cpu: String,
    /// CPU features the build may use (`neon`, `dotprod`, ...).
    pub features: Vec<String>,
    pub cores: usize,
    /// The board's memory.
    pub ram_mb: u32,
    /// What edgevox may use of it (resident set, all stages).
    pub budget_mb: u32,
    pub threads: Threads,
    pub models: Models,
    #[serde(default)]
    pub audio: AudioProfile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threads {
    pub asr: usize,
    pub llm: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    /// Whisper variants, preferred first; later ones are smaller fallbacks.
    pub whisper: Vec<String>,
    /// LLM variants, preferred first.
    pub llm: Vec<String>,
    /// LLM context length, in tokens.
    pub context: usize,
    /// How the LLM's KV cache stores keys and values (`f16`, `f32` or `q8`: 8-bit blocks,
    /// 53% of f16's memory per token).
    #[serde(default = "default_kv_cache")]
    pub kv_cache: String,
    /// May the planner fall back to a later variant (or a shorter context) to fit?
    pub downgrade: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioProfile {
    /// Input and output device names (`None`: the system default).
    pub capture: Option<String>,
    pub playback: Option<String>,
    /// The echo guard's ratio for this board's speaker-to-microphone coupling.
    #[serde(default = "default_echo_ratio")]
    pub echo_ratio: f32,
    /// The wake word `run --board` listens for unless `--wake` says otherwise (`off` or
    /// absent: every utterance is answered).
    #[serde(default)]
    pub wake: Option<String>,
}

fn default_kv_cache() -> String {
    crate::llm::KvType::default().name().to_string()
}

impl Models {
    /// The KV cache type (checked when the profile was parsed).
    pub fn kv_type(&self) -> crate::llm::KvType {
        crate::llm::KvType::from_name(&self.kv_cache).unwrap_or_default()
    }
}

fn default_echo_ratio() -> f32 {
    0.6
}

impl Default for AudioProfile {
    fn default() -> Self {
        Self {
            capture: None,
            playback: None,
            echo_ratio: default_echo_ratio(),
            wake: None,
        }
    }
}

/// The smallest context the assistant can hold a turn in.
pub const MIN_CONTEXT: usize = 256;

impl Board {
    /// Parses and validates a profile; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Board> {
        let b: Board = toml::from_str(text).with_context(|| format!("board profile {origin}"))?;
        b.validate()
            .with_context(|| format!("board profile {origin}"))?;
        Ok(b)
    }

    fn validate(&self) -> Result<()> {
        ensure!(self.cores >= 1, "cores must be at least 1");
        ensure!(
            self.threads.asr >= 1 && self.threads.llm >= 1,
            "threads must be at least 1"
        );
        ensure!(
            self.budget_mb >= 1 && self.budget_mb <= self.ram_mb,
            "budget_mb {} must be within the board's ram_mb {}",
            self.budget_mb,
            self.ram_mb
        );
        ensure!(!self.models.whisper.is_empty(), "no whisper variant");
        for v in &self.models.whisper {
            ensure!(
                crate::asr::VARIANTS.contains(&v.as_str()),
                "unknown whisper variant {v:?} (have {})",
                crate::asr::VARIANTS.join(", ")
            );
        }
        ensure!(!self.models.llm.is_empty(), "no llm variant");
        crate::llm::KvType::from_name(&self.models.kv_cache)?;
        ensure!(
            self.models.context >= MIN_CONTEXT,
            "context {} is under the minimum of {MIN_CONTEXT}",
            self.models.context
        );
        ensure!(
            self.audio.echo_ratio >= 0.0,
            "echo_ratio must not be negative"
        );
        Ok(())
    }

    /// The embedded profile `name`.
    pub fn named(name: &str) -> Result<Board> {
        let Some((_, text)) = embedded::BOARDS.iter().find(|(n, _)| *n == name) else {
            bail!(
                "unknown board {name:?}; the boards are {}",
                names().join(", ")
            );
        };
        Board::parse(&format!("boards/{name}.toml"), text)
    }

    /// `arg` is an embedded board's name or the path of a profile (`/etc/edgevox/board.toml`,
    /// anything ending in `.toml`): a file is read, checked like the embedded ones, and must
    /// be for the target this binary was built for.
    pub fn resolve(arg: &str) -> Result<Board> {
        if !arg.ends_with(".toml") && !arg.contains('/') {
            return Board::named(arg);
        }
        let text = std::fs::read_to_string(arg)
            .with_context(|| format!("{arg}: cannot read the board profile"))?;
        let board = Board::parse(arg, &text)?;
        let built = env!("EDGEVOX_BUILD_INFO").split(' ').next().unwrap_or("");
        ensure!(
            board.target == built,
            "{arg}: board {} is for {}, but this edgevox was built for {built}",
            board.name,
            board.target
        );
        Ok(board)
    }

    /// The board this binary was built for.
    pub fn built_for() -> Result<Board> {
        Board::named(DEFAULT_BOARD)
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget_mb as u64 * 1024 * 1024
    }
}

/// Names of the embedded boards.
pub fn names() -> Vec<&'static str> {
    embedded::BOARDS.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_profile_parses_and_is_named_after_its_file() {
        assert!(names().len() >= 5);
        for name in names() {
            let b = Board::named(name).unwrap();
            assert_eq!(b.name, name);
        }
        assert_eq!(Board::built_for().unwrap().name, DEFAULT_BOARD);
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        let err = Board::named("no-such-board").unwrap_err().to_string();
        assert!(
            err.contains("unknown board") && err.contains("rpi4"),
            "{err}"
        );

        let good = embedded::BOARDS
            .iter()
            .find(|(n, _)| *n == "rpi4")
            .unwrap()
            .1;
        let cases = [
            (
                good.replace("budget_mb = 1024", "budget_mb = 4096"),
                "within the board",
            ),
            (
                good.replace("\"q8_0\", \"q5_1\"", "\"q3\""),
                "unknown whisper variant",
            ),
            (
                good.replace("context = 2048", "context = 16"),
                "under the minimum",
            ),
            (
                good.replace("cores = 4", "cores = 4\nturbo = true"),
                "unknown field",
            ),
            (good.replace("[threads]", "[threads]\nllm = 0"), "duplicate"),
            (
                good.replace("context = 2048", "context = 2048\nkv_cache = \"q4\""),
                "not one of f16, f32, q8",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", Board::parse("test.toml", &text).unwrap_err());
            assert!(err.contains(want) && err.contains("test.toml"), "{err}");
        }
    }

    #[test]
    fn a_profile_file_is_read_and_must_match_this_build() {
        let dir = std::env::temp_dir().join(format!("edgevox-board-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let here = if cfg!(target_arch = "aarch64") {
            "rpi4"
        } else {
            "x86_64"
        };
        let other = if cfg!(target_arch = "aarch64") {
            "x86_64"
        } else {
            "rpi4"
        };
        for name in [here, other] {
            let text = embedded::BOARDS.iter().find(|(n, _)| *n == name).unwrap().1;
            std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
        }
        let path = |n: &str| dir.join(format!("{n}.toml")).display().to_string();
        assert_eq!(Board::resolve(&path(here)).unwrap().name, here);
        let err = Board::resolve(&path(other)).unwrap_err().to_string();
        assert!(err.contains("but this edgevox was built for"), "{err}");
        let err = format!(
            "{:#}",
            Board::resolve("/nonexistent/board.toml").unwrap_err()
        );
        assert!(
            err.contains("/nonexistent/board.toml: cannot read"),
            "{err}"
        );
        assert_eq!(Board::resolve(here).unwrap().name, here);
        std::fs::remove_dir_all(&dir).ok();
    }
}
