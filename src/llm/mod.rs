//! The thinking stage: SmolLM2 (Llama architecture) exported to ONNX by
//! `models/export_llm.py` and run by tract.
//!
//! - [`LlmModel`] is loaded and optimized once and shared behind an `Arc`;
//! - [`KvCache`] is the per-conversation state it extends token by token;
//! - [`Chat`] wraps both in the chat template, keeps a bounded history and caches the system
//!   prompt so that a question's first token comes quickly;
//! - [`Sampler`] picks tokens (greedy, temperature, top-k, top-p, repetition penalty, seed).

pub mod attention;
pub mod chat;
pub mod kv;
pub mod meta;
pub mod model;
pub mod ops;
pub mod sampler;
pub mod speculate;
pub mod text;
pub mod workers;

pub use chat::{Chat, ChatOptions, DEFAULT_SYSTEM_PROMPT, Reply, StopReason, prefill};
pub use kv::{KvCache, KvType};
pub use meta::LlmMeta;
pub use model::{LlmModel, LoadOptions, StepProfile};
pub use sampler::{Sampler, SamplingParams, Verdict};
