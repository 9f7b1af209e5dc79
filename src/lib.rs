//! edgevox: an offline voice assistant for small ARM boards.
//!
//! One module per pipeline stage, in the order an utterance travels:
//! `audio` → `vad` → `asr` → [`llm`] → `tts`, joined by `pipeline`, sized by `board`.
//! Implemented so far: hearing ([`audio`], [`vad`], [`asr`], joined by [`listen`]), thinking
//! ([`llm`]) and the speaking stage's text side and file output ([`tts`]); the loop and the
//! boards land with their issues.

pub mod artefact;
pub mod asr;
pub mod audio;
pub mod board;
pub mod cache;
pub mod listen;
pub mod llm;
pub mod metrics;
pub mod pipeline;
pub mod ptt;
pub mod quant;
pub mod simd;
pub mod skills;
pub mod text;
pub mod tts;
pub mod vad;
pub mod wake;
