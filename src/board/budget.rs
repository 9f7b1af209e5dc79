//! Memory planning: before anything is loaded, what the assistant will hold resident on a
//! board — model files, Whisper's state, the LLM's weights as tract lays them out, its KV
//! cache at the configured context, activations, audio queues — at load time and while
//! answering, against the board's budget. A plan that does not fit falls back to the board's
//! smaller variants (then shorter contexts) when the profile allows it, or is refused with the
//! numbers.
//!
//! File sizes come from the converters' records (`whisper.json`, `llm.json`), so no model is
//! opened. The per-stage coefficients were measured on x86_64 with `edgevox plan --measure`
//! (README, "Budgets"); `tests/board.rs` checks the plan against measured RSS.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Board, MIN_CONTEXT};
use crate::asr::WhisperMeta;
use crate::llm::LlmMeta;

const MIB: u64 = 1024 * 1024;

/// The process before any model: code, libraries, allocator arenas, thread stacks.
const RUNTIME: u64 = 12 * MIB;
/// Silero VAD on tract: the model and tract's plan, per byte of the ONNX file.
const VAD_PER_FILE_BYTE: f64 = 6.6;
/// whisper.cpp's compute buffers as far as the fitted encoder window touches them, for
/// Whisper base.
const WHISPER_COMPUTE: u64 = 42 * MIB;
/// The LLM's weights resident after tract has loaded and optimized the graph, per byte of
/// the ONNX file: twice the file, because the 49152 x 576 token embedding is held as f32
/// (113 MB) while the file has it at 4 bits.
const LLM_RESIDENT_PER_FILE_BYTE: f64 = 2.0;
/// `weights.bin` (the q4_1 export: the GGUF's blocks, memory-mapped and read in place by
/// edgevox's kernels), per byte of the file: held once, at load as while answering.
const LLM_MAPPED_PER_FILE_BYTE: f64 = 1.0;
/// Extra at load time (the parsed ONNX protobuf and tract's copies while it optimizes), per
/// byte of the ONNX file; released once the plan is built.
const LLM_LOAD_EXTRA_PER_FILE_BYTE: f64 = 0.42;
/// The tokenizer in memory, per byte of `tokenizer.json`.
const TOKENIZER_PER_FILE_BYTE: f64 = 6.0;
/// The LLM besides its weights, tokenizer and cache: tract's plan (RoPE tables, norms,
/// scratch) and the per-step buffers, after the load-time heap is trimmed (measured 8 MiB).
const LLM_RUNTIME: u64 = 10 * MIB;
/// Held only while loading whatever the file sizes: the tokenizer's JSON being parsed and
/// tract's optimizer (measured: 21 MiB above the loaded q4_1 model's resident size).
const LLM_LOAD_FIXED: u64 = 24 * MIB;
/// The wake word: openWakeWord's mel and embedding networks and a head on tract, their plans
/// and tract's code they page in (measured 15 MB resident after loading the first head on
/// x86; a further head adds under 1 MB).
const WAKE_RESIDENT: u64 = 16 * MIB;

/// What the planner picked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub whisper: String,
    pub llm: String,
    pub context: usize,
    /// How the KV cache stores keys and values.
    pub kv: crate::llm::KvType,
    /// A wake word listened for.
    pub wake: bool,
}

/// One line of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub stage: &'static str,
    pub what: String,
    pub bytes: u64,
    /// Held only while loading (not part of the steady state).
    pub load_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub board: String,
    pub budget_bytes: u64,
    pub choice: Choice,
    pub items: Vec<Item>,
    /// Resident while answering.
    pub steady_bytes: u64,
    /// The larger of loading and answering.
    pub peak_bytes: u64,
    pub fits: bool,
    /// The board's first choice, when the planner had to fall back from it.
    pub downgraded_from: Option<Choice>,
}

/// One exported LLM variant's file sizes.
#[derive(Debug, Clone)]
pub struct LlmSizes {
    pub variant: String,
    pub onnx: u64,
    /// `weights.bin`, 0 where the variant has its weights inside `model.onnx`.
    pub mapped: u64,
    pub tokenizer: u64,
    pub meta: LlmMeta,
}

/// File sizes the plan needs, read from the converters' records.
#[derive(Debug, Clone)]
pub struct ModelSizes {
    pub whisper: WhisperMeta,
    /// Per LLM variant: its name, the sizes of its files and the model's shape.
    pub llm: Vec<LlmSizes>,
    pub vad_bytes: u64,
}

impl ModelSizes {
    /// Reads `whisper/whisper.json`, `smollm2/*/llm.json` in `cache` and the VAD file's size.
    pub fn read(cache: &crate::cache::Cache, vad: &Path) -> Result<ModelSizes> {
        let wpath = cache.whisper().join("whisper.json");
        let whisper: WhisperMeta = serde_json::from_str(
            &std::fs::read_to_string(&wpath)
                .with_context(|| format!("{} is missing (run `make models`)", wpath.display()))?,
        )
        .with_context(|| format!("{}: not a whisper.json", wpath.display()))?;
        let mut llm = Vec::new();
        let dir = cache.llms();
        for entry in std::fs::read_dir(&dir)
            .with_context(|| format!("{} is missing (run `make models`)", dir.display()))?
        {
            let path = entry?.path().join("llm.json");
            if !path.exists() {
                continue;
            }
            let meta = LlmMeta::read(&path)?;
            llm.push(LlmSizes {
                variant: meta.variant.clone(),
                onnx: meta.recorded("model.onnx")?.size,
                mapped: meta.files.get("weights.bin").map_or(0, |r| r.size),
                tokenizer: meta.recorded("tokenizer.json")?.size,
                meta,
            });
        }
        let vad_bytes = std::fs::metadata(vad).map(|m| m.len()).unwrap_or(0);
        Ok(ModelSizes {
            whisper,
            llm,
            vad_bytes,
        })
    }
}

/// What the plan must keep as given (`None`: the board's preferences, in order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    pub whisper: Option<String>,
    pub llm: Option<String>,
    pub context: Option<usize>,
    /// The KV cache type (`None`: the board's).
    pub kv: Option<crate::llm::KvType>,
    /// A wake word listened for (`None`: as the board's `[audio] wake` says).
    pub wake: Option<bool>,
}

/// Plans `board` with its first choice, falling back (when allowed) to later variants, then
/// to halved contexts, until a plan fits. Returns the first fitting plan, or the smallest one
/// tried with `fits == false`.
pub fn plan(board: &Board, sizes: &ModelSizes) -> Result<Plan> {
    plan_pinned(board, sizes, &Pins::default())
}

/// [`plan`], never falling back on what `pins` fixes (a flag's choice is the user's).
pub fn plan_pinned(board: &Board, sizes: &ModelSizes, pins: &Pins) -> Result<Plan> {
    let wake = pins
        .wake
        .unwrap_or_else(|| board.audio.wake.as_deref().is_some_and(|w| w != "off"));
    let whispers = match &pins.whisper {
        Some(w) => vec![w.clone()],
        None => board.models.whisper.clone(),
    };
    let llms = match &pins.llm {
        Some(l) => vec![l.clone()],
        None => board.models.llm.clone(),
    };
    let first = Choice {
        whisper: whispers[0].clone(),
        llm: llms[0].clone(),
        context: pins.context.unwrap_or(board.models.context),
        kv: pins.kv.unwrap_or(board.models.kv_type()),
        wake,
    };
    let mut candidates = vec![first.clone()];
    if board.models.downgrade {
        let mut context = first.context;
        loop {
            for w in &whispers {
                for l in &llms {
                    let c = Choice {
                        whisper: w.clone(),
                        llm: l.clone(),
                        context,
                        kv: first.kv,
                        wake,
                    };
                    if !candidates.contains(&c) {
                        candidates.push(c);
                    }
                }
            }
            if pins.context.is_some() || context / 2 < MIN_CONTEXT {
                break;
            }
            context /= 2;
        }
    }
    let mut smallest: Option<Plan> = None;
    for c in candidates {
        let mut p = plan_choice(board, sizes, &c)?;
        if c != first {
            p.downgraded_from = Some(first.clone());
        }
        if p.fits {
            return Ok(p);
        }
        if smallest
            .as_ref()
            .is_none_or(|s| p.peak_bytes < s.peak_bytes)
        {
            smallest = Some(p);
        }
    }
    Ok(smallest.expect("at least one candidate"))
}

/// Plans one choice of models and context.
pub fn plan_choice(board: &Board, sizes: &ModelSizes, c: &Choice) -> Result<Plan> {
    let wfile = sizes.whisper.files.get(&c.whisper).with_context(|| {
        format!(
            "board {}: whisper variant {:?} was not converted (have {})",
            board.name,
            c.whisper,
            sizes
                .whisper
                .files
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let Some(l) = sizes.llm.iter().find(|l| l.variant == c.llm) else {
        bail!(
            "board {}: LLM variant {:?} was not exported (have {})",
            board.name,
            c.llm,
            sizes
                .llm
                .iter()
                .map(|l| l.variant.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let hp = &sizes.whisper.hparams;
    let h = |k: &str| hp[k].as_u64().unwrap_or(0);
    // whisper.cpp's f16 KV caches: self-attention over the text context, cross-attention over
    // the audio context.
    let kv_self = 2 * h("n_text_layer") * h("n_text_ctx") * h("n_text_state") * 2;
    let kv_cross = 2 * h("n_text_layer") * h("n_audio_ctx") * h("n_text_state") * 2;
    let cfg = &l.meta.config;
    // The LLM's KV cache: keys and values per layer, per KV head, per token in the choice's
    // type, written in place into buffers of the context's size (pages are resident once
    // written: a full context is the bound).
    let kv_per_token = 2 * cfg.n_layers * cfg.n_kv_heads * c.kv.row_bytes(cfg.head_dim);
    // Logits for a prompt chunk (the whole vocabulary per position) and the hidden states.
    let chunk = 128u64;
    let activations = chunk * (cfg.vocab as u64 + 4 * cfg.ffn as u64) * 4;
    // Capture ring (2 s of 48 kHz stereo f32), playback ring (2 s at 48 kHz), a 20 s
    // utterance at 16 kHz, and the channels between the threads.
    let audio = 2 * 48_000 * 2 * 4 + 2 * 48_000 * 4 + 20 * 16_000 * 4 + 2 * MIB;
    let item = |stage, what: String, bytes: u64, load_only| Item {
        stage,
        what,
        bytes,
        load_only,
    };
    let mut items = vec![
        item("runtime", "code, libraries, heap".into(), RUNTIME, false),
        item(
            "vad",
            "Silero VAD on tract".into(),
            (sizes.vad_bytes as f64 * VAD_PER_FILE_BYTE) as u64,
            false,
        ),
        item(
            "asr",
            format!("Whisper {} weights ({})", c.whisper, wfile.file),
            wfile.recorded.size,
            false,
        ),
        item(
            "asr",
            "whisper.cpp KV caches (self + cross, f16)".into(),
            kv_self + kv_cross,
            false,
        ),
        item(
            "asr",
            "whisper.cpp compute buffers (fitted window)".into(),
            WHISPER_COMPUTE,
            false,
        ),
        item(
            "llm",
            format!("SmolLM2 {} weights as tract holds them", c.llm),
            (l.onnx as f64 * LLM_RESIDENT_PER_FILE_BYTE) as u64,
            false,
        ),
        item(
            "llm",
            format!("SmolLM2 {} blocks mapped from weights.bin", c.llm),
            (l.mapped as f64 * LLM_MAPPED_PER_FILE_BYTE) as u64,
            false,
        ),
        item(
            "llm",
            "tract's plan and per-step buffers".into(),
            LLM_RUNTIME,
            false,
        ),
        item(
            "llm",
            "tokenizer".into(),
            (l.tokenizer as f64 * TOKENIZER_PER_FILE_BYTE) as u64,
            false,
        ),
        item(
            "llm",
            format!("KV cache, {} tokens ({}, in place)", c.context, c.kv.name()),
            (kv_per_token * c.context) as u64,
            false,
        ),
        item(
            "llm",
            "logits and activations of a 128-token prompt chunk".into(),
            activations,
            false,
        ),
        item(
            "llm",
            "loading: ONNX protobuf and tract's optimizer copies".into(),
            (l.onnx as f64 * LLM_LOAD_EXTRA_PER_FILE_BYTE) as u64 + LLM_LOAD_FIXED,
            true,
        ),
        item(
            "audio",
            "capture and playback rings, utterance".into(),
            audio,
            false,
        ),
    ];
    if c.wake {
        items.push(item(
            "wake",
            "wake word: openWakeWord mel, embedding and head on tract".into(),
            WAKE_RESIDENT,
            false,
        ));
    }
    let steady: u64 = items.iter().filter(|i| !i.load_only).map(|i| i.bytes).sum();
    // Loading: everything but the KV cache and activations is resident, plus the LLM's load
    // extra (the LLM is loaded last).
    let load: u64 = items
        .iter()
        .filter(|i| !i.what.starts_with("KV cache") && !i.what.starts_with("logits"))
        .map(|i| i.bytes)
        .sum();
    let peak = steady.max(load);
    Ok(Plan {
        board: board.name.clone(),
        budget_bytes: board.budget_bytes(),
        choice: c.clone(),
        items,
        steady_bytes: steady,
        peak_bytes: peak,
        fits: peak <= board.budget_bytes(),
        downgraded_from: None,
    })
}

impl Plan {
    /// The plan as a table, in MiB.
    pub fn table(&self) -> String {
        let mb = |b: u64| b as f64 / MIB as f64;
        let mut s = format!(
            "board {}: whisper {}, llm {}, context {}\n",
            self.board, self.choice.whisper, self.choice.llm, self.choice.context
        );
        if let Some(d) = &self.downgraded_from {
            s += &format!(
                "  (downgraded from whisper {}, llm {}, context {} to fit)\n",
                d.whisper, d.llm, d.context
            );
        }
        s += &format!("  {:<8} {:<56} {:>9}\n", "stage", "what", "MiB");
        for i in &self.items {
            let what = if i.load_only {
                format!("{} [load only]", i.what)
            } else {
                i.what.clone()
            };
            s += &format!("  {:<8} {:<56} {:>9.1}\n", i.stage, what, mb(i.bytes));
        }
        s += &format!(
            "  {:<65} {:>9.1}\n",
            "answering (steady)",
            mb(self.steady_bytes)
        );
        s += &format!("  {:<65} {:>9.1}\n", "peak", mb(self.peak_bytes));
        s += &format!(
            "  {:<65} {:>9.1}  {}\n",
            "budget",
            mb(self.budget_bytes),
            if self.fits { "fits" } else { "DOES NOT FIT" }
        );
        s
    }

    /// Refuses a plan that does not fit, with the numbers.
    pub fn ensure_fits(&self) -> Result<()> {
        if !self.fits {
            bail!(
                "board {}: the assistant needs {:.0} MiB at its peak (whisper {}, llm {}, \
                 context {}) but the budget is {:.0} MiB{}; `edgevox plan --board {}` shows \
                 the table",
                self.board,
                self.peak_bytes as f64 / MIB as f64,
                self.choice.whisper,
                self.choice.llm,
                self.choice.context,
                self.budget_bytes as f64 / MIB as f64,
                if self.downgraded_from.is_some() {
                    ", even with the board's smallest variants and context"
                } else {
                    ""
                },
                self.board
            );
        }
        Ok(())
    }
}
