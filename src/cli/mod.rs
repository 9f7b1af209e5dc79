//! Subcommands, one module each.

mod bench;
mod chat;
mod enroll;
pub(crate) mod hear;
pub(crate) mod plan;
mod run;
mod say;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use edgevox::llm::{LlmModel, LoadOptions};

#[derive(Parser, Debug)]
#[command(
    name = "edgevox",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("EDGEVOX_BUILD_INFO"), ")"),
    about = "Offline voice assistant for small ARM boards",
    after_help = edgevox::config::PRECEDENCE
)]
pub struct Cli {
    /// More logging (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    pub fn log_level(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Talk to the LLM in text: interactive, or one shot with --prompt.
    Chat(chat::ChatArgs),
    /// List audio input devices.
    Devices(hear::DevicesArgs),
    /// Transcribe a WAV file, utterance by utterance (or in one pass with --no-vad).
    Transcribe(hear::TranscribeArgs),
    /// Transcribe live from an input device, printing each utterance as it ends.
    Listen(hear::ListenArgs),
    /// The whole assistant on a recorded conversation: replies spoken into a WAV, one JSON
    /// timeline per turn.
    #[command(after_help = edgevox::config::PRECEDENCE)]
    Run(Box<run::RunArgs>),
    /// Speak text with espeak-ng into a WAV file (or print its speakable chunks).
    Say(say::SayArgs),
    /// The memory plan of a board profile (`--measure`: next to what this machine measures).
    Plan(plan::PlanArgs),
    /// Your own wake phrase: a few takes of it (WAVs or the microphone) become templates for
    /// `run --wake custom:NAME`; no training.
    Enroll(enroll::EnrollArgs),
    /// Measure a stage and print JSON.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Chat(args) => chat::run(args),
        Command::Devices(args) => hear::devices(args),
        Command::Transcribe(args) => hear::transcribe(args),
        Command::Listen(args) => hear::listen(args),
        Command::Run(args) => run::run(*args),
        Command::Say(args) => say::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Enroll(args) => enroll::run(args),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// Where the exported LLM lives and how to load it; shared by the subcommands that use it.
#[derive(Args, Debug, Clone)]
pub struct LlmArgs {
    /// Directory with model.onnx, tokenizer.json and llm.json [default: the model cache's
    /// smollm2/q4_1; with `run --board`, the profile's plan].
    #[arg(long, env = "EDGEVOX_LLM")]
    pub model_dir: Option<PathBuf>,
    /// Threads for the LLM's matrix products [default: 1; with `run --board`, the profile's].
    #[arg(long)]
    pub threads: Option<usize>,
    /// How the KV cache stores keys and values: f16 (half the memory, what llama.cpp keeps),
    /// f32, or q8 (8-bit blocks: 53% of f16, the longest contexts on the smallest boards)
    /// [default: f16; with `run --board`, the profile's].
    #[arg(long = "kv-cache", value_parser = parse_kv_type)]
    pub kv_type: Option<edgevox::llm::KvType>,
    /// Decode one token per step: no prompt-lookup speculation (which drafts up to 4 tokens
    /// from the conversation and verifies them in one step: greedy replies are the same either
    /// way; sampled ones follow the same distribution).
    #[arg(long)]
    pub no_speculate: bool,
}

fn parse_kv_type(s: &str) -> Result<edgevox::llm::KvType> {
    edgevox::llm::KvType::from_name(s)
}

impl LlmArgs {
    /// Most tokens drafted per step (0 with `--no-speculate`).
    pub fn draft_tokens(&self) -> usize {
        if self.no_speculate {
            0
        } else {
            edgevox::llm::chat::DEFAULT_DRAFT
        }
    }

    /// The export's directory: the flag's, else the default variant's in the cache.
    pub fn dir(&self) -> PathBuf {
        self.model_dir.clone().unwrap_or_else(default_llm_dir)
    }

    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or(edgevox::config::defaults::LLM_THREADS)
    }

    pub fn load(&self) -> Result<std::sync::Arc<LlmModel>> {
        anyhow::ensure!(self.threads() >= 1, "--threads must be at least 1");
        LlmModel::load(
            &self.dir(),
            &LoadOptions {
                threads: self.threads(),
                verify_checksums: true,
                kv_type: self.kv_type.unwrap_or_default(),
            },
        )
    }
}

/// The default LLM export: `smollm2/q4_1` in the model cache.
pub fn default_llm_dir() -> PathBuf {
    cache().llm(edgevox::cache::DEFAULT_LLM)
}

/// The model cache: `$EDGEVOX_CACHE`, or `models/cache` under the working directory.
pub fn cache() -> edgevox::cache::Cache {
    edgevox::cache::Cache::from_env()
}
