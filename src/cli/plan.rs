//! `edgevox plan --board NAME [--measure]`: the memory plan of a board profile, and (with
//! `--measure`) the resident memory measured on this machine with that profile's models.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use edgevox::asr::{self, AsrOptions, Whisper};
use edgevox::audio::wav;
use edgevox::board::budget::{self, ModelSizes, Plan};
use edgevox::board::{self, Board};
use edgevox::llm::{Chat, ChatOptions, LlmModel, LoadOptions};
use edgevox::metrics::{peak_rss_bytes, rss_bytes};
use edgevox::vad;
use serde::Serialize;
use serde_json::json;

use super::cache;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Board profile (see boards/); `all` plans every board. Default: the board this binary
    /// was built for.
    #[arg(long)]
    board: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also load the planned models on this machine, answer --input, fill the context, and
    /// report resident memory after each stage next to the plan.
    #[arg(long)]
    measure: bool,
    /// The spoken question --measure answers.
    #[arg(long, default_value_os_t = cache().synthetic("capital.wav"))]
    input: PathBuf,
    /// Silero VAD model.
    #[arg(long, env = "EDGEVOX_VAD", default_value_os_t = cache().vad_model())]
    vad_model: PathBuf,
}

/// Resident memory after one stage of the measurement.
#[derive(Debug, Serialize)]
struct Stage {
    stage: &'static str,
    rss_bytes: u64,
    peak_rss_bytes: u64,
}

/// The plan for `board` from the models in the cache.
pub fn board_plan(board: &Board, vad_model: &std::path::Path) -> Result<Plan> {
    let sizes = ModelSizes::read(&cache(), vad_model)?;
    budget::plan(board, &sizes)
}

pub fn run(args: PlanArgs) -> Result<()> {
    let names: Vec<String> = match args.board.as_deref() {
        Some("all") => board::names().into_iter().map(String::from).collect(),
        Some(b) => vec![b.to_string()],
        None => vec![board::DEFAULT_BOARD.to_string()],
    };
    let mut out = Vec::new();
    for name in names {
        let board = Board::resolve(&name)?;
        let plan = board_plan(&board, &args.vad_model)?;
        let measured = if args.measure {
            Some(measure(&board, &plan, &args)?)
        } else {
            None
        };
        if args.json {
            out.push(json!({"plan": plan, "measured": measured}));
        } else {
            print!("{}", plan.table());
            if let Some(m) = &measured {
                println!("  measured on this machine (MiB: resident / peak):");
                for s in m {
                    println!(
                        "    {:<40} {:>7.1} / {:>7.1}",
                        s.stage,
                        s.rss_bytes as f64 / 1048576.0,
                        s.peak_rss_bytes as f64 / 1048576.0
                    );
                }
            }
            println!();
        }
    }
    if args.json {
        let v = if out.len() == 1 {
            out.pop().unwrap()
        } else {
            json!(out)
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

/// Loads what `plan` chose, stage by stage in the order `edgevox run` does, and records RSS.
fn measure(board: &Board, plan: &Plan, args: &PlanArgs) -> Result<Vec<Stage>> {
    let mut stages = Vec::new();
    let mut note = |stage| {
        stages.push(Stage {
            stage,
            rss_bytes: rss_bytes().unwrap_or(0),
            peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
        })
    };
    note("start");
    let (samples, _) = wav::read_16k_mono(&args.input)?;
    let mut detector = vad::detector(&args.vad_model)?;
    for w in samples.chunks_exact(vad::WINDOW) {
        detector.probability(w)?;
    }
    note("vad loaded, question scored");
    let model = asr::model_path(&cache().whisper(), &plan.choice.whisper, true)?;
    let mut whisper = Whisper::load(&model)?;
    let opts = AsrOptions {
        threads: board.threads.asr,
        ..Default::default()
    };
    let question = whisper.transcribe(&samples, &opts)?.text;
    note("whisper loaded, question transcribed");
    let llm = LlmModel::load(
        &cache().llm(&plan.choice.llm),
        &LoadOptions {
            threads: board.threads.llm,
            verify_checksums: true,
            ..Default::default()
        },
    )?;
    note("llm loaded");
    let mut chat = Chat::new(
        llm,
        ChatOptions {
            context: plan.choice.context,
            max_new_tokens: 32,
            ..Default::default()
        },
    )?;
    chat.ask(&question, |_| {})?;
    note("question answered");
    // Fill the conversation to the context: the KV cache at its largest.
    let filler = "Describe, in detail, the history, geography, food and music of a country \
                  of your choice, then compare it with its neighbours. "
        .repeat(3);
    while chat.context_used() + 160 < plan.choice.context && chat.history_turns() < 64 {
        chat.ask(&filler, |_| {})?;
    }
    note("context filled");
    Ok(stages)
}
