//! One configuration for the assistant, resolved in one place by one rule: a setting comes
//! from its command-line flag (or that flag's environment variable) when one is given, else
//! from the board profile (`--board`), else from the built-in default ([`PRECEDENCE`], which
//! `edgevox run --help` prints).
//!
//! The settings a board profile can give are the ones in [`Flags`]. The Whisper variant, the
//! LLM variant and the context are also the memory planner's choice: a flag pins one (the
//! planner may still fall back on the others to fit the budget, never on a pinned one).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::board::Board;
use crate::board::budget::{Pins, Plan};

/// The rule, as `--help` states it.
pub const PRECEDENCE: &str = "Settings: a flag (or its environment variable) wins over the \
board profile (--board NAME or FILE.toml), which wins over the default shown with the flag. \
The Whisper model, the LLM and the context are the memory planner's: a flag pins one, and \
with a profile that allows it the planner falls back on the others to fit the board's budget. \
`run --show-config` prints each setting and where it came from.";

/// The built-in defaults: what a setting is when neither a flag nor a profile gives it.
pub mod defaults {
    /// Whisper variant.
    pub const WHISPER: &str = "q8_0";
    /// whisper.cpp threads.
    pub const ASR_THREADS: usize = 2;
    /// LLM threads.
    pub const LLM_THREADS: usize = 1;
    /// Tokens of context the conversation may use.
    pub const CONTEXT: usize = 2048;
    /// The echo guard's speaker-to-microphone ratio.
    pub const ECHO_RATIO: f32 = 0.6;
    /// No wake word: every utterance is answered.
    pub const WAKE: &str = "off";
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Flag,
    Board,
    Default,
}

/// One resolved setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub from: Source,
}

impl<T> Setting<T> {
    /// The flag's value, else the board's, else the default.
    fn pick(flag: Option<T>, board: Option<T>, default: T) -> Setting<T> {
        match (flag, board) {
            (Some(value), _) => Setting {
                value,
                from: Source::Flag,
            },
            (None, Some(value)) => Setting {
                value,
                from: Source::Board,
            },
            (None, None) => Setting {
                value: default,
                from: Source::Default,
            },
        }
    }
}

/// What the command line gave of the settings a board profile also gives (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub whisper: Option<String>,
    /// The LLM export's directory; its name is the variant.
    pub llm_dir: Option<PathBuf>,
    pub context: Option<usize>,
    /// The KV cache type's name (`f16`, `f32`, `q8`).
    pub kv_cache: Option<String>,
    pub asr_threads: Option<usize>,
    pub llm_threads: Option<usize>,
    pub echo_ratio: Option<f32>,
    pub capture: Option<String>,
    pub playback: Option<String>,
    pub wake: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The profile given with `--board`, if any.
    pub board: Option<String>,
    pub whisper: Setting<String>,
    /// The LLM variant (`q4_1`, ...) and its export's directory.
    pub llm: Setting<String>,
    pub llm_dir: PathBuf,
    pub context: Setting<usize>,
    pub kv_cache: Setting<String>,
    pub asr_threads: Setting<usize>,
    pub llm_threads: Setting<usize>,
    pub echo_ratio: Setting<f32>,
    /// Input and output devices (`None`: the system default).
    pub capture: Setting<Option<String>>,
    pub playback: Setting<Option<String>>,
    pub wake: Setting<String>,
}

impl Config {
    /// Resolves `flags` over `board` (the `--board` profile) over the defaults. The model
    /// choices a board gives are its first preferences until [`Config::settle`] takes the
    /// plan's. `cache` places the LLM variants' directories.
    pub fn resolve(flags: &Flags, board: Option<&Board>, cache: &crate::cache::Cache) -> Config {
        let b = board;
        let flag_llm = flags.llm_dir.as_deref().map(variant_of);
        let llm = Setting::pick(
            flag_llm,
            b.map(|b| b.models.llm[0].clone()),
            crate::cache::DEFAULT_LLM.to_string(),
        );
        let llm_dir = match &flags.llm_dir {
            Some(dir) => dir.clone(),
            None => cache.llm(&llm.value),
        };
        Config {
            board: b.map(|b| b.name.clone()),
            whisper: Setting::pick(
                flags.whisper.clone(),
                b.map(|b| b.models.whisper[0].clone()),
                defaults::WHISPER.to_string(),
            ),
            llm,
            llm_dir,
            context: Setting::pick(
                flags.context,
                b.map(|b| b.models.context),
                defaults::CONTEXT,
            ),
            kv_cache: Setting::pick(
                flags.kv_cache.clone(),
                b.map(|b| b.models.kv_cache.clone()),
                crate::llm::KvType::default().name().to_string(),
            ),
            asr_threads: Setting::pick(
                flags.asr_threads,
                b.map(|b| b.threads.asr),
                defaults::ASR_THREADS,
            ),
            llm_threads: Setting::pick(
                flags.llm_threads,
                b.map(|b| b.threads.llm),
                defaults::LLM_THREADS,
            ),
            echo_ratio: Setting::pick(
                flags.echo_ratio,
                b.map(|b| b.audio.echo_ratio),
                defaults::ECHO_RATIO,
            ),
            capture: Setting::pick(
                flags.capture.clone().map(Some),
                b.and_then(|b| b.audio.capture.clone()).map(Some),
                None,
            ),
            playback: Setting::pick(
                flags.playback.clone().map(Some),
                b.and_then(|b| b.audio.playback.clone()).map(Some),
                None,
            ),
            wake: Setting::pick(
                flags.wake.clone(),
                b.and_then(|b| b.audio.wake.clone()),
                defaults::WAKE.to_string(),
            ),
        }
    }

    /// What the planner must keep: the model choices a flag gave, and the wake word.
    pub fn pins(&self) -> Pins {
        let pinned = |s: &Setting<String>| (s.from == Source::Flag).then(|| s.value.clone());
        Pins {
            whisper: pinned(&self.whisper),
            llm: pinned(&self.llm),
            context: (self.context.from == Source::Flag).then_some(self.context.value),
            kv: Some(self.kv_type()),
            wake: Some(self.wake_on()),
        }
    }

    /// Takes the plan's model choices (a pinned one is the plan's already).
    pub fn settle(&mut self, plan: &Plan, cache: &crate::cache::Cache) {
        if self.whisper.value != plan.choice.whisper {
            self.whisper = Setting {
                value: plan.choice.whisper.clone(),
                from: Source::Board,
            };
        }
        if self.llm.value != plan.choice.llm {
            self.llm = Setting {
                value: plan.choice.llm.clone(),
                from: Source::Board,
            };
            self.llm_dir = cache.llm(&self.llm.value);
        }
        if self.context.value != plan.choice.context {
            self.context = Setting {
                value: plan.choice.context,
                from: Source::Board,
            };
        }
    }

    /// The KV cache type (a flag's and a profile's name were checked when they were read).
    pub fn kv_type(&self) -> crate::llm::KvType {
        crate::llm::KvType::from_name(&self.kv_cache.value).unwrap_or_default()
    }

    /// Listening for a wake word.
    pub fn wake_on(&self) -> bool {
        self.wake.value != "off"
    }

    /// One line per setting: `name = value (from)`, for the log.
    pub fn lines(&self) -> Vec<String> {
        fn line<T: std::fmt::Debug>(name: &str, s: &Setting<T>) -> String {
            format!("{name} = {:?} ({:?})", s.value, s.from).to_lowercase()
        }
        vec![
            line("whisper", &self.whisper),
            line("llm", &self.llm),
            line("context", &self.context),
            line("kv_cache", &self.kv_cache),
            line("asr_threads", &self.asr_threads),
            line("llm_threads", &self.llm_threads),
            line("echo_ratio", &self.echo_ratio),
            line("capture", &self.capture),
            line("playback", &self.playback),
            line("wake", &self.wake),
        ]
    }
}

/// An LLM export directory's variant: its name (`…/smollm2/q4_1` → `q4_1`).
fn variant_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpi4() -> Board {
        Board::named("rpi4").unwrap()
    }

    #[test]
    fn a_flag_beats_the_board_which_beats_the_default() {
        let cache = crate::cache::Cache::for_tests();
        let board = rpi4();
        let none = Config::resolve(&Flags::default(), None, &cache);
        assert_eq!(none.llm_threads.value, defaults::LLM_THREADS);
        assert_eq!(none.llm_threads.from, Source::Default);
        assert_eq!(none.whisper.value, defaults::WHISPER);
        assert_eq!(none.wake.value, "off");
        assert!(!none.wake_on());
        assert_eq!(none.capture.value, None);
        assert_eq!(none.llm_dir, cache.llm(crate::cache::DEFAULT_LLM));

        let from_board = Config::resolve(&Flags::default(), Some(&board), &cache);
        assert_eq!(from_board.board.as_deref(), Some("rpi4"));
        assert_eq!(from_board.llm_threads.value, board.threads.llm);
        assert_eq!(from_board.llm_threads.from, Source::Board);
        assert_eq!(from_board.asr_threads.value, board.threads.asr);
        assert_eq!(from_board.echo_ratio.value, board.audio.echo_ratio);
        assert_eq!(from_board.context.value, board.models.context);
        assert_eq!(from_board.whisper.value, board.models.whisper[0]);
        assert_eq!(from_board.capture.value, board.audio.capture);
        assert_eq!(from_board.capture.from, Source::Board);
        // The board gives no wake word: the default.
        assert_eq!(from_board.wake.from, Source::Default);
        // Nothing pinned: the planner may choose every model.
        let pins = from_board.pins();
        assert_eq!((pins.whisper, pins.llm, pins.context), (None, None, None));
        assert_eq!(pins.wake, Some(false));

        let flags = Flags {
            llm_threads: Some(3),
            echo_ratio: Some(0.9),
            whisper: Some("q5_1".into()),
            context: Some(512),
            capture: Some("hw:1".into()),
            wake: Some("hey_jarvis".into()),
            llm_dir: Some("/opt/models/f32".into()),
            ..Default::default()
        };
        let c = Config::resolve(&flags, Some(&board), &cache);
        assert_eq!(
            c.llm_threads,
            Setting {
                value: 3,
                from: Source::Flag
            }
        );
        assert_eq!(c.asr_threads.from, Source::Board);
        assert_eq!(c.echo_ratio.value, 0.9);
        assert_eq!(c.capture.value.as_deref(), Some("hw:1"));
        assert_eq!(c.playback.from, Source::Board);
        assert_eq!(c.llm.value, "f32");
        assert_eq!(c.llm_dir, PathBuf::from("/opt/models/f32"));
        assert!(c.wake_on());
        // What a flag gave, the planner keeps; the wake word's memory is planned.
        let pins = c.pins();
        assert_eq!(pins.whisper.as_deref(), Some("q5_1"));
        assert_eq!(pins.llm.as_deref(), Some("f32"));
        assert_eq!(pins.context, Some(512));
        assert_eq!(pins.wake, Some(true));
        assert!(c.lines().iter().any(|l| l == "llm_threads = 3 (flag)"));
    }

    #[test]
    fn the_plan_settles_what_no_flag_pinned() {
        let cache = crate::cache::Cache::for_tests();
        let board = rpi4();
        let flags = Flags {
            context: Some(512),
            ..Default::default()
        };
        let mut c = Config::resolve(&flags, Some(&board), &cache);
        let plan = Plan {
            board: "rpi4".into(),
            budget_bytes: 1,
            choice: crate::board::budget::Choice {
                whisper: "q5_1".into(),
                llm: "q4_0".into(),
                context: 512,
                kv: crate::llm::KvType::F16,
                wake: false,
            },
            items: vec![],
            steady_bytes: 1,
            peak_bytes: 1,
            fits: true,
            downgraded_from: None,
        };
        c.settle(&plan, &cache);
        assert_eq!(c.whisper.value, "q5_1");
        assert_eq!(c.whisper.from, Source::Board);
        assert_eq!(c.llm_dir, cache.llm("q4_0"));
        assert_eq!(
            c.context,
            Setting {
                value: 512,
                from: Source::Flag
            }
        );
    }
}
