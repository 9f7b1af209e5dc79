//! `edgevox run --input question.wav --output reply.wav`: the whole assistant, replayed.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use edgevox::llm::{Chat, ChatOptions, DEFAULT_SYSTEM_PROMPT, SamplingParams};
use edgevox::pipeline;
use edgevox::tts::{SpeechSink, TextSink, WavSink, espeak::Espeak};

use super::LlmArgs;
use super::hear::{AsrArgs, VadArgs};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The recorded conversation to answer (WAV). Live microphone/speaker mode comes next.
    #[arg(long)]
    input: PathBuf,
    /// Where the spoken replies go (WAV); printed as text when absent.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Sampling seed (greedy by default, so replies replay exactly either way).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 96)]
    max_tokens: usize,
    /// espeak-ng voice.
    #[arg(long, default_value_t = Espeak::default().voice)]
    voice: String,
    #[command(flatten)]
    llm: LlmArgs,
    #[command(flatten)]
    asr: AsrArgs,
    #[command(flatten)]
    vad: VadArgs,
}

pub fn run(args: RunArgs) -> Result<()> {
    let sink: Box<dyn SpeechSink> = match &args.output {
        Some(p) => Box::new(WavSink::create(
            p,
            Box::new(Espeak {
                voice: args.voice.clone(),
                ..Default::default()
            }),
        )?),
        None => Box::new(TextSink::new(std::io::stderr())),
    };
    let mut whisper = args.asr.load()?;
    let model = args.llm.load()?;
    let sampling = if args.temperature > 0.0 {
        SamplingParams {
            temperature: args.temperature,
            seed: args.seed,
            ..SamplingParams::greedy()
        }
    } else {
        SamplingParams::greedy()
    };
    let mut chat = Chat::new(
        model,
        ChatOptions {
            system_prompt: DEFAULT_SYSTEM_PROMPT.to_string(),
            sampling,
            max_new_tokens: args.max_tokens,
            ..Default::default()
        },
    )?;
    let listener = pipeline::file_listener(&args.input, args.vad.detector()?, args.vad.endpoint())?;
    let reports = pipeline::converse(
        listener,
        &args.input,
        &mut whisper,
        &args.asr.options(),
        &mut chat,
        sink,
        |turn| println!("{}", serde_json::to_string(turn).unwrap_or_default()),
    )?;
    if reports.is_empty() {
        log::warn!("{}: no speech heard", args.input.display());
    }
    Ok(())
}
