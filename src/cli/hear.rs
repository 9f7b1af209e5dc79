//! `edgevox devices`, `edgevox transcribe FILE.wav`, `edgevox listen`: the hearing stage.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use edgevox::asr::{self, AsrOptions, AudioCtx, Transcript, Whisper};
use edgevox::audio::capture::{Capture, CaptureOptions, list_devices};
use edgevox::audio::{MemorySource, Source, wav};
use edgevox::listen::{self, Heard, Listener};
use edgevox::metrics::ms;
use edgevox::vad::{self, EndpointConfig, SpeechDetector, Utterance};
use log::warn;
use serde_json::json;

use super::cache;

/// Which Whisper model and how to run it.
#[derive(Args, Debug, Clone)]
pub struct AsrArgs {
    /// Directory with whisper.json and the ggml files `make models` converts.
    #[arg(long, env = "EDGEVOX_WHISPER", default_value_os_t = cache().whisper())]
    pub whisper_dir: PathBuf,
    /// Model variant: f16, q8_0 or q5_1 [default: q8_0; with `run --board`, the profile's plan].
    #[arg(long)]
    pub whisper_model: Option<String>,
    /// Spoken language (ISO code), or "auto".
    #[arg(long, default_value = "en")]
    pub language: String,
    /// Threads for whisper.cpp [default: 2; with `run --board`, the profile's].
    #[arg(long)]
    pub asr_threads: Option<usize>,
    /// Beam search of this width instead of greedy decoding.
    #[arg(long)]
    pub beam: Option<usize>,
    /// Text that primes the decoder (names, jargon).
    #[arg(long)]
    pub initial_prompt: Option<String>,
    /// Encoder window: "full" (30 s), "fit" (audio + 3 s, at least 7.7 s), "fit+S", or a
    /// frame count (50 per second).
    #[arg(long, default_value = "fit")]
    pub audio_ctx: AudioCtx,
    /// Print segment timestamps.
    #[arg(long)]
    pub timestamps: bool,
}

impl AsrArgs {
    /// The Whisper variant: the flag's, else the default.
    pub fn variant(&self) -> &str {
        self.whisper_model
            .as_deref()
            .unwrap_or(edgevox::config::defaults::WHISPER)
    }

    pub fn threads(&self) -> usize {
        self.asr_threads
            .unwrap_or(edgevox::config::defaults::ASR_THREADS)
    }

    pub fn options(&self) -> AsrOptions {
        AsrOptions {
            language: self.language.clone(),
            threads: self.threads(),
            beam_size: self.beam,
            initial_prompt: self.initial_prompt.clone(),
            audio_ctx: self.audio_ctx,
            timestamps: self.timestamps,
        }
    }

    pub fn load(&self) -> Result<Whisper> {
        let path = asr::model_path(&self.whisper_dir, self.variant(), true)?;
        Whisper::load(&path)
    }
}

/// Speech detection and endpointing.
#[derive(Args, Debug, Clone)]
pub struct VadArgs {
    /// Silero VAD ONNX model; the energy detector is used when it is missing.
    #[arg(long, env = "EDGEVOX_VAD", default_value_os_t = cache().vad_model())]
    pub vad_model: PathBuf,
    /// Use the energy detector even when the Silero model is there.
    #[arg(long)]
    pub energy_vad: bool,
    /// Probability that starts an utterance.
    #[arg(long, default_value_t = EndpointConfig::default().start_threshold)]
    pub start_threshold: f32,
    /// Probability under which a window counts as silence.
    #[arg(long, default_value_t = EndpointConfig::default().end_threshold)]
    pub end_threshold: f32,
    /// Speech shorter than this is dropped (ms).
    #[arg(long, default_value_t = EndpointConfig::default().min_speech_ms)]
    pub min_speech_ms: u32,
    /// Trailing silence that ends an utterance (ms).
    #[arg(long, default_value_t = EndpointConfig::default().end_silence_ms)]
    pub end_silence_ms: u32,
    /// Longest utterance before it is cut (ms).
    #[arg(long, default_value_t = EndpointConfig::default().max_utterance_ms)]
    pub max_utterance_ms: u32,
    /// Audio kept from before the speech started (ms).
    #[arg(long, default_value_t = EndpointConfig::default().pre_roll_ms)]
    pub pre_roll_ms: u32,
}

impl VadArgs {
    pub fn endpoint(&self) -> EndpointConfig {
        EndpointConfig {
            start_threshold: self.start_threshold,
            end_threshold: self.end_threshold,
            min_speech_ms: self.min_speech_ms,
            end_silence_ms: self.end_silence_ms,
            max_utterance_ms: self.max_utterance_ms,
            pre_roll_ms: self.pre_roll_ms,
        }
    }

    pub fn detector(&self) -> Result<Box<dyn SpeechDetector>> {
        if self.energy_vad {
            return Ok(Box::new(vad::energy::Energy::default()));
        }
        vad::detector(&self.vad_model)
    }
}

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn devices(args: DevicesArgs) -> Result<()> {
    let devices = list_devices()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(());
    }
    if devices.is_empty() {
        println!("no input devices");
    }
    for d in devices {
        println!(
            "{}{}  {}  [{}]",
            if d.is_default { "* " } else { "  " },
            d.id,
            d.name,
            d.default_config.as_deref().unwrap_or("cannot open")
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct TranscribeArgs {
    /// A WAV file: PCM 8/16/24/32-bit or float, 8–48 kHz, mono or stereo.
    file: PathBuf,
    #[command(flatten)]
    asr: AsrArgs,
    #[command(flatten)]
    vad: VadArgs,
    /// Transcribe the whole file in one pass instead of utterance by utterance.
    #[arg(long)]
    no_vad: bool,
    /// Refuse files longer than this with --no-vad (seconds).
    #[arg(long, default_value_t = 120.0)]
    max_seconds: f64,
    /// Print one JSON object per utterance.
    #[arg(long)]
    json: bool,
}

pub fn transcribe(args: TranscribeArgs) -> Result<()> {
    let (samples, info) = wav::read_16k_mono(&args.file)?;
    if samples.is_empty() {
        warn!("{}: no samples; nothing to transcribe", args.file.display());
        if args.json {
            println!(
                "{}",
                json!({"file": args.file, "text": "", "utterances": []})
            );
        }
        return Ok(());
    }
    let mut whisper = args.asr.load()?;
    let opts = args.asr.options();
    if args.no_vad {
        if info.seconds() > args.max_seconds {
            bail!(
                "{}: {:.0} s of audio is over --max-seconds {:.0} for a single pass; \
                 drop --no-vad to transcribe it utterance by utterance",
                args.file.display(),
                info.seconds(),
                args.max_seconds
            );
        }
        let t = whisper.transcribe(&samples, &opts)?;
        print_transcript(&args.file, &t, args.json);
        return Ok(());
    }
    let source: Box<dyn Source> = Box::new(MemorySource::new(samples));
    let listener = Listener::new(source, args.vad.detector()?, args.vad.endpoint());
    run_listener(listener, &mut whisper, &opts, &args.file, args.json, None)
}

#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Input device (id or name from `edgevox devices`); the default device otherwise.
    #[arg(long)]
    device: Option<String>,
    /// Ring buffer between the audio callback and the listener (ms).
    #[arg(long, default_value_t = CaptureOptions::default().buffer_ms)]
    buffer_ms: u32,
    /// Stop after this many utterances.
    #[arg(long)]
    max_utterances: Option<usize>,
    #[command(flatten)]
    asr: AsrArgs,
    #[command(flatten)]
    vad: VadArgs,
    /// Print one JSON object per utterance.
    #[arg(long)]
    json: bool,
}

pub fn listen(args: ListenArgs) -> Result<()> {
    let mut whisper = args.asr.load()?;
    let capture = Capture::open(&CaptureOptions {
        device: args.device.clone(),
        buffer_ms: args.buffer_ms,
    })?;
    let name = PathBuf::from(capture.device_name());
    eprintln!(
        "listening on {} ({} Hz, {} ch); Ctrl-C to stop",
        capture.device_name(),
        capture.format().sample_rate,
        capture.format().channels
    );
    let listener = Listener::new(Box::new(capture), args.vad.detector()?, args.vad.endpoint());
    run_listener(
        listener,
        &mut whisper,
        &args.asr.options(),
        &name,
        args.json,
        args.max_utterances,
    )
}

fn run_listener(
    listener: Listener,
    whisper: &mut Whisper,
    opts: &AsrOptions,
    origin: &Path,
    json: bool,
    max_utterances: Option<usize>,
) -> Result<()> {
    let detector = listener.detector_name();
    let (rx, _thread) = listen::spawn(listener, 4)?;
    let mut count = 0;
    for heard in rx {
        match heard.with_context(|| format!("listening to {}", origin.display()))? {
            Heard::Utterance(u) => {
                let t = Instant::now();
                let tr = whisper.transcribe(&u.samples, opts)?;
                let latency = ms(t.elapsed());
                if tr.text.is_empty() {
                    continue;
                }
                print_utterance(&u, &tr, latency, detector, json);
                count += 1;
                if max_utterances.is_some_and(|m| count >= m) {
                    return Ok(());
                }
            }
            Heard::SpeechStart { .. } | Heard::Wake(_) => {}
            Heard::End {
                samples, vad_time, ..
            } => {
                log::info!(
                    "listen: {:.1} s of audio, {count} utterances, VAD {:.2} ms per second of audio",
                    samples as f64 / 16_000.0,
                    ms(vad_time) / (samples as f64 / 16_000.0).max(1e-9)
                );
            }
        }
    }
    Ok(())
}

fn print_utterance(u: &Utterance, t: &Transcript, latency_ms: f64, detector: &str, json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "text": t.text,
                "start_s": u.start_s,
                "end_s": u.end_s,
                "speech_ms": u.speech_ms,
                "end_reason": u.reason,
                "vad": detector,
                "asr_ms": latency_ms,
                "audio_ctx": t.audio_ctx,
                "rtf": t.real_time_factor(),
            })
        );
    } else {
        println!(
            "[{:7.2}s → {:7.2}s] {}   (asr {:.0} ms, rtf {:.2})",
            u.start_s,
            u.end_s,
            t.text,
            latency_ms,
            t.real_time_factor()
        );
    }
}

fn print_transcript(file: &Path, t: &Transcript, json: bool) {
    if json {
        println!(
            "{}",
            json!({"file": file, "text": t.text, "segments": t.segments, "asr_ms": t.asr_ms,
                   "audio_s": t.audio_s, "audio_ctx": t.audio_ctx, "rtf": t.real_time_factor()})
        );
    } else {
        println!("{}", t.text);
    }
}
