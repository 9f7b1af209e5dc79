//! `edgevox run`: the whole assistant, live (microphone and speaker) or replayed from a
//! recording in real time (`--input question.wav --output reply.wav`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use edgevox::audio::aec::AecOptions;
use edgevox::audio::capture::{Capture, CaptureOptions};
use edgevox::audio::replay::ReplayOptions;
use edgevox::audio::speaker::Speaker;
use edgevox::board::Board;
use edgevox::board::budget::{self, Choice, ModelSizes};
use edgevox::config::{Config, Flags, defaults};
use edgevox::llm::{Chat, ChatOptions, DEFAULT_SYSTEM_PROMPT, SamplingParams};
use edgevox::pipeline::{self, Brain, Hearing, LoopOptions, Output, TurnReport};
use edgevox::ptt::Ptt;
use edgevox::skills::{Clock, Skills};
use edgevox::tts::{Voice, espeak::Espeak};
use edgevox::wake::{WakeOptions, WakeWord};
use log::{error, info, warn};

use super::LlmArgs;
use super::hear::{AsrArgs, VadArgs};

/// How the assistant converses: the model's reply, the voice, barge-in.
#[derive(Args, Debug)]
pub struct TalkArgs {
    /// Sampling seed (greedy by default, so replies replay exactly either way).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Penalty on recently used tokens (1 = none). 1.1 keeps the 135M model out of loops
    /// ("I'm sorry I'm sorry …") that greedy decoding otherwise falls into.
    #[arg(long, default_value_t = 1.1)]
    repetition_penalty: f32,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 96)]
    max_tokens: usize,
    /// Tokens of context the conversation may use [default: 2048; with `run --board`, the
    /// profile's plan].
    #[arg(long)]
    context: Option<usize>,
    /// espeak-ng voice.
    #[arg(long, default_value_t = Espeak::default().voice)]
    voice: String,
    /// Keep talking when the user speaks over a reply.
    #[arg(long)]
    no_barge_in: bool,
    /// Speech that counts as a barge-in (ms).
    #[arg(long, default_value_t = 96)]
    barge_in_ms: u32,
    /// Echo guard: while the speaker plays, the microphone must peak above this fraction of
    /// what was played to count as the user (0 = no guard). Must exceed the device's
    /// speaker-to-microphone coupling [default: 0.6; with `run --board`, the profile's].
    #[arg(long)]
    echo_ratio: Option<f32>,
    /// Leave the speaker's echo in the microphone signal (no echo cancelling).
    #[arg(long)]
    no_aec: bool,
    /// Echo canceller: the longest speaker-to-microphone delay it models, device buffering
    /// included (ms; 16 filter taps per ms).
    #[arg(long, default_value_t = AecOptions::default().tail_ms)]
    aec_tail_ms: u32,
    /// Answer only after a wake phrase: a pretrained openWakeWord head (hey_jarvis, alexa,
    /// hey_mycroft, hey_rhasspy; their licence is CC BY-NC-SA 4.0, non-commercial use only),
    /// a path to an openWakeWord .onnx head, `custom:NAME` (a phrase enrolled with `edgevox
    /// enroll NAME`), or `off` (every utterance is answered). The
    /// phrase and the question may come in one breath ("hey jarvis, what time is it").
    /// [default: off; with `run --board`, the profile's `[audio] wake`].
    #[arg(long)]
    pub wake: Option<String>,
    /// Wake-phrase score (0-1) at or above which it counts.
    #[arg(long, default_value_t = WakeOptions::default().threshold)]
    wake_threshold: f32,
    /// Chunks (80 ms each) in a row at or above the threshold before the phrase counts.
    #[arg(long, default_value_t = WakeOptions::default().patience)]
    wake_patience: usize,
    /// With a wake word: seconds after a reply in which a follow-up needs no wake phrase.
    #[arg(long, default_value_t = LoopOptions::default().follow_up_s)]
    pub follow_up_s: f64,
    /// Push-to-talk: a press wakes the assistant like the wake phrase (the utterance under
    /// way or the next one is answered). `stdin` (Enter), `/dev/input/eventN[:KEY_NAME]` (a
    /// key or GPIO button through evdev; any key when no name is given), or `at:S1,S2,…`
    /// (presses at seconds of a replay's input). With `--wake off` only presses wake it.
    #[arg(long)]
    pub ptt: Option<Ptt>,
}

impl TalkArgs {
    pub fn chat(&self, llm: &LlmArgs) -> Result<Chat> {
        let sampling = SamplingParams {
            temperature: self.temperature,
            seed: self.seed,
            repetition_penalty: self.repetition_penalty,
            ..SamplingParams::greedy()
        };
        Chat::new(
            llm.load()?,
            ChatOptions {
                system_prompt: DEFAULT_SYSTEM_PROMPT.to_string(),
                sampling,
                max_new_tokens: self.max_tokens,
                context: self.context.unwrap_or(defaults::CONTEXT),
                speculate: llm.draft_tokens(),
                ..Default::default()
            },
        )
    }

    pub fn voice(&self) -> Box<dyn Voice> {
        Box::new(Espeak {
            voice: self.voice.clone(),
            ..Default::default()
        })
    }

    /// The wake-word detector `--wake` asks for. One that does not load is logged and the
    /// assistant listens to everything instead (it keeps working with what works).
    pub fn wake_word(&self) -> Option<WakeWord> {
        let name = self.wake.as_deref().unwrap_or("off");
        if name == "off" {
            return None;
        }
        let dir = super::cache().wake();
        let opts = WakeOptions {
            threshold: self.wake_threshold,
            patience: self.wake_patience,
            ..Default::default()
        };
        match WakeWord::load(&dir, &[name], opts) {
            Ok(w) => {
                info!(
                    "wake word: {} (threshold {}); the pretrained heads are CC BY-NC-SA 4.0",
                    w.heads().join(", "),
                    self.wake_threshold
                );
                Some(w)
            }
            Err(e) => {
                error!("wake word {name:?} unavailable: {e:#}; answering everything heard");
                None
            }
        }
    }

    pub fn hearing(&self, vad: &VadArgs) -> Result<Hearing> {
        let echo_ratio = self.echo_ratio.unwrap_or(defaults::ECHO_RATIO);
        Ok(Hearing {
            wake: self.wake_word(),
            detector: vad.detector()?,
            endpoint: vad.endpoint(),
            barge_in_ms: self.barge_in_ms,
            echo_ratio,
            aec: (!self.no_aec).then(|| AecOptions {
                tail_ms: self.aec_tail_ms,
                // The speaker-to-microphone coupling the echo guard is set above.
                double_talk_ratio: if echo_ratio > 0.0 {
                    echo_ratio
                } else {
                    AecOptions::default().double_talk_ratio
                },
                ..Default::default()
            }),
        })
    }

    pub fn barge_in(&self) -> bool {
        !self.no_barge_in
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Replay this recording (WAV) as the microphone, in real time, instead of a live device.
    #[arg(long)]
    input: Option<PathBuf>,
    /// With --input: write what the speaker played (16 kHz WAV); without it, replies are
    /// printed.
    #[arg(long, requires = "input")]
    output: Option<PathBuf>,
    /// With --input: replay speed (1 = real time).
    #[arg(long, default_value_t = 1.0, requires = "input")]
    speed: f32,
    /// With --input: fraction of the speaker's sound that leaks into the microphone.
    #[arg(long, default_value_t = 0.0, requires = "input")]
    echo_gain: f32,
    /// Live: the microphone (see `edgevox devices`); the default input device otherwise.
    #[arg(long, conflicts_with = "input")]
    device: Option<String>,
    /// Live: the speaker; the default output device otherwise.
    #[arg(long, conflicts_with = "input")]
    speaker: Option<String>,
    /// Live: print replies instead of speaking them.
    #[arg(long, conflicts_with = "input")]
    text: bool,
    /// Live: capture ring length (ms).
    #[arg(long, default_value_t = 2000)]
    buffer_ms: u32,
    /// Stop after this many turns.
    #[arg(long)]
    max_turns: Option<usize>,
    /// Send everything to the model: no skills (time, date, day, sums, units of time, which
    /// are otherwise answered exactly, without the model).
    #[arg(long)]
    no_skills: bool,
    /// The skills' clock starts at this local time (e.g. 2026-12-05T09:30) instead of the
    /// system's, and runs from there: a replay then answers "what time is it" the same way on
    /// every run.
    #[arg(long, value_parser = parse_clock)]
    clock: Option<jiff::civil::DateTime>,
    /// Earcons (listening, turn end, error): on by default live, off in replays.
    #[arg(long)]
    earcons: Option<bool>,
    /// Run as this board (an embedded board's name, or a profile's path such as
    /// /etc/edgevox/board.toml): its profile gives the threads, the echo ratio, the audio
    /// devices and the wake word, and its plan the Whisper variant, the LLM and the context
    /// (downgrading to fit its budget when the profile allows), except where a flag says
    /// otherwise. Without it, the settings are planned against the budget of the board this
    /// binary was built for.
    #[arg(long)]
    board: Option<String>,
    /// Print the resolved settings (each with where it came from: flag, board or default)
    /// and the memory plan as JSON, and exit without loading a model.
    #[arg(long)]
    show_config: bool,
    #[command(flatten)]
    talk: TalkArgs,
    #[command(flatten)]
    llm: LlmArgs,
    #[command(flatten)]
    asr: AsrArgs,
    #[command(flatten)]
    vad: VadArgs,
}

fn print_turn(turn: &TurnReport) {
    println!("{}", serde_json::to_string(turn).unwrap_or_default());
}

pub fn run(mut args: RunArgs) -> Result<()> {
    // Resolve and plan memory before loading anything.
    let (config, plan) = configure(&mut args)?;
    if args.show_config {
        let shown = serde_json::json!({"config": config, "plan": plan});
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    for line in config.lines() {
        info!("setting {line}");
    }
    plan.ensure_fits()?;
    info!(
        "plan for {}: peak {:.0} MiB of {:.0} MiB (whisper {}, llm {}, context {})",
        plan.board,
        plan.peak_bytes as f64 / 1048576.0,
        plan.budget_bytes as f64 / 1048576.0,
        plan.choice.whisper,
        plan.choice.llm,
        plan.choice.context
    );
    let hearing = args.talk.hearing(&args.vad)?;
    let mut whisper = args.asr.load()?;
    let mut chat = args.talk.chat(&args.llm)?;
    let brain = Brain {
        whisper: &mut whisper,
        asr: args.asr.options(),
        chat: &mut chat,
    };
    let opts = LoopOptions {
        earcons: args.earcons.unwrap_or(args.input.is_none()),
        max_turns: args.max_turns,
        barge_in: args.talk.barge_in(),
        busy: None,
        budget_bytes: Some(plan.budget_bytes),
        follow_up_s: args.talk.follow_up_s,
        ptt: args.talk.ptt.clone(),
        skills: (!args.no_skills).then(Skills::builtin),
        clock: match args.clock {
            Some(start) => Clock::starting_at(start),
            None => Clock::system(),
        }
        // A faster replay runs its timers and time faster too.
        .with_speed(if args.input.is_some() {
            args.speed as f64
        } else {
            1.0
        }),
    };
    let reports = if let Some(input) = &args.input {
        let replay = ReplayOptions {
            speed: args.speed,
            echo_gain: args.echo_gain,
            record: args.output.clone(),
            ..Default::default()
        };
        let voice = args.output.as_ref().map(|_| args.talk.voice());
        pipeline::replay(input, hearing, &replay, voice, brain, &opts, print_turn)?
    } else {
        let capture = Capture::open(&CaptureOptions {
            device: args.device.clone(),
            buffer_ms: args.buffer_ms,
        })?;
        let speaker = if args.text {
            None
        } else {
            match Speaker::open(args.speaker.as_deref(), 2_000) {
                Ok(s) => Some(s),
                Err(e) => {
                    // Keep going without a voice: the user still gets the replies as text.
                    error!("no speaker: {e:#}; replies are printed instead");
                    None
                }
            }
        };
        let (speaker, output) = match speaker {
            Some((speaker, player)) => (
                Some(speaker),
                Output::Speaker {
                    voice: args.talk.voice(),
                    player,
                },
            ),
            None => (None, Output::Text(Box::new(std::io::stderr()))),
        };
        let playback = match &output {
            Output::Speaker { player, .. } => Some(player.shared().clone()),
            Output::Text(_) => None,
        };
        let f = capture.format();
        info!(
            "listening on {} ({} Hz, {} ch, {}); replies are {}",
            capture.device_name(),
            f.sample_rate,
            f.channels,
            f.sample_format,
            if playback.is_some() {
                "spoken"
            } else {
                "printed"
            }
        );
        let mic_started = capture.started();
        let listener =
            hearing.listener(Box::new(capture), playback.as_deref(), Some(mic_started))?;
        let origin = PathBuf::from(args.device.as_deref().unwrap_or("the default microphone"));
        let reports = pipeline::converse(listener, &origin, brain, output, &opts, print_turn);
        drop(speaker);
        reports?
    };
    if reports.is_empty() {
        warn!("no speech heard");
    }
    Ok(())
}

/// The one configuration `run` uses: the flags over the board profile over the defaults
/// ([`edgevox::config::PRECEDENCE`]), then the memory plan for it, whose model choices settle what no
/// flag pinned. Every stage then reads the resolved values from `args`.
fn configure(args: &mut RunArgs) -> Result<(Config, budget::Plan)> {
    let cache = super::cache();
    let flags = Flags {
        whisper: args.asr.whisper_model.clone(),
        llm_dir: args.llm.model_dir.clone(),
        context: args.talk.context,
        kv_cache: args.llm.kv_type.map(|k| k.name().to_string()),
        asr_threads: args.asr.asr_threads,
        llm_threads: args.llm.threads,
        echo_ratio: args.talk.echo_ratio,
        capture: args.device.clone(),
        playback: args.speaker.clone(),
        wake: args.talk.wake.clone(),
    };
    let board = args.board.as_deref().map(Board::resolve).transpose()?;
    let mut config = Config::resolve(&flags, board.as_ref(), &cache);
    let sizes = ModelSizes::read(&cache, &args.vad.vad_model)?;
    let plan = match &board {
        Some(board) => budget::plan_pinned(board, &sizes, &config.pins())?,
        None => budget::plan_choice(
            &Board::built_for()?,
            &sizes,
            &Choice {
                whisper: config.whisper.value.clone(),
                llm: config.llm.value.clone(),
                context: config.context.value,
                kv: config.kv_type(),
                wake: config.wake_on(),
            },
        )?,
    };
    config.settle(&plan, &cache);
    args.asr.whisper_model = Some(config.whisper.value.clone());
    args.asr.asr_threads = Some(config.asr_threads.value);
    args.llm.threads = Some(config.llm_threads.value);
    args.llm.kv_type = Some(config.kv_type());
    args.llm.model_dir = Some(config.llm_dir.clone());
    args.talk.context = Some(config.context.value);
    args.talk.echo_ratio = Some(config.echo_ratio.value);
    args.device = config.capture.value.clone();
    args.speaker = config.playback.value.clone();
    args.talk.wake = Some(config.wake.value.clone());
    Ok((config, plan))
}

fn parse_clock(s: &str) -> Result<jiff::civil::DateTime> {
    s.parse::<jiff::civil::DateTime>()
        .with_context(|| format!("--clock {s:?}: expected a local time like 2026-12-05T09:30"))
}
