//! `edgevox bench`: measurements as JSON, medians over repeated runs.

use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use edgevox::llm::{DEFAULT_SYSTEM_PROMPT, LlmModel, LoadOptions, prefill, sampler::argmax};
use edgevox::metrics::{median, ms, peak_rss_bytes};
use serde_json::{Value, json};

use super::LlmArgs;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The LLM: load time, prefill and decode speed, time to first token, peak RSS.
    Llm(LlmBenchArgs),
}

#[derive(Args, Debug)]
pub struct LlmBenchArgs {
    #[command(flatten)]
    llm: LlmArgs,
    /// Thread counts to measure, each with its own load of the model.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    thread_counts: Vec<usize>,
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Tokens generated per decode run.
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Llm(args) => {
            let report = bench_llm(&args)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

const QUESTION: &str = "What is the capital of France?";

fn bench_llm(args: &LlmBenchArgs) -> Result<Value> {
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let mut per_threads = Vec::new();
    let mut model_bytes = 0;
    for &threads in &args.thread_counts {
        let opts = LoadOptions {
            threads,
            verify_checksums: true,
        };
        let model = LlmModel::load(&args.llm.model_dir, &opts)?;
        model_bytes = model.model_bytes;
        per_threads.push(bench_one(&model, args)?);
        drop(model);
    }
    Ok(json!({
        "bench": "llm",
        "model_dir": args.llm.model_dir,
        "model_bytes": model_bytes,
        "runs": args.runs,
        "by_threads": per_threads,
        "peak_rss_bytes": peak_rss_bytes(),
    }))
}

fn bench_one(model: &LlmModel, args: &LlmBenchArgs) -> Result<Value> {
    let chat = &model.meta.chat;
    let system = model.encode(&chat.system_text(DEFAULT_SYSTEM_PROMPT))?;
    let turn = model.encode(&chat.user_turn_text(QUESTION))?;
    let full: Vec<u32> = system.iter().chain(&turn).copied().collect();
    let mut system_cache = model.empty_cache()?;
    prefill(model, &mut system_cache, &system, usize::MAX)?;

    let (mut cold, mut warm, mut prefill_tps, mut decode_tps) = (vec![], vec![], vec![], vec![]);
    for _ in 0..args.runs {
        // Time to first token with no prefix cache: the whole prompt, then one sample.
        let mut cache = model.empty_cache()?;
        let t = Instant::now();
        let logits = prefill(model, &mut cache, &full, usize::MAX)?;
        let _ = argmax(&logits);
        let elapsed = t.elapsed();
        cold.push(ms(elapsed));
        prefill_tps.push(full.len() as f64 / elapsed.as_secs_f64());

        // With the system prompt's cache reused: only the question is fed.
        let mut cache = system_cache.clone();
        let t = Instant::now();
        let mut logits = prefill(model, &mut cache, &turn, usize::MAX)?;
        let mut next = argmax(&logits).unwrap_or(0) as u32;
        warm.push(ms(t.elapsed()));

        // Decode: one token per step, stop tokens ignored so every run has the same length.
        let t = Instant::now();
        for _ in 0..args.decode_tokens {
            logits = model.forward(&mut cache, &[next])?;
            next = argmax(&logits).unwrap_or(0) as u32;
        }
        decode_tps.push(args.decode_tokens as f64 / t.elapsed().as_secs_f64());
    }
    Ok(json!({
        "threads": model.threads,
        "load_ms": ms(model.load_time),
        "prompt_tokens": full.len(),
        "question_tokens": turn.len(),
        "prefill_tokens_per_s": median(&prefill_tps),
        "decode_tokens_per_s": median(&decode_tps),
        "ttft_ms_without_prefix_cache": median(&cold),
        "ttft_ms_with_prefix_cache": median(&warm),
        "peak_rss_bytes_so_far": peak_rss_bytes(),
    }))
}
