//! `edgevox enroll NAME`: your own wake phrase from a few takes of it (WAV files, or recorded
//! from the microphone), kept as templates for `run --wake custom:NAME`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Args;
use edgevox::audio::Source;
use edgevox::audio::capture::{Capture, CaptureOptions};
use edgevox::audio::wav;
use edgevox::wake::WakeWord;
use edgevox::wake::custom::{self, DEFAULT_MARGIN, MAX_TAKES, MIN_TAKES};
use serde_json::json;

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The phrase's name (letters, digits, '_' and '-'): `run --wake custom:NAME` uses it.
    name: String,
    /// A take of the phrase said alone (a WAV file); give it 3 to 8 times. Without any, the
    /// takes are recorded from the microphone.
    #[arg(long = "take")]
    takes: Vec<PathBuf>,
    /// With no --take: how many takes to record.
    #[arg(long, default_value_t = 4)]
    record: usize,
    /// With no --take: the microphone (the default input device otherwise).
    #[arg(long)]
    device: Option<String>,
    /// The threshold over the largest distance between the takes.
    #[arg(long, default_value_t = DEFAULT_MARGIN)]
    margin: f32,
    /// Where to write the templates (default: the configuration directory's wake/NAME.json,
    /// `$EDGEVOX_CONFIG/wake` or `~/.config/edgevox/wake`).
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn run(args: EnrollArgs) -> Result<()> {
    let mut takes = Vec::new();
    if args.takes.is_empty() {
        ensure!(
            (MIN_TAKES..=MAX_TAKES).contains(&args.record),
            "--record {}: between {MIN_TAKES} and {MAX_TAKES} takes",
            args.record
        );
        let mut mic = Capture::open(&CaptureOptions {
            device: args.device.clone(),
            buffer_ms: 2000,
        })?;
        for i in 1..=args.record {
            eprintln!("take {i} of {}: say the phrase now (2.5 s)", args.record);
            takes.push((
                format!("take {i}"),
                record(&mut mic, Duration::from_millis(2500))?,
            ));
        }
    } else {
        for p in &args.takes {
            let (x, _) = wav::read_16k_mono(p)?;
            takes.push((p.display().to_string(), x));
        }
    }
    let dir = super::cache().wake();
    let mut front = WakeWord::front_end(&dir)?;
    let phrase = custom::enroll(&mut front, &args.name, &takes, args.margin)?;
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| custom::path_of(&args.name));
    phrase.save(&out)?;
    println!(
        "{}",
        json!({
            "name": phrase.name,
            "file": out,
            "takes": phrase.templates.len(),
            "take_steps": phrase.templates.iter().map(|t| t.len() / edgevox::wake::EMB_DIM).collect::<Vec<_>>(),
            "take_distances": phrase.take_distances,
            "threshold": phrase.threshold,
            "margin": args.margin,
        })
    );
    Ok(())
}

/// `secs` of the microphone, 16 kHz.
fn record(mic: &mut Capture, secs: Duration) -> Result<Vec<f32>> {
    let want = (secs.as_secs_f64() * 16_000.0) as usize;
    let mut out = vec![0.0; want];
    let mut have = 0;
    let deadline = Instant::now() + secs * 3;
    while have < want {
        let n = mic.read(&mut out[have..]).context("recording a take")?;
        ensure!(n > 0, "the microphone stopped");
        have += n;
        ensure!(
            Instant::now() < deadline,
            "the microphone delivers too slowly"
        );
    }
    Ok(out)
}
