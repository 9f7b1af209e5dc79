//! `edgevox say TEXT`: the speaking stage on its own, chunk by chunk.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use edgevox::tts::{self, SpeechSink, TextSink, WavSink, espeak::Espeak};

#[derive(Args, Debug)]
pub struct SayArgs {
    /// The text to speak.
    text: String,
    /// Speak into this WAV file; without it the chunks are printed, one per line.
    #[arg(long)]
    output: Option<PathBuf>,
    /// espeak-ng voice.
    #[arg(long, default_value_t = Espeak::default().voice)]
    voice: String,
    /// Words per minute.
    #[arg(long, default_value_t = Espeak::default().speed)]
    speed: u32,
}

pub fn run(args: SayArgs) -> Result<()> {
    let mut sink: Box<dyn SpeechSink> = match &args.output {
        Some(path) => {
            let voice = Espeak {
                voice: args.voice.clone(),
                speed: args.speed,
                ..Default::default()
            };
            Box::new(WavSink::create(path, Box::new(voice))?)
        }
        None => Box::new(TextSink::new(std::io::stdout())),
    };
    let secs = tts::speak_all(&args.text, sink.as_mut())?;
    if let Some(path) = &args.output {
        eprintln!("wrote {:.2} s of speech to {}", secs, path.display());
    }
    Ok(())
}
