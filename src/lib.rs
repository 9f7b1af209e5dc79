//! edgevox: an offline voice assistant for small ARM boards.
//!
//! One module per pipeline stage, in the order an utterance travels: [`audio`] (capture,
//! playback, echo cancelling) → [`wake`] / [`ptt`] → [`vad`] → [`asr`] (joined by [`listen`])
//! → [`skills`] or [`llm`] → [`tts`], conducted by [`pipeline`], sized by [`board`]; [`cache`]
//! is where the models live and [`config`] how the command line and a board profile become
//! one configuration.

pub mod artefact;
pub mod asr;
pub mod audio;
pub mod board;
pub mod cache;
pub mod config;
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
