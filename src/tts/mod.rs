//! Speech out: reply text, chunk by chunk, to a voice and an audio sink.
//!
//! [`chunk::Chunker`] cuts the streamed reply into sentences (clauses when long),
//! [`normalize::for_speech`] spells out symbols and abbreviations, a [`Voice`] turns a chunk
//! into samples (espeak-ng today), and a [`SpeechSink`] takes the chunks: [`WavSink`] speaks
//! them into a WAV file, [`TextSink`] only prints them.

pub mod chunk;
pub mod earcon;
pub mod espeak;
pub mod normalize;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hound::{SampleFormat, WavSpec, WavWriter};

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

/// Where reply chunks go.
pub trait SpeechSink: Send {
    /// Speaks (or shows) one chunk; returns the seconds of audio it produced.
    fn say(&mut self, chunk: &str) -> Result<f64>;
    /// Ends the reply (flushes, closes files).
    fn finish(&mut self) -> Result<()>;
}

/// Prints chunks, one per line: for text-only use and for tests.
pub struct TextSink<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> TextSink<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write + Send> SpeechSink for TextSink<W> {
    fn say(&mut self, chunk: &str) -> Result<f64> {
        writeln!(self.out, "{chunk}").context("writing the reply")?;
        Ok(0.0)
    }

    fn finish(&mut self) -> Result<()> {
        self.out.flush().context("writing the reply")
    }
}

/// Speaks chunks into a 16-bit mono WAV file at the voice's rate, with a short pause between
/// chunks. The file is created at once, so an unwritable path fails before anything is said.
pub struct WavSink {
    voice: Box<dyn Voice>,
    path: PathBuf,
    writer: Option<WavWriter<std::io::BufWriter<std::fs::File>>>,
    rate: u32,
    /// Pause between chunks, in seconds.
    pub gap_s: f64,
}

impl WavSink {
    pub fn create(path: &Path, voice: Box<dyn Voice>) -> Result<Self> {
        // Probe the voice once for its rate, then open the file with it.
        let mut voice = voice;
        let probe = voice
            .synthesize("a")
            .with_context(|| format!("the voice {}", voice.name()))?;
        let spec = WavSpec {
            channels: 1,
            sample_rate: probe.rate,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let writer = WavWriter::create(path, spec)
            .with_context(|| format!("cannot write the reply to {}", path.display()))?;
        Ok(Self {
            voice,
            path: path.to_path_buf(),
            writer: Some(writer),
            rate: probe.rate,
            gap_s: 0.15,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SpeechSink for WavSink {
    fn say(&mut self, chunk: &str) -> Result<f64> {
        let text = normalize::for_speech(chunk);
        let audio = self.voice.synthesize(&text)?;
        let w = self
            .writer
            .as_mut()
            .with_context(|| format!("{} is already finished", self.path.display()))?;
        let rate = self.rate;
        anyhow::ensure!(
            audio.rate == rate,
            "the voice changed its rate from {rate} to {} Hz mid-reply",
            audio.rate
        );
        let audio = audio.samples;
        let gap = (self.gap_s * rate as f64) as usize;
        for s in audio.iter().chain(std::iter::repeat_n(&0.0, gap)) {
            w.write_sample((s.clamp(-1.0, 1.0) * i16::MAX as f32) as i16)
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        Ok((audio.len() + gap) as f64 / rate as f64)
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            w.finalize()
                .with_context(|| format!("finishing {}", self.path.display()))?;
        }
        Ok(())
    }
}

/// Speaks a whole reply through `sink`, chunk by chunk as it would stream.
pub fn speak_all(text: &str, sink: &mut dyn SpeechSink) -> Result<f64> {
    let mut c = chunk::Chunker::new();
    let mut secs = 0.0;
    for ch in c.push(text).into_iter().chain(c.finish()) {
        secs += sink.say(&ch)?;
    }
    sink.finish()?;
    Ok(secs)
}
