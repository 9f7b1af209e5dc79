//! Speech out: reply text, chunk by chunk, to a voice and an audio sink.
//!
//! [`chunk::Chunker`] cuts the streamed reply into sentences (clauses when long),
//! [`normalize::for_speech`] spells out symbols and abbreviations, a [`Voice`] turns a chunk
//! into samples (espeak-ng today), and [`render`] voices one chunk the way every speech path
//! does: the assistant's speaking thread (`pipeline::speak`) queues it into the speaker (live
//! or a replay's recording), `edgevox say` into a WAV file ([`render_all`]).

pub mod chunk;
pub mod earcon;
pub mod espeak;
pub mod normalize;

use anyhow::{Context, Result};

/// Mono samples at their own rate.
#[derive(Debug, Clone, Default)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub rate: u32,
}

impl Audio {
    pub fn seconds(&self) -> f64 {
        if self.rate == 0 {
            0.0
        } else {
            self.samples.len() as f64 / self.rate as f64
        }
    }
}

/// Text to speech.
pub trait Voice: Send {
    fn synthesize(&mut self, text: &str) -> Result<Audio>;
    fn name(&self) -> String;
}

/// Pause after each spoken chunk, in seconds.
pub const CHUNK_GAP_S: f32 = 0.15;

/// The chunks a reply is spoken in, in order, as [`chunk::Chunker`] cuts them while it
/// streams.
pub fn chunks(text: &str) -> Vec<String> {
    let mut c = chunk::Chunker::new();
    let mut out = c.push(text);
    out.extend(c.finish());
    out
}

/// One chunk voiced the way every speech path voices it: spelled for speech
/// ([`normalize::for_speech`]), synthesized, resampled to `rate` (`None`: the voice's own),
/// and followed by the [`CHUNK_GAP_S`] pause. The speaking thread queues this into the
/// speaker; `edgevox say` writes it to a file.
pub fn render(voice: &mut dyn Voice, chunk: &str, rate: Option<u32>) -> Result<Audio> {
    let audio = voice
        .synthesize(&normalize::for_speech(chunk))
        .with_context(|| format!("the voice {}", voice.name()))?;
    let rate = rate.unwrap_or(audio.rate);
    let mut samples = if audio.rate == rate {
        audio.samples
    } else {
        crate::audio::resample::resample(&audio.samples, audio.rate, rate)?
    };
    samples.resize(samples.len() + (CHUNK_GAP_S * rate as f32) as usize, 0.0);
    Ok(Audio { samples, rate })
}

/// A whole text voiced chunk by chunk ([`chunks`], [`render`]), as the assistant would speak
/// it as a reply, into one piece of audio at `rate` (`None`: the voice's own).
pub fn render_all(voice: &mut dyn Voice, text: &str, rate: Option<u32>) -> Result<Audio> {
    let mut all = Audio {
        samples: Vec::new(),
        rate: rate.unwrap_or(0),
    };
    for chunk in chunks(text) {
        let a = render(voice, &chunk, rate.or((all.rate > 0).then_some(all.rate)))?;
        all.rate = a.rate;
        all.samples.extend(a.samples);
    }
    Ok(all)
}
