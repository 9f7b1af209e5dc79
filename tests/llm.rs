//! The thinking stage with the real SmolLM2 weights (`make models` exports them; `make refs`
//! writes the ONNX Runtime and llama.cpp references these tests compare against).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use edgevox::llm::chat::DEFAULT_DRAFT;
use edgevox::llm::{
    Chat, ChatOptions, KvType, LlmModel, LoadOptions, SamplingParams, StopReason, prefill,
    sampler::argmax,
};
use serde::Deserialize;

mod common;
use common::{assert_mentions, cache};

/// The default export (q4_1: the GGUF's own blocks through edgevox's kernels).
fn q4_1() -> Arc<LlmModel> {
    static MODEL: OnceLock<Arc<LlmModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            LlmModel::load(&cache().llm("q4_1"), &LoadOptions::default())
                .expect("run `make models` first")
        })
        .clone()
}

/// The Q4_0 re-quantized export through tract's MatMulNBits (ONNX Runtime runs the same
/// weights written in standard ops, `smollm2/q4-onnx`).
fn q4_0() -> Arc<LlmModel> {
    q4_0_with(KvType::F16)
}

fn q4_0_with(kv_type: KvType) -> Arc<LlmModel> {
    LlmModel::load(
        &cache().llm("q4"),
        &LoadOptions {
            kv_type,
            ..Default::default()
        },
    )
    .expect("run `make models` first")
}

fn greedy_chat(context: usize) -> Chat {
    let opts = ChatOptions {
        sampling: SamplingParams::greedy(),
        context,
        ..Default::default()
    };
    Chat::new(q4_1(), opts).unwrap()
}

#[test]
fn capital_of_france_is_paris() {
    let mut chat = greedy_chat(2048);
    let mut streamed = String::new();
    let reply = chat
        .ask("What is the capital of France?", |p| streamed.push_str(p))
        .unwrap();
    assert_mentions("reply", &reply.text, "paris");
    assert_eq!(
        streamed.trim(),
        reply.text,
        "the streamed pieces make up the reply"
    );
    assert_eq!(reply.stop, StopReason::EndOfTurn);
}

#[test]
fn twenty_turns_past_the_context_keep_answering() {
    let mut chat = greedy_chat(320);
    let questions = [
        "What is the capital of France?",
        "How many legs does a spider have?",
        "What is the capital of Italy?",
        "What planet do we live on?",
    ];
    let mut dropped = 0;
    for i in 0..20 {
        let reply = chat.ask(questions[i % questions.len()], |_| {}).unwrap();
        assert!(!reply.text.is_empty(), "turn {i} gave an empty reply");
        assert!(
            chat.context_used() <= 320,
            "turn {i}: {} tokens in context",
            chat.context_used()
        );
        dropped += reply.dropped_turns;
    }
    assert!(
        dropped > 0,
        "a 320-token context must have dropped old turns in 20 turns"
    );
}

/// The prompt fed at once, after a cached prefix, in chunks and token by token gives the same
/// logits. On the q4 export (f32 activations) only float rounding separates them. The q4_1
/// export quantizes each activation row to 8 bits: a rounding difference of 1e-6 upstream can
/// move a value across a rounding boundary, and over 30 layers such flips add up to about half
/// a logit (measured 0.49-0.72 here, as far from the f32 export as any of them; a stale or
/// shifted cache moves logits by several). Both must pick the same token.
#[test]
fn prefix_cache_chunks_and_single_steps_agree_with_one_prefill() {
    for (model, tolerance) in [(q4_0(), 2e-3), (q4_1(), 1.0)] {
        prefix_chunks_and_steps(&model, tolerance);
    }
}

fn prefix_chunks_and_steps(model: &LlmModel, tolerance: f32) {
    let variant = &model.meta.variant;
    let a = model
        .encode("<|im_start|>system\nYou are terse.<|im_end|>\n")
        .unwrap();
    let b = model
        .encode("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    let all: Vec<u32> = a.iter().chain(&b).copied().collect();

    let mut whole = model.empty_cache().unwrap();
    let reference = prefill(model, &mut whole, &all, usize::MAX).unwrap();

    let mut prefix = model.empty_cache().unwrap();
    prefill(model, &mut prefix, &a, usize::MAX).unwrap();
    let mut reused = prefix.clone();
    let from_prefix = prefill(model, &mut reused, &b, usize::MAX).unwrap();

    let mut chunked = model.empty_cache().unwrap();
    let from_chunks = prefill(model, &mut chunked, &all, 5).unwrap();

    let mut stepped = model.empty_cache().unwrap();
    let from_steps = prefill(model, &mut stepped, &all, 1).unwrap();

    for (name, got) in [
        ("prefix", &from_prefix),
        ("chunks", &from_chunks),
        ("steps", &from_steps),
    ] {
        let diff = max_abs_diff(&reference, got);
        eprintln!("{variant} {name}: max |Δlogit| = {diff}");
        assert!(diff < tolerance, "{variant} {name}: max |Δlogit| = {diff}");
        assert_eq!(argmax(&reference), argmax(got), "{variant} {name}");
    }
    assert_eq!(reused.len(), all.len());
    assert_eq!(
        prefix.len(),
        a.len(),
        "the prefix cache is not modified by reuse"
    );
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[derive(Deserialize)]
struct OrtRef {
    prompt_ids: Vec<u32>,
    first_logits: Vec<f32>,
    greedy: Vec<u32>,
}

/// tract and edgevox's attention against ONNX Runtime on the same q4 weights (ONNX Runtime
/// has no edgevox ops: it runs the export in standard ops, `--attention onnx`, with an f32
/// cache, so edgevox uses an f32 cache here too).
#[test]
fn tract_matches_onnx_runtime() {
    let path = cache().refs().join("ort_q4.json");
    let r: OrtRef =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("make refs")).unwrap();
    let model = q4_0_with(KvType::F32);
    let mut cache = model.empty_cache().unwrap();
    let mut logits = prefill(&model, &mut cache, &r.prompt_ids, usize::MAX).unwrap();
    let diff = max_abs_diff(&logits, &r.first_logits);
    let range = r.first_logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("tract vs ORT: max |Δlogit| {diff:.2e} over logits up to {range:.1}");
    assert!(diff < 1e-2, "max |Δlogit| = {diff}");
    let mut tokens = Vec::new();
    for _ in 0..r.greedy.len() {
        let t = argmax(&logits).unwrap() as u32;
        tokens.push(t);
        logits = model.forward(&mut cache, &[t]).unwrap();
    }
    assert_eq!(tokens, r.greedy, "greedy tokens differ from ONNX Runtime's");
    assert!(tokens.len() >= 32);
}

#[derive(Deserialize)]
struct LlamaRef {
    source: LlamaSource,
    text: String,
    ids: Vec<u32>,
    top1: Vec<u32>,
    chat_prompt: String,
    chat_prompt_ids: Vec<u32>,
}

/// Teacher-forced pass over the reference text: the share of positions whose top-1 equals
/// llama.cpp's, and for the others how far (in logits) llama.cpp's choice is below ours.
fn teacher_forced_agreement(model: &LlmModel, r: &LlamaRef) -> (f64, Vec<f32>) {
    let mut cache = model.empty_cache().unwrap();
    let (mut same, mut margins) = (0, Vec::new());
    for (i, &t) in r.ids.iter().enumerate() {
        let logits = model.forward(&mut cache, &[t]).unwrap();
        let ours = argmax(&logits).unwrap();
        if ours as u32 == r.top1[i] {
            same += 1;
        } else {
            margins.push(logits[ours] - logits[r.top1[i] as usize]);
        }
    }
    (same as f64 / r.ids.len() as f64, margins)
}

#[derive(Deserialize)]
struct LlamaSource {
    gguf: String,
    gguf_sha256: String,
}

/// llama.cpp's reference, committed (`make refs-llamacpp` writes it), for the GGUF the cache
/// holds: a reference made from another GGUF is refused rather than compared.
fn llama_ref() -> LlamaRef {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/testdata/llamacpp_gettysburg.json");
    let r: LlamaRef = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let gguf = cache().llms().join(&r.source.gguf);
    let fetched = edgevox::artefact::fetched_record(&gguf)
        .unwrap_or_else(|| panic!("{} has no fetch record (make models)", gguf.display()));
    assert_eq!(
        fetched.sha256,
        r.source.gguf_sha256,
        "{} was made from another GGUF than {}: run `make refs-llamacpp`",
        path.display(),
        gguf.display()
    );
    r
}

#[test]
fn tokenizer_matches_llama_cpp() {
    let r = llama_ref();
    let model = q4_1();
    assert_eq!(model.encode(&r.text).unwrap(), r.ids, "plain text");
    assert_eq!(
        model.encode(&r.chat_prompt).unwrap(),
        r.chat_prompt_ids,
        "chat prompt"
    );
    assert_eq!(model.decode(&r.ids), r.text);
}

/// Teacher-forced top-1 agreement with llama.cpp on the GGUF itself: for the GGUF's own
/// blocks through edgevox's kernels (q4_1), the exact (f32) export and the Q4_0 re-quantized one.
#[test]
fn top1_agreement_with_llama_cpp() {
    let r = llama_ref();
    assert!(
        r.ids.len() >= 250,
        "only {} tokens of reference text",
        r.ids.len()
    );
    let f32_model =
        LlmModel::load(&cache().llm("f32"), &LoadOptions::default()).expect("f32 export");
    let (exact, exact_margins) = teacher_forced_agreement(&f32_model, &r);
    drop(f32_model);
    let (q4_0, _) = teacher_forced_agreement(&q4_0(), &r);
    let (q4_1, q4_1_margins) = teacher_forced_agreement(&q4_1(), &r);
    let worst = exact_margins.iter().copied().fold(0f32, f32::max);
    let worst_q4_1 = q4_1_margins.iter().copied().fold(0f32, f32::max);
    eprintln!(
        "teacher-forced top-1 agreement with llama.cpp over {} tokens: q4_1 {:.1}% (largest \
         margin where they differ: {worst_q4_1:.3} logit), f32 {:.1}% (largest margin \
         {worst:.3}), q4_0 {:.1}%",
        r.ids.len(),
        q4_1 * 100.0,
        exact * 100.0,
        q4_0 * 100.0
    );
    // The same blocks and llama.cpp's 8-bit activation rule: what is left is float rounding
    // and the activations' rounding flips it causes (llama.cpp keeps f16 activation scales,
    // edgevox f32), worth up to about half a logit (measured 0.73): only near-ties may differ.
    assert!(
        q4_1 >= 0.93,
        "q4_1 export agrees on only {:.1}%",
        q4_1 * 100.0
    );
    assert!(
        worst_q4_1 < 1.0,
        "q4_1 export differs from llama.cpp by {worst_q4_1} logits somewhere"
    );
    // llama.cpp quantizes activations to 8 bits for its Q4_1 dot products, so it flips close
    // calls: every disagreement of the exact export must be such a near-tie.
    assert!(
        exact >= 0.93,
        "f32 export agrees on only {:.1}%",
        exact * 100.0
    );
    assert!(
        worst < 0.5,
        "f32 export differs from llama.cpp by {worst} logits somewhere"
    );
    // Re-quantizing Q4_1 to symmetric Q4_0 costs this much (48.8% measured); a regression guard.
    assert!(
        q4_0 >= 0.45,
        "q4_0 export agrees on only {:.1}%",
        q4_0 * 100.0
    );
}

/// The 8-bit KV cache (`--kv-cache q8`) on the GGUF's blocks: close to llama.cpp's f16-cache
/// run teacher-forced, and a greedy chat still answers.
#[test]
fn q8_cache_keeps_agreement_and_answers() {
    let r = llama_ref();
    let model = LlmModel::load(
        &cache().llm("q4_1"),
        &LoadOptions {
            kv_type: KvType::Q8,
            ..Default::default()
        },
    )
    .expect("run `make models` first");
    let (agree, margins) = teacher_forced_agreement(&model, &r);
    let worst = margins.iter().copied().fold(0f32, f32::max);
    eprintln!(
        "q4_1 with a q8 KV cache: top-1 agreement with llama.cpp (f16 cache) {:.1}% over {} \
         tokens (largest margin where they differ: {worst:.3} logit)",
        agree * 100.0,
        r.ids.len()
    );
    assert!(
        agree >= Q8_CACHE_AGREEMENT,
        "q8 cache agrees on only {:.1}%",
        agree * 100.0
    );
    let opts = ChatOptions {
        sampling: SamplingParams::greedy(),
        context: 512,
        ..Default::default()
    };
    let mut chat = Chat::new(model, opts).unwrap();
    let reply = chat.ask("What is the capital of France?", |_| {}).unwrap();
    assert_mentions("q8 cache reply", &reply.text, "paris");
}

/// Measured 91.9% (the f16 cache: 94.4%): 8-bit keys, values and queries cost ~8 of the 320
/// positions, all near-ties (largest margin 1.1 logit); the bound leaves room for another CPU's
/// rounding.
const Q8_CACHE_AGREEMENT: f64 = 0.90;

/// A copy of the q4 export's small files, with `model.onnx` as `onnx` gives it.
fn broken_export(name: &str, onnx: Option<&[u8]>, tokenizer: bool) -> PathBuf {
    let src = cache().llm("q4");
    let dir = std::env::temp_dir().join(format!("edgevox-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("llm.json"), dir.join("llm.json")).unwrap();
    if tokenizer {
        std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    }
    match onnx {
        Some(bytes) => std::fs::write(dir.join("model.onnx"), bytes).unwrap(),
        None => {
            std::fs::copy(src.join("model.onnx"), dir.join("model.onnx")).unwrap();
        }
    }
    dir
}

fn load_error(dir: &std::path::Path) -> String {
    format!(
        "{:#}",
        LlmModel::load(dir, &LoadOptions::default()).unwrap_err()
    )
}

#[test]
fn truncated_corrupted_or_missing_files_are_named() {
    let good = std::fs::read(cache().llm("q4").join("model.onnx")).unwrap();

    let dir = broken_export("truncated", Some(&good[..good.len() / 3]), true);
    let err = load_error(&dir);
    assert!(
        err.contains("model.onnx") && err.contains("truncated"),
        "{err}"
    );

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let dir = broken_export("corrupted", Some(&flipped), true);
    let err = load_error(&dir);
    assert!(
        err.contains("model.onnx") && err.contains("corrupted"),
        "{err}"
    );

    let dir = broken_export("no-tokenizer", None, false);
    let err = load_error(&dir);
    assert!(
        err.contains("tokenizer.json") && err.contains("missing"),
        "{err}"
    );

    let err = load_error(&std::env::temp_dir().join("edgevox-no-such-model"));
    assert!(err.contains("llm.json") && err.contains("missing"), "{err}");
}

/// The q4_1 export's memory-mapped blocks are checked (size, then sha256) before any op maps
/// them: a short or damaged `weights.bin` is refused, naming the file.
#[test]
fn a_truncated_or_corrupted_weight_file_is_named() {
    let src = cache().llm("q4_1");
    let good = std::fs::read(src.join("weights.bin")).unwrap();
    let copy = |name: &str, weights: &[u8]| {
        let dir = std::env::temp_dir().join(format!("edgevox-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["llm.json", "tokenizer.json", "model.onnx"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join("weights.bin"), weights).unwrap();
        dir
    };
    let dir = copy("short-weights", &good[..good.len() - 20]);
    let err = load_error(&dir);
    assert!(
        err.contains("weights.bin") && err.contains("truncated"),
        "{err}"
    );
    let mut flipped = good;
    let at = flipped.len() / 3;
    flipped[at] ^= 0x10;
    let dir = copy("flipped-weights", &flipped);
    let err = load_error(&dir);
    assert!(
        err.contains("weights.bin") && err.contains("corrupted"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_and_oversized_prompts_are_refused_and_the_chat_goes_on() {
    let mut chat = greedy_chat(512);
    let err = chat.ask("   ", |_| {}).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    let long = "tell me about the weather ".repeat(200);
    let err = chat.ask(&long, |_| {}).unwrap_err().to_string();
    assert!(err.contains("does not fit the context of 512"), "{err}");
    let reply = chat.ask("What is the capital of France?", |_| {}).unwrap();
    assert_mentions("reply", &reply.text, "paris");
}

#[test]
fn an_interrupted_reply_stops_at_once_and_the_conversation_goes_on() {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    let mut chat = greedy_chat(2048);
    let stop = Cell::new(false);
    let asked_at = Cell::new(None::<Instant>);
    let mut pieces = 0;
    let reply = chat
        .ask_until(
            "Tell me a long story about a dragon and a knight.",
            |_| {
                pieces += 1;
                if pieces == 5 {
                    // The user spoke: stop.
                    stop.set(true);
                    asked_at.set(Some(Instant::now()));
                }
            },
            || stop.get(),
        )
        .unwrap();
    let took = asked_at.get().unwrap().elapsed();
    assert_eq!(reply.stop, StopReason::Interrupted);
    assert!(reply.tokens.len() <= 6, "{} tokens", reply.tokens.len());
    assert!(took < Duration::from_millis(200), "stopped after {took:?}");
    // The cut reply stays in the history and the next question is answered.
    let next = chat.ask("What is the capital of France?", |_| {}).unwrap();
    assert_mentions("reply", &next.text, "paris");
    assert_eq!(chat.history_turns(), 2);

    // Interrupted before the first token (during the prompt): nothing is said or kept, and
    // the conversation is still consistent.
    let reply = chat
        .ask_until("Who wrote Hamlet?", |_| {}, || true)
        .unwrap();
    assert_eq!(reply.stop, StopReason::Interrupted);
    assert!(reply.tokens.is_empty());
    assert_eq!(chat.history_turns(), 2);
    let again = chat.ask("What is the capital of France?", |_| {}).unwrap();
    assert_mentions("reply", &again.text, "paris");
}

/// Prompt-lookup speculation changes the speed, never the reply: greedy decoding (with the
/// default repetition penalty) gives the same tokens with and without it, on 20 single
/// questions, a 6-turn conversation, and a conversation whose small context fills up mid-draft;
/// and the sampling path's verdicts, at top-k 1, give the greedy replies too.
#[test]
fn speculation_gives_the_plain_greedy_replies() {
    const QUESTIONS: [&str; 20] = [
        "What is the capital of France?",
        "What is the capital of Germany?",
        "How many legs does a spider have?",
        "Who wrote the play Hamlet?",
        "What is the largest ocean on Earth?",
        "Set a timer for ten minutes.",
        "Please turn off the lights in the kitchen.",
        "Will it rain in London tomorrow morning?",
        "What colour is the sky on a clear day?",
        "Name three primary colours.",
        "What is water made of?",
        "How many days are in a week?",
        "Translate 'good morning' into French.",
        "What do bees make?",
        "Repeat after me: the quick brown fox jumps over the lazy dog.",
        "What is the boiling point of water in Celsius?",
        "Spell the word 'apple'.",
        "Who painted the Mona Lisa?",
        "What is two plus two?",
        "List the days of the week.",
    ];
    const TURNS: [&str; 6] = [
        "What is the capital of France?",
        "What river flows through it?",
        "Name a famous museum there.",
        "What is the capital of Italy?",
        "Which of the two cities is older?",
        "Thank you. Summarize what we talked about.",
    ];
    let run_with = |sampling: SamplingParams,
                    speculate: usize,
                    context: usize,
                    questions: &[&str],
                    reset: bool| {
        let opts = ChatOptions {
            sampling,
            speculate,
            context,
            max_new_tokens: 48,
            ..Default::default()
        };
        let mut chat = Chat::new(q4_1(), opts).unwrap();
        let (mut replies, mut drafted, mut accepted) = (Vec::new(), 0, 0);
        for q in questions {
            if reset {
                chat.reset();
            }
            let r = chat.ask(q, |_| {}).unwrap();
            drafted += r.drafted;
            accepted += r.accepted;
            replies.push((r.tokens, r.stop));
        }
        (replies, drafted, accepted)
    };
    let run = |speculate: usize, context: usize, questions: &[&str], reset: bool| {
        run_with(
            SamplingParams::default(),
            speculate,
            context,
            questions,
            reset,
        )
    };
    let mut total = (0, 0);
    for (questions, reset, context) in [
        (&QUESTIONS[..], true, 2048),
        (&TURNS[..], false, 2048),
        (&TURNS[..], false, 160),
    ] {
        let (plain, d0, _) = run(0, context, questions, reset);
        assert_eq!(d0, 0, "no drafts with speculation off");
        let (fast, drafted, accepted) = run(DEFAULT_DRAFT, context, questions, reset);
        for (i, (a, b)) in plain.iter().zip(&fast).enumerate() {
            assert_eq!(a, b, "context {context}, question {i} ({:?})", questions[i]);
        }
        if reset {
            // The sampling path's verdicts (accept with p(draft), else draw from the rest):
            // with top-k 1 the distribution is the greedy choice alone, so the reply must be
            // the greedy one, drafts and all.
            let top1 = SamplingParams {
                temperature: 0.7,
                top_k: 1,
                seed: 5,
                ..SamplingParams::default()
            };
            let (sampled, drafted, accepted) =
                run_with(top1, DEFAULT_DRAFT, context, questions, reset);
            assert!(drafted > 0 && accepted > 0, "sampled speculation drafted");
            for (i, (a, b)) in plain.iter().zip(&sampled).enumerate() {
                assert_eq!(a, b, "top-1 sampling, question {i} ({:?})", questions[i]);
            }
        }
        total.0 += drafted;
        total.1 += accepted;
    }
    eprintln!("speculation: {} drafted, {} kept", total.0, total.1);
    assert!(
        total.0 > 0 && total.1 > 0,
        "speculation never drafted or never kept a draft"
    );
}
