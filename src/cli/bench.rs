//! `edgevox bench`: measurements as JSON, medians over repeated runs.

use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use edgevox::llm::{
    DEFAULT_SYSTEM_PROMPT, LlmModel, LoadOptions, StepProfile, prefill, sampler::argmax,
};
use edgevox::metrics::{median, ms, peak_rss_bytes, rss_bytes};
use serde_json::{Value, json};

use super::LlmArgs;
use super::hear::{AsrArgs, VadArgs};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The LLM: load time, prefill and decode speed, time to first token, peak RSS.
    Llm(LlmBenchArgs),
    /// Hearing: real-time factor and word error rate per Whisper variant, thread count and
    /// encoder window; VAD cost per second of audio; peak RSS.
    Asr(Box<AsrBenchArgs>),
    /// The whole assistant replayed on the spoken questions: latency from end of speech to
    /// transcript, first token and first audio (medians), peak RSS.
    E2e(Box<E2eBenchArgs>),
    /// edgevox's own inner loops (argmax over the logits, block peak, window energy, PCM
    /// conversion): this build's path (NEON on aarch64) against the portable loops.
    Kernels(KernelBenchArgs),
    /// Fidelity: short factual questions answered greedily (models/testdata/facts.toml), the
    /// share whose reply mentions the answer; `--replies` scores another runtime's replies
    /// (llama.cpp's, from `make bench-facts`) with the same matcher.
    Facts(FactsBenchArgs),
    /// The wake word: CPU milliseconds per second of audio (one thread, as it runs on the
    /// listening thread), memory, and false accepts per hour on real speech, per head.
    Wake(WakeBenchArgs),
}

#[derive(Args, Debug)]
pub struct WakeBenchArgs {
    /// Heads to measure (each loaded on its own); default: the pretrained ones.
    #[arg(long, value_delimiter = ',')]
    heads: Vec<String>,
    /// Speech without the wake phrases (false accepts are counted on it); default: the real
    /// recordings in the model cache's speech directory.
    #[arg(long)]
    clip: Vec<std::path::PathBuf>,
    /// Score at or above which a phrase counts.
    #[arg(long, default_value_t = edgevox::wake::WakeOptions::default().threshold)]
    threshold: f32,
    /// Chunks (80 ms) in a row at or above the threshold before a phrase counts.
    #[arg(long, default_value_t = edgevox::wake::WakeOptions::default().patience)]
    patience: usize,
    /// Timed passes over the first clip (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Args, Debug)]
pub struct FactsBenchArgs {
    #[command(flatten)]
    llm: LlmArgs,
    #[arg(long, default_value = "models/testdata/facts.toml")]
    questions: std::path::PathBuf,
    /// Score these replies (a JSON list of strings, one per question) instead of generating.
    #[arg(long)]
    replies: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct KernelBenchArgs {
    /// Timed batches per kernel and path (the median is reported).
    #[arg(long, default_value_t = 21)]
    runs: usize,
}

#[derive(Args, Debug)]
pub struct E2eBenchArgs {
    #[command(flatten)]
    llm: LlmArgs,
    #[command(flatten)]
    asr: AsrArgs,
    #[command(flatten)]
    vad: VadArgs,
    /// Question clips; default: the synthetic questions of --manifest.
    #[arg(long)]
    clip: Vec<std::path::PathBuf>,
    #[arg(long, default_value = "models/testdata/speech.toml")]
    manifest: std::path::PathBuf,
    /// With --wake: the phrase said (by espeak-ng) before each question, in the same breath;
    /// default: the pretrained head's own phrase ("Hey Jarvis" for hey_jarvis).
    #[arg(long)]
    wake_phrase: Option<String>,
    #[command(flatten)]
    talk: super::run::TalkArgs,
}

/// The phrase a pretrained openWakeWord head listens for.
fn wake_phrase_of(head: &str) -> Option<&'static str> {
    Some(match head {
        "hey_jarvis" => "Hey Jarvis,",
        "alexa" => "Alexa,",
        "hey_mycroft" => "Hey Mycroft,",
        "hey_rhasspy" => "Hey Rhasspy,",
        _ => return None,
    })
}

#[derive(Args, Debug)]
pub struct AsrBenchArgs {
    #[command(flatten)]
    asr: AsrArgs,
    #[command(flatten)]
    vad: VadArgs,
    /// Clips to measure; default: every clip of --manifest.
    #[arg(long)]
    clip: Vec<std::path::PathBuf>,
    /// Clips with reference texts.
    #[arg(long, default_value = "models/testdata/speech.toml")]
    manifest: std::path::PathBuf,
    /// Whisper variants to measure.
    #[arg(long, value_delimiter = ',', default_value = "f16,q8_0,q5_1")]
    variants: Vec<String>,
    /// whisper.cpp thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    thread_counts: Vec<usize>,
    /// Encoder windows to measure (full, fit, fit+S, frames).
    #[arg(long, value_delimiter = ',', default_value = "full,fit")]
    audio_ctxs: Vec<edgevox::asr::AudioCtx>,
    /// Repetitions of each transcription (the median is reported).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Transcribe each clip whole, in one pass, instead of cutting it into utterances (to
    /// compare with runtimes that take whole files).
    #[arg(long)]
    whole: bool,
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
        BenchCommand::E2e(args) => {
            let report = bench_e2e(&args)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        BenchCommand::Asr(args) => {
            let report = bench_asr(&args)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        BenchCommand::Kernels(args) => {
            println!("{}", serde_json::to_string_pretty(&bench_kernels(&args))?);
            Ok(())
        }
        BenchCommand::Facts(args) => {
            println!("{}", serde_json::to_string_pretty(&bench_facts(&args)?)?);
            Ok(())
        }
        BenchCommand::Wake(args) => {
            println!("{}", serde_json::to_string_pretty(&bench_wake(&args)?)?);
            Ok(())
        }
    }
}

fn bench_wake(args: &WakeBenchArgs) -> Result<Value> {
    use edgevox::audio::wav;
    use edgevox::wake::{PRETRAINED, WakeOptions, WakeWord};
    let dir = super::cache().wake();
    let heads: Vec<String> = if args.heads.is_empty() {
        PRETRAINED.iter().map(|h| h.to_string()).collect()
    } else {
        args.heads.clone()
    };
    let audio: Vec<(String, Vec<f32>)> = if args.clip.is_empty() {
        edgevox::asr::corpus::real_speech(&super::cache())?
            .into_iter()
            .map(|r| (r.name, r.samples))
            .collect()
    } else {
        let mut a = Vec::new();
        for c in &args.clip {
            a.push((c.display().to_string(), wav::read_16k_mono(c)?.0));
        }
        a
    };
    anyhow::ensure!(!audio.is_empty(), "no clips to measure");
    let hours: f64 = audio
        .iter()
        .map(|(_, x)| x.len() as f64 / 16_000.0)
        .sum::<f64>()
        / 3600.0;
    let opts = WakeOptions {
        threshold: args.threshold,
        patience: args.patience,
        ..Default::default()
    };
    let mut results = Vec::new();
    for head in &heads {
        let rss0 = rss_bytes();
        let t = Instant::now();
        let mut w = WakeWord::load(&dir, &[head.as_str()], opts)?;
        let load_ms = ms(t.elapsed());
        let resident = rss_bytes().zip(rss0).map(|(a, b)| a.saturating_sub(b));
        let first = &audio[0].1;
        let per_s: Vec<f64> = (0..args.runs.max(1))
            .map(|_| -> Result<f64> {
                w.reset()?;
                let t = Instant::now();
                w.scores(first)?;
                Ok(ms(t.elapsed()) / (first.len() as f64 / 16_000.0))
            })
            .collect::<Result<_>>()?;
        let [mel_ms, embedding_ms, head_ms] = w.step_profile(50)?;
        let mut accepts = Vec::new();
        let mut total = 0;
        for (path, x) in &audio {
            w.reset()?;
            let found = w.push(x)?;
            total += found.len();
            accepts.push(json!({
                "clip": path,
                "seconds": x.len() as f64 / 16_000.0,
                "false_accepts": found.iter().map(|d| json!({"at_s": d.at_s, "score": d.score})).collect::<Vec<_>>(),
            }));
        }
        results.push(json!({
            "head": head,
            "load_ms": load_ms,
            "resident_bytes_after_load": resident,
            "cpu_ms_per_audio_s": median(&per_s),
            "step_ms": {"mel": mel_ms, "embedding": embedding_ms, "head": head_ms},
            "false_accepts": total,
            "false_accepts_per_hour": total as f64 / hours,
            "clips": accepts,
        }));
    }
    Ok(json!({
        "threshold": args.threshold,
        "patience": args.patience,
        "audio_hours": hours,
        "heads": results,
        "peak_rss_bytes": peak_rss_bytes(),
    }))
}

/// Median nanoseconds per call of `f` over `runs` batches of `batch` calls.
fn ns_per_call(runs: usize, batch: usize, mut f: impl FnMut()) -> f64 {
    let times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    median(&times).unwrap_or(0.0)
}

fn bench_kernels(args: &KernelBenchArgs) -> Value {
    use edgevox::audio::aec::AecOptions;
    use edgevox::audio::nlms::Nlms;
    use edgevox::simd::{self, portable};
    use std::hint::black_box;
    // Real sizes: SmolLM2's vocabulary, a 10 ms block at 48 kHz, a Silero/energy window, a
    // second of 22.05 kHz speech from espeak-ng.
    let logits: Vec<f32> = (0..49_152)
        .map(|i| ((i * 7919) % 1000) as f32 * 0.01)
        .collect();
    let block: Vec<f32> = (0..480).map(|i| (i as f32 * 0.05).sin() * 0.4).collect();
    let window: Vec<f32> = (0..512).map(|i| (i as f32 * 0.11).sin() * 0.2).collect();
    let pcm: Vec<i16> = (0..22_050)
        .map(|i| ((i * 31) % 65536 - 32768) as i16)
        .collect();
    let mut out = vec![0.0f32; pcm.len()];
    let r = args.runs;
    let mut rows = Vec::new();
    let mut row = |name: &str, size: usize, (fast, slow): (f64, f64)| {
        rows.push(json!({
            "kernel": name, "size": size, "ns_per_call": fast, "portable_ns_per_call": slow,
            "speedup": slow / fast.max(1e-9),
        }));
    };
    // The slice-in, value-out kernels: this build's path, then the portable one.
    fn both<T>(
        runs: usize,
        batch: usize,
        input: &[f32],
        fast: fn(&[f32]) -> T,
        slow: fn(&[f32]) -> T,
    ) -> (f64, f64) {
        (
            ns_per_call(runs, batch, || {
                black_box(fast(black_box(input)));
            }),
            ns_per_call(runs, batch, || {
                black_box(slow(black_box(input)));
            }),
        )
    }
    row(
        "argmax",
        logits.len(),
        both(r, 20, &logits, simd::argmax, portable::argmax),
    );
    row(
        "peak_abs",
        block.len(),
        both(r, 2000, &block, simd::peak_abs, portable::peak_abs),
    );
    row(
        "sum_squares",
        window.len(),
        both(r, 2000, &window, simd::sum_squares, portable::sum_squares),
    );
    let fast = ns_per_call(r, 50, || simd::i16_to_f32(black_box(&pcm), &mut out));
    let slow = ns_per_call(r, 50, || portable::i16_to_f32(black_box(&pcm), &mut out));
    row("i16_to_f32", pcm.len(), (fast, slow));
    // The echo canceller's per-sample pair, at its default 1,024 taps.
    let taps = AecOptions::default().taps();
    let (a, mut y) = (&window.repeat(2)[..taps], block.repeat(3)[..taps].to_vec());
    let fast = ns_per_call(r, 2000, || {
        black_box(simd::dot(black_box(a), &y));
    });
    let slow = ns_per_call(r, 2000, || {
        black_box(portable::dot(black_box(a), &y));
    });
    row("dot", taps, (fast, slow));
    let fast = ns_per_call(r, 2000, || simd::axpy(&mut y, black_box(1e-6), a));
    let slow = ns_per_call(r, 2000, || portable::axpy(&mut y, black_box(1e-6), a));
    row("axpy", taps, (fast, slow));
    // The whole canceller, learning on every sample (its worst case): one second of audio.
    let mut nlms = Nlms::new(taps, 0.5);
    let far: Vec<f32> = (0..16_000)
        .map(|i| (i as f32 * 0.031).sin() * 0.3)
        .collect();
    let aec_ns = ns_per_call(r, 1, || {
        for (i, &x) in far.iter().enumerate() {
            black_box(nlms.process(x, far[i.saturating_sub(320)] * 0.3, true));
        }
    });
    json!({
        "implementation": simd::implementation(),
        "arch": std::env::consts::ARCH,
        "runs": r,
        "kernels": rows,
        "block_products": bench_block_products(r),
        "attention_softmax": bench_softmax(r),
        "echo_canceller": {
            "taps": taps,
            "ms_per_audio_second": aec_ns / 1e6,
            "real_time_factor": aec_ns / 1e9,
        },
    })
}

/// Attention's softmax over one query's scores at 64, 512 and 1,500 positions, per kernel
/// this CPU has, beside the plain loop with the C library's `expf` it replaced.
fn bench_softmax(runs: usize) -> Vec<Value> {
    use edgevox::quant::{Kernel, softmax};
    use std::hint::black_box;
    let mut rows = Vec::new();
    for n in [64usize, 512, 1500] {
        let scores: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 * 0.02).collect();
        let mut x = scores.clone();
        let batch = 2_000_000 / n;
        let libm = ns_per_call(runs, batch, || {
            x.copy_from_slice(&scores);
            let peak = x.iter().fold(f32::NEG_INFINITY, |m, v| m.max(v * 0.125));
            let mut sum = 0.0;
            for v in x.iter_mut() {
                *v = (*v * 0.125 - peak).exp();
                sum += *v;
            }
            x.iter_mut().for_each(|v| *v /= sum);
            black_box(&x);
        });
        rows.push(json!({"positions": n, "kernel": "libm_expf_loop", "ns_per_call": libm}));
        for kernel in Kernel::all_available() {
            let ns = ns_per_call(runs, batch, || {
                x.copy_from_slice(&scores);
                softmax(kernel, &mut x, 0.125);
                black_box(&x);
            });
            rows.push(json!({"positions": n, "kernel": kernel.name(), "ns_per_call": ns}));
        }
    }
    rows
}

/// The LLM's block products at SmolLM2's sizes, per kernel this CPU has: one pass over the
/// weights for 1 and for 8 activation rows, and the weight bytes streamed per second.
fn bench_block_products(runs: usize) -> Vec<Value> {
    use edgevox::quant::{ActBlock, BlockMatrix, BlockType, Kernel, QK, matmul_rows};
    use std::hint::black_box;
    let mut rows = Vec::new();
    for (name, ty, n, k) in [
        ("ffn_gate_up", BlockType::Q4_1, 3072, 576),
        ("ffn_down", BlockType::Q4_1, 576, 1536),
        ("lm_head", BlockType::Q8_0, 49_152, 576),
    ] {
        let bytes = ty.matrix_bytes(n, k);
        // Small scales, codes from a fixed pattern: the timing does not depend on the values.
        let data: Vec<u8> = (0..bytes)
            .map(|i| {
                if i % ty.block_bytes() < 4 {
                    0x10
                } else {
                    (i * 37 % 251) as u8
                }
            })
            .collect();
        let w = BlockMatrix::new(name, ty, n, k, &data).expect("bench matrix");
        for m in [1, 8] {
            let mut acts = vec![ActBlock::default(); m * k / QK];
            let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            for (row, a) in x.chunks_exact(k).zip(acts.chunks_exact_mut(k / QK)) {
                edgevox::quant::quantize_activations(row, a);
            }
            let mut out = vec![0f32; n * m];
            for kernel in Kernel::all_available() {
                let batch = (20_000_000 / bytes).max(1);
                let ns = ns_per_call(runs, batch, || {
                    matmul_rows(kernel, &w, black_box(&acts), m, 0..n, &mut out);
                    black_box(&out);
                });
                rows.push(json!({
                    "product": name, "type": ty.name(), "rows": n, "cols": k,
                    "activation_rows": m, "kernel": kernel.name(), "ns_per_call": ns,
                    "weight_gb_per_s": bytes as f64 / ns,
                }));
            }
        }
    }
    rows
}

#[derive(serde::Deserialize)]
struct Facts {
    system: String,
    max_tokens: usize,
    question: Vec<Fact>,
}

#[derive(serde::Deserialize)]
struct Fact {
    q: String,
    answers: Vec<String>,
}

fn bench_facts(args: &FactsBenchArgs) -> Result<Value> {
    use anyhow::Context;
    use edgevox::llm::{Chat, ChatOptions, SamplingParams};
    let path = &args.questions;
    let facts: Facts = toml::from_str(
        &std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?,
    )
    .with_context(|| format!("{}: not a facts file", path.display()))?;
    anyhow::ensure!(
        !facts.question.is_empty(),
        "{}: no questions",
        path.display()
    );
    let (source, replies): (String, Vec<String>) = match &args.replies {
        Some(file) => {
            let replies: Vec<String> = serde_json::from_str(
                &std::fs::read_to_string(file)
                    .with_context(|| format!("{}: cannot read", file.display()))?,
            )
            .with_context(|| format!("{}: not a JSON list of replies", file.display()))?;
            anyhow::ensure!(
                replies.len() == facts.question.len(),
                "{}: {} replies for {} questions",
                file.display(),
                replies.len(),
                facts.question.len()
            );
            (file.display().to_string(), replies)
        }
        None => {
            let model = args.llm.load()?;
            let variant = model.meta.variant.clone();
            let opts = ChatOptions {
                system_prompt: facts.system.clone(),
                sampling: SamplingParams::greedy(),
                max_new_tokens: facts.max_tokens,
                ..Default::default()
            };
            let mut replies = Vec::new();
            for f in &facts.question {
                // Each question on its own: no history carried from one to the next.
                let mut chat = Chat::new(model.clone(), opts.clone())?;
                replies.push(chat.ask(&f.q, |_| {})?.text);
            }
            (format!("edgevox {variant}"), replies)
        }
    };
    let mut right = 0;
    let rows: Vec<Value> = facts
        .question
        .iter()
        .zip(&replies)
        .map(|(f, reply)| {
            let ok = f.answers.iter().any(|a| edgevox::text::mentions(reply, a));
            right += usize::from(ok);
            json!({"question": f.q, "reply": reply, "right": ok})
        })
        .collect();
    Ok(json!({
        "bench": "facts",
        "source": source,
        "right": right,
        "questions": rows.len(),
        "score": right as f64 / rows.len() as f64,
        "answers": rows,
    }))
}

const QUESTION: &str = "What is the capital of France?";

fn bench_llm(args: &LlmBenchArgs) -> Result<Value> {
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let mut per_threads = Vec::new();
    let mut model_bytes = 0;
    let mut memory = None;
    for &threads in &args.thread_counts {
        let opts = LoadOptions {
            threads,
            verify_checksums: true,
            kv_type: args.llm.kv_type.unwrap_or_default(),
        };
        let before = rss_bytes().unwrap_or(0);
        let model = LlmModel::load(&args.llm.dir(), &opts)?;
        let loaded = rss_bytes().unwrap_or(0);
        model_bytes = model.model_bytes;
        let mut row = bench_one(&model, args)?;
        if memory.is_none() {
            // The first load only: the model's share of the process, after loading and after
            // every weight has been read (the decode runs above), against its files.
            let used = rss_bytes().unwrap_or(0);
            let per = |b: u64| b.saturating_sub(before) as f64 / model_bytes.max(1) as f64;
            memory = Some(json!({
                "rss_before_load_bytes": before,
                "rss_after_load_bytes": loaded,
                "rss_after_decode_bytes": used,
                "resident_after_load_per_weight_byte": per(loaded),
                "resident_after_decode_per_weight_byte": per(used),
                "peak_during_load_and_decode_per_weight_byte": per(peak_rss_bytes().unwrap_or(0)),
            }));
        }
        row["threads_asked"] = json!(threads);
        per_threads.push(row);
        drop(model);
    }
    Ok(json!({
        "bench": "llm",
        "model_dir": args.llm.dir(),
        "model_bytes": model_bytes,
        "runs": args.runs,
        "by_threads": per_threads,
        "memory": memory,
        "peak_rss_bytes": peak_rss_bytes(),
    }))
}

/// The spoken questions (the question clips of `models/testdata/speech.toml`).
const SPOKEN_QUESTIONS: [&str; 6] = [
    "What is the capital of France?",
    "Set a timer for ten minutes.",
    "How many legs does a spider have?",
    "Please turn off the lights in the kitchen.",
    "Who wrote the play Hamlet?",
    "Will it rain in London tomorrow morning?",
];

/// A scripted conversation: follow-ups that lean on what was said before.
const SCRIPTED_CHAT: [&str; 6] = [
    "What is the capital of France?",
    "What river flows through it?",
    "Name a famous museum there.",
    "What is the capital of Italy?",
    "Which of the two cities is older?",
    "Thank you. Summarize what we talked about.",
];

/// Greedy replies with and without prompt-lookup speculation: the tokens must be the same;
/// returns drafted / accepted counts and the decode speed of each (medians over runs).
fn bench_speculation(model: &std::sync::Arc<LlmModel>, runs: usize) -> Result<Value> {
    use edgevox::llm::{Chat, ChatOptions, SamplingParams};
    let mut out = serde_json::Map::new();
    for (name, questions, reset) in [
        ("spoken_questions", &SPOKEN_QUESTIONS, true),
        ("scripted_chat", &SCRIPTED_CHAT, false),
    ] {
        let mut speeds = [vec![], vec![]];
        let mut replies: [Vec<Vec<u32>>; 2] = [vec![], vec![]];
        let (mut drafted, mut accepted) = (0, 0);
        for _ in 0..runs {
            for (i, k) in [0, edgevox::llm::chat::DEFAULT_DRAFT]
                .into_iter()
                .enumerate()
            {
                let opts = ChatOptions {
                    sampling: SamplingParams::default(),
                    speculate: k,
                    ..Default::default()
                };
                let mut chat = Chat::new(model.clone(), opts)?;
                let (mut tokens, mut time) = (0usize, 0f64);
                replies[i].clear();
                for q in questions.iter() {
                    if reset {
                        chat.reset();
                    }
                    let r = chat.ask(q, |_| {})?;
                    tokens += r.tokens.len().saturating_sub(1);
                    time += r.decode.as_secs_f64();
                    if k > 0 {
                        drafted += r.drafted;
                        accepted += r.accepted;
                    }
                    replies[i].push(r.tokens);
                }
                speeds[i].push(tokens as f64 / time.max(1e-9));
            }
        }
        let (plain, spec) = (
            median(&speeds[0]).unwrap_or(0.0),
            median(&speeds[1]).unwrap_or(0.0),
        );
        out.insert(
            name.to_string(),
            json!({
                "replies": questions.len(),
                "identical_to_plain_greedy": replies[0] == replies[1],
                "drafted": drafted / runs.max(1),
                "accepted": accepted / runs.max(1),
                "plain_decode_tokens_per_s": plain,
                "effective_decode_tokens_per_s": spec,
                "speedup": spec / plain.max(1e-9),
            }),
        );
    }
    Ok(Value::Object(out))
}

fn bench_one(model: &std::sync::Arc<LlmModel>, args: &LlmBenchArgs) -> Result<Value> {
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
    // A step over 1..=8 new positions (what verifying 0..=7 drafts costs), after the prompt,
    // the cache rolled back after each.
    let mut cache = system_cache.clone();
    prefill(model, &mut cache, &turn, usize::MAX)?;
    let base = cache.len();
    let mut step_ms = serde_json::Map::new();
    for rows in 1..=8usize {
        let tokens: Vec<u32> = turn.iter().copied().cycle().take(rows).collect();
        let mut times = Vec::new();
        for _ in 0..args.runs.max(3) * 4 {
            let t = Instant::now();
            model.forward_rows(&mut cache, &tokens, rows)?;
            times.push(ms(t.elapsed()));
            cache.truncate(base)?;
        }
        step_ms.insert(rows.to_string(), json!(median(&times)));
    }
    // Decode speed with 64, 512 and 1500 tokens already in the cache (filled with the prompt
    // repeated; greedy steps after it, timed).
    let mut by_context = serde_json::Map::new();
    let filler: Vec<u32> = full.iter().copied().cycle().take(1500).collect();
    for ctx in [64usize, 512, 1500] {
        if ctx + 32 > model.context_length() {
            continue;
        }
        let mut cache = model.empty_cache()?;
        let mut logits = prefill(model, &mut cache, &filler[..ctx], 128)?;
        let mut tps = Vec::new();
        for _ in 0..args.runs.max(1) {
            let steps = 16;
            let t = Instant::now();
            for _ in 0..steps {
                let next = argmax(&logits).unwrap_or(0) as u32;
                logits = model.forward(&mut cache, &[next])?;
            }
            tps.push(steps as f64 / t.elapsed().as_secs_f64());
            cache.truncate(ctx)?;
        }
        by_context.insert(ctx.to_string(), json!(median(&tps)));
    }
    // Where a decode step's time goes (timed node by node, so a little slower than above).
    let mut profile = StepProfile::default();
    let mut cache = system_cache.clone();
    let mut next = argmax(&prefill(model, &mut cache, &turn, usize::MAX)?).unwrap_or(0) as u32;
    for _ in 0..args.decode_tokens {
        let logits = model.forward_profiled(&mut cache, &[next], &mut profile)?;
        next = argmax(&logits).unwrap_or(0) as u32;
    }
    let total = profile.total().as_secs_f64().max(1e-9);
    let share = |d: std::time::Duration| d.as_secs_f64() / total;
    let steps = args.decode_tokens.max(1);
    let by_op: serde_json::Map<String, Value> = profile
        .by_op
        .iter()
        .map(|(op, (t, n))| {
            (
                op.clone(),
                json!({"share": share(*t), "nodes_per_step": n / steps}),
            )
        })
        .collect();
    Ok(json!({
        "threads": model.threads,
        "load_ms": ms(model.load_time),
        "prompt_tokens": full.len(),
        "question_tokens": turn.len(),
        "prefill_tokens_per_s": median(&prefill_tps),
        "decode_tokens_per_s": median(&decode_tps),
        "ttft_ms_without_prefix_cache": median(&cold),
        "ttft_ms_with_prefix_cache": median(&warm),
        "decode_step_share": {
            "quantized_products": share(profile.products),
            "attention": share(profile.attention),
            "rest": share(profile.rest),
        },
        "decode_step_by_op": by_op,
        "step_ms_by_new_positions": step_ms,
        "decode_tokens_per_s_at_context": by_context,
        "speculation": bench_speculation(model, args.runs.min(3))?,
        "kernel": edgevox::llm::ops::kernel().name(),
        "peak_rss_bytes_so_far": peak_rss_bytes(),
    }))
}

struct BenchClip {
    name: String,
    text: Option<String>,
    audio_s: f64,
    utterances: Vec<Vec<f32>>,
}

fn bench_asr(args: &AsrBenchArgs) -> Result<Value> {
    use edgevox::asr::{self, AsrOptions, Whisper, corpus, wer};
    use edgevox::audio::{MemorySource, wav};
    use edgevox::listen::Listener;

    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let clips = if args.clip.is_empty() {
        corpus::load(&args.manifest, &super::cache())?
    } else {
        let known = corpus::load(&args.manifest, &super::cache()).unwrap_or_default();
        args.clip
            .iter()
            .map(|p| corpus::Clip {
                name: p
                    .file_stem()
                    .map_or("clip".into(), |s| s.to_string_lossy().into()),
                text: known
                    .iter()
                    .find(|c| c.path.file_name() == p.file_name())
                    .and_then(|c| c.text.clone()),
                path: p.clone(),
                synthetic: false,
            })
            .collect()
    };
    // Cut every clip into utterances once, as the assistant would, timing the VAD.
    let (mut vad_audio_s, mut vad_ms, mut detector) = (0.0, 0.0, "");
    let mut prepared = Vec::new();
    for c in &clips {
        let (samples, _) = wav::read_16k_mono(&c.path)?;
        let audio_s = wav::seconds_16k(&samples);
        let mut listener = Listener::new(
            Box::new(MemorySource::new(samples)),
            args.vad.detector()?,
            args.vad.endpoint(),
        );
        detector = listener.detector_name();
        let mut utterances: Vec<Vec<f32>> =
            listener.collect()?.into_iter().map(|u| u.samples).collect();
        if args.whole {
            utterances = vec![wav::read_16k_mono(&c.path)?.0];
        }
        vad_audio_s += audio_s;
        vad_ms += ms(listener.vad_time);
        prepared.push(BenchClip {
            name: c.name.clone(),
            text: c.text.clone(),
            audio_s,
            utterances,
        });
    }

    let mut configs = Vec::new();
    let mut models = Vec::new();
    for variant in &args.variants {
        let path = asr::model_path(&args.asr.whisper_dir, variant, true)?;
        let t = Instant::now();
        let mut whisper = Whisper::load(&path)?;
        let load_ms = ms(t.elapsed());
        models.push(json!({
            "variant": variant,
            "bytes": std::fs::metadata(&path)?.len(),
            "load_ms": load_ms,
        }));
        for &threads in &args.thread_counts {
            for &audio_ctx in &args.audio_ctxs {
                let opts = AsrOptions {
                    threads,
                    audio_ctx,
                    ..args.asr.options()
                };
                let (mut asr_total, mut audio_total, mut errs, mut words) = (0.0, 0.0, 0, 0);
                let mut per_clip = Vec::new();
                for c in &prepared {
                    let mut texts = Vec::new();
                    let mut clip_ms = 0.0;
                    for u in &c.utterances {
                        let mut times = Vec::new();
                        let mut text = String::new();
                        for _ in 0..args.runs {
                            let tr = whisper.transcribe(u, &opts)?;
                            times.push(tr.asr_ms);
                            text = tr.text;
                        }
                        clip_ms += median(&times).unwrap_or(0.0);
                        texts.push(text);
                    }
                    let text = texts.join(" ");
                    let speech_s: f64 = c.utterances.iter().map(|u| wav::seconds_16k(u)).sum();
                    asr_total += clip_ms;
                    audio_total += speech_s;
                    let clip_wer = c.text.as_ref().map(|r| {
                        let (e, n) = wer::errors(r, &text);
                        errs += e;
                        words += n;
                        e as f64 / n.max(1) as f64
                    });
                    per_clip.push(json!({
                        "clip": c.name,
                        "audio_s": c.audio_s,
                        "utterances": c.utterances.len(),
                        "asr_ms": clip_ms,
                        "rtf": clip_ms / 1e3 / speech_s.max(1e-9),
                        "wer": clip_wer,
                        "text": text,
                    }));
                }
                let row = json!({
                    "variant": variant,
                    "threads": threads,
                    "audio_ctx": audio_ctx,
                    "rtf": asr_total / 1e3 / audio_total.max(1e-9),
                    "wer": if words > 0 { Some(errs as f64 / words as f64) } else { None },
                    "words": words,
                    "clips": per_clip,
                });
                log::info!(
                    "bench asr: {variant} {threads} thr {audio_ctx:?}: rtf {:.3} wer {:?}",
                    row["rtf"],
                    row["wer"]
                );
                configs.push(row);
            }
        }
        drop(whisper);
    }
    Ok(json!({
        "bench": "asr",
        "runs": args.runs,
        "whole_clips": args.whole,
        "vad": {
            "detector": detector,
            "ms_per_audio_s": vad_ms / vad_audio_s.max(1e-9),
            "audio_s": vad_audio_s,
        },
        "models": models,
        "configs": configs,
        "peak_rss_bytes": peak_rss_bytes(),
    }))
}

fn bench_e2e(args: &E2eBenchArgs) -> Result<Value> {
    use edgevox::asr::corpus;
    use edgevox::audio::replay::ReplayOptions;
    use edgevox::pipeline::{self, Brain, LoopOptions};

    let clips: Vec<std::path::PathBuf> = if args.clip.is_empty() {
        corpus::load(&args.manifest, &super::cache())?
            .into_iter()
            .filter(|c| c.synthetic)
            .map(|c| c.path)
            .collect()
    } else {
        args.clip.clone()
    };
    anyhow::ensure!(!clips.is_empty(), "no question clips");
    let mut whisper = args.asr.load()?;
    let mut chat = args.talk.chat(&args.llm)?;
    let out_dir = std::env::temp_dir().join(format!("edgevox-bench-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    // With a wake word the assistant starts asleep: each question is said after the phrase, in
    // one breath, as a user would ("Hey Jarvis, what is the capital of France?").
    let wake = args.talk.wake.as_deref().filter(|w| *w != "off");
    let names: Vec<Option<String>> = clips
        .iter()
        .map(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let clips = match wake {
        None => clips,
        Some(head) => {
            use edgevox::audio::{SAMPLE_RATE, resample, wav};
            let phrase = match (&args.wake_phrase, wake_phrase_of(head)) {
                (Some(p), _) => p.clone(),
                (None, Some(p)) => p.to_string(),
                (None, None) => anyhow::bail!(
                    "--wake {head}: say which phrase to put before the questions (--wake-phrase)"
                ),
            };
            let said = args.talk.voice().synthesize(&phrase)?;
            let mut lead = resample::to_16k(&said.samples, said.rate)?;
            lead.resize(lead.len() + SAMPLE_RATE as usize / 5, 0.0);
            let mut woken = Vec::new();
            for (i, clip) in clips.iter().enumerate() {
                let (question, _) = wav::read_16k_mono(clip)?;
                let mut x = vec![0.0; SAMPLE_RATE as usize / 2];
                x.extend_from_slice(&lead);
                x.extend_from_slice(&question);
                let path = out_dir.join(format!("wake{i}.wav"));
                wav::write_mono_i16(&path, &x, SAMPLE_RATE)?;
                woken.push(path);
            }
            woken
        }
    };
    let (mut transcript, mut first_token, mut first_audio, mut done) =
        (vec![], vec![], vec![], vec![]);
    let mut turns = Vec::new();
    for (i, clip) in clips.iter().enumerate() {
        chat.reset();
        // Each question replayed in real time, as a live device would hear it.
        let replay = ReplayOptions {
            record: Some(out_dir.join(format!("reply{i}.wav"))),
            ..Default::default()
        };
        let reports = pipeline::replay(
            clip,
            args.talk.hearing(&args.vad)?,
            &replay,
            Some(args.talk.voice()),
            Brain {
                whisper: &mut whisper,
                asr: args.asr.options(),
                chat: &mut chat,
            },
            &LoopOptions::default(),
            |_| {},
        )?;
        for r in reports {
            transcript.push(r.timeline.transcript_ready_ms);
            first_token.extend(r.timeline.first_token_ms);
            first_audio.extend(r.timeline.first_audio_ms);
            done.push(r.timeline.turn_done_ms);
            turns.push(json!({
                "clip": names[i],
                "wake": r.wake,
                "transcript": r.transcript,
                "reply": r.reply,
                "spoken_s": r.spoken_s,
                "timeline": r.timeline,
            }));
        }
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    Ok(json!({
        "bench": "e2e",
        "questions": clips.len(),
        "answered": turns.len(),
        "wake": wake.unwrap_or("off"),
        "median_ms_after_end_of_speech": {
            "transcript_ready": median(&transcript),
            "first_token": median(&first_token),
            "first_audio": median(&first_audio),
            "turn_done": median(&done),
        },
        "asr": {"model": args.asr.variant(), "threads": args.asr.threads()},
        "llm_threads": args.llm.threads(),
        "turns": turns,
        "peak_rss_bytes": peak_rss_bytes(),
    }))
}
