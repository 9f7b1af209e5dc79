//! `edgevox say TEXT`: the speaking stage on its own, chunk by chunk as a reply is voiced.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use edgevox::audio::wav;
use edgevox::tts::{self, espeak::Espeak};

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
    let Some(path) = &args.output else {
        for chunk in tts::chunks(&args.text) {
            println!("{chunk}");
        }
        return Ok(());
    };
    // Fail on an unwritable path before speaking.
    std::fs::File::create(path)
        .with_context(|| format!("cannot write the speech to {}", path.display()))?;
    let mut voice = Espeak {
        voice: args.voice.clone(),
        speed: args.speed,
        ..Default::default()
    };
    // Voiced as the assistant voices a reply, at the voice's own rate.
    let audio = tts::render_all(&mut voice, &args.text, None)?;
    wav::write_mono_i16(path, &audio.samples, audio.rate)?;
    eprintln!(
        "wrote {:.2} s of speech to {}",
        audio.seconds(),
        path.display()
    );
    Ok(())
}
