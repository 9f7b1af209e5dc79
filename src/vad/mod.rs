//! End of utterance: a speech detector scores 32 ms windows and an [`Endpointer`] turns the
//! scores into utterances.
//!
//! Two detectors: Silero VAD ([`silero::Silero`], a small ONNX network run by tract) and an
//! energy detector ([`energy::Energy`]) used when the Silero model is absent.

pub mod endpoint;
pub mod energy;
pub mod silero;

use std::path::Path;

use anyhow::Result;
use log::warn;

pub use endpoint::{EndpointConfig, Endpointer, Utterance};

/// Samples per window at 16 kHz (32 ms), the size Silero VAD is trained on.
pub const WINDOW: usize = 512;

/// Scores windows of [`WINDOW`] samples with the probability that they hold speech.
pub trait SpeechDetector: Send {
    fn probability(&mut self, window: &[f32]) -> Result<f32>;
    /// Forgets the stream so far (a new, unrelated stream follows).
    fn reset(&mut self);
    fn name(&self) -> &'static str;
}

/// Silero when `model` exists, else the energy detector (with a warning).
pub fn detector(model: &Path) -> Result<Box<dyn SpeechDetector>> {
    if model.exists() {
        Ok(Box::new(silero::Silero::load(model)?))
    } else {
        warn!(
            "vad: {} is missing (run `make models`); using the energy detector",
            model.display()
        );
        Ok(Box::new(energy::Energy::default()))
    }
}
