//! Wiring a session: the listener around the microphone (echo cancelling and guard), the
//! thinking and speaking threads, and the conductor on the calling thread; live, or replaying
//! a WAV file as a device in real time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use log::{error, info, warn};

use super::attention::Attention;
use super::conductor::{Conductor, SharedTimers};
use super::events::{Cancel, Ev, Job, ToSpeech};
use super::report::TurnReport;
use super::speak::{Output, speak};
use super::think::think;
use crate::asr::{AsrOptions, Recognizer};
use crate::audio::aec::{AecOptions, Align, EchoCanceller};
use crate::audio::doubletalk::Geigel;
use crate::audio::playback::PlaybackShared;
use crate::audio::replay::{ReplayDevice, ReplayOptions};
use crate::audio::{Source, wav};
use crate::listen::{self, EchoGuard, Listener};
use crate::llm::Chat;
use crate::ptt::Ptt;
use crate::skills::{Clock, Skills};
use crate::tts::Voice;
use crate::tts::earcon::Earcon;
use crate::vad::{EndpointConfig, SpeechDetector};
use crate::wake::WakeWord;

/// What thinks: the recognizer and the conversation.
pub struct Brain<'a> {
    pub whisper: &'a mut dyn Recognizer,
    pub asr: AsrOptions,
    pub chat: &'a mut Chat,
}

#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Play earcons (listening, turn end, error).
    pub earcons: bool,
    /// Stop after this many turns (live use is otherwise endless).
    pub max_turns: Option<usize>,
    /// Stop speaking when the user starts talking.
    pub barge_in: bool,
    /// Set while a turn is open (a replay keeps its microphone open meanwhile).
    pub busy: Option<Arc<AtomicBool>>,
    /// The board's memory budget: a turn whose peak RSS goes over it is logged loudly.
    pub budget_bytes: Option<u64>,
    /// What is answered without the model (time, date, sums; [`Skills`]); `None`: the model
    /// answers everything.
    pub skills: Option<Skills>,
    /// Where the skills read the time; the session restarts its seconds when it starts
    /// listening (timers run on them).
    pub clock: Clock,
    /// With a wake word: seconds after a reply during which a follow-up needs no wake phrase.
    pub follow_up_s: f64,
    /// Push-to-talk: a press wakes the assistant like the wake phrase (with or without one).
    pub ptt: Option<Ptt>,
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            earcons: false,
            max_turns: None,
            barge_in: true,
            busy: None,
            budget_bytes: None,
            skills: Some(Skills::builtin()),
            clock: Clock::system(),
            follow_up_s: 8.0,
            ptt: None,
        }
    }
}

/// How the listener is set up around the detector.
pub struct Hearing {
    pub detector: Box<dyn SpeechDetector>,
    pub endpoint: EndpointConfig,
    /// Speech needed to count as a barge-in, in milliseconds.
    pub barge_in_ms: u32,
    /// The echo guard's ratio (see [`EchoGuard`]); 0 turns the guard off.
    pub echo_ratio: f32,
    /// Cancel the speaker's echo from the microphone (see [`EchoCanceller`]); `None` leaves
    /// the microphone as it is.
    pub aec: Option<AecOptions>,
    /// Listen for this wake phrase; `None`: every utterance is a turn.
    pub wake: Option<WakeWord>,
}

impl Hearing {
    /// A listener on `source`, with the echo of `playback` (when there is one) cancelled and
    /// guarded against. `mic_started` is the microphone's first-block stamp, to line it up
    /// with the speaker ([`Align::Stamps`]); `None` when both run on one clock (a replay).
    pub fn listener(
        self,
        source: Box<dyn Source>,
        playback: Option<&PlaybackShared>,
        mic_started: Option<Arc<AtomicU64>>,
    ) -> Result<Listener> {
        let source = match (playback, &self.aec) {
            (Some(p), Some(opts)) => match p.take_tap() {
                Some(tap) => {
                    let align = match mic_started {
                        Some(mic) => Align::Stamps {
                            mic,
                            speaker: p.started(),
                        },
                        None => Align::SameClock,
                    };
                    Box::new(EchoCanceller::new(source, tap, p.rate(), align, opts)?)
                }
                None => {
                    warn!("the speaker's echo tap is taken: no echo cancelling");
                    source
                }
            },
            _ => source,
        };
        let guard = playback
            .filter(|_| self.echo_ratio > 0.0)
            .map(|p| EchoGuard {
                reference: p.echo().clone(),
                geigel: Geigel::new(self.echo_ratio),
                window: Duration::from_millis(300),
            });
        let mut l = Listener::new(source, self.detector, self.endpoint)
            .with_echo_guard(guard)
            .with_wake(self.wake);
        l.barge_in_ms = self.barge_in_ms;
        Ok(l)
    }
}

/// Replays `input` (a WAV file) as a live device in real time (see [`ReplayDevice`]): the
/// spoken replies go to `replay.record` when a voice is given, else they are printed.
pub fn replay(
    input: &Path,
    hearing: Hearing,
    replay: &ReplayOptions,
    voice: Option<Box<dyn Voice>>,
    brain: Brain<'_>,
    opts: &LoopOptions,
    on_turn: impl FnMut(&TurnReport),
) -> Result<Vec<TurnReport>> {
    let (samples, _) = wav::read_16k_mono(input)?;
    let (device, mic, player) = ReplayDevice::start(samples, replay)?;
    let opts = LoopOptions {
        busy: Some(device.assistant_busy()),
        ..opts.clone()
    };
    let listener = hearing.listener(Box::new(mic), Some(player.shared()), None)?;
    let output = match voice {
        Some(voice) => Output::Speaker { voice, player },
        None => Output::Text(Box::new(std::io::stderr())),
    };
    let reports = converse(listener, input, brain, output, &opts, on_turn);
    let stats = device.finish();
    let reports = reports?;
    let stats = stats?;
    info!("replay: {:.1} s of speech played", stats.played_s);
    if stats.overruns > 0 {
        warn!(
            "replay: the listener fell behind; {} microphone samples were dropped",
            stats.overruns
        );
    }
    Ok(reports)
}

/// Runs the assistant on what `listener` hears (`origin` names it in errors), answering
/// through `output`; calls `on_turn` with each turn's report as it completes.
pub fn converse(
    listener: Listener,
    origin: &Path,
    brain: Brain<'_>,
    output: Output,
    opts: &LoopOptions,
    mut on_turn: impl FnMut(&TurnReport),
) -> Result<Vec<TurnReport>> {
    let attention = (listener.has_wake() || opts.ptt.is_some()).then(|| {
        let silence_s = listener.endpoint().end_silence_ms as f64 / 1000.0;
        (
            Attention::new(opts.follow_up_s, silence_s),
            listener.position(),
        )
    });
    let (ev_tx, events) = mpsc::sync_channel::<Ev>(64);
    let _listen_thread = listen::spawn_into(listener, ev_tx.clone(), Ev::Heard)?;
    let mut ptt = opts.ptt.clone();
    if let Some(p) = &ptt {
        let tx = ev_tx.clone();
        if let Err(e) = p.spawn(move || {
            let _ = tx.try_send(Ev::Press);
        }) {
            // Keep going with what works: the wake word, or nothing addressed at all.
            error!("{e:#}; running without push-to-talk");
            ptt = None;
        }
    }
    let playback = match &output {
        Output::Speaker { player, .. } => Some(player.shared().clone()),
        Output::Text(_) => None,
    };
    let cancel = Cancel::default();
    let (job_tx, jobs) = mpsc::sync_channel::<Job>(2);
    let (speech_tx, speech_rx) = mpsc::sync_channel::<ToSpeech>(16);
    let Brain { whisper, asr, chat } = brain;
    let skills = opts.skills.clone();
    let clock = opts.clock.restarted();
    let timers = SharedTimers::default();
    // The volume skill turns the speaker's volume (none when replies are printed).
    let volume = playback.as_ref().map(|p| p.volume().clone());

    std::thread::scope(|scope| -> Result<Vec<TurnReport>> {
        let (c, tx, to_speech) = (cancel.clone(), ev_tx.clone(), speech_tx.clone());
        let (think_clock, think_timers) = (clock.clone(), timers.clone());
        std::thread::Builder::new()
            .name("edgevox-think".into())
            .spawn_scoped(scope, move || {
                think(
                    jobs,
                    whisper,
                    &asr,
                    chat,
                    skills.as_ref(),
                    &think_clock,
                    &think_timers,
                    volume.as_ref(),
                    &c,
                    &to_speech,
                    &tx,
                )
            })
            .context("spawning the thinking thread")?;
        let (c, tx) = (cancel.clone(), ev_tx.clone());
        let earcons = opts.earcons;
        std::thread::Builder::new()
            .name("edgevox-speak".into())
            .spawn_scoped(scope, move || speak(speech_rx, output, earcons, &c, &tx))
            .context("spawning the speaking thread")?;
        drop(ev_tx);

        if opts.earcons {
            let _ = speech_tx.try_send(ToSpeech::Earcon(Earcon::Listening));
        }
        let mut conductor =
            Conductor::new(cancel, playback, speech_tx.clone(), clock, timers, opts);
        if let Some((attention, position)) = attention {
            conductor = conductor.with_attention(attention, position);
        }
        if let Some(Ptt::At(script)) = &ptt {
            conductor = conductor.with_presses(script);
        }
        let result = conductor.run(&events, &job_tx, origin, opts.max_turns, &mut on_turn);
        // Closing the job queue ends the thinking thread, which ends the speaking thread.
        drop(job_tx);
        drop(speech_tx);
        if result.is_err() {
            conductor.abort();
        }
        result.map(|()| conductor.into_reports())
    })
}
