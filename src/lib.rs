//! edgevox: an offline voice assistant for small ARM boards.
//!
//! One module per pipeline stage, in the order an utterance travels:
//! `audio` → `vad` → `asr` → [`llm`] → `tts`, joined by `pipeline`, sized by `board`.
//! This crate currently implements the thinking stage ([`llm`]); the other stages land with
//! their issues.

pub mod artefact;
pub mod llm;
pub mod metrics;
