//! The whole assistant: hearing → thinking → speaking, each on its own thread, joined by
//! bounded channels, with barge-in.
//!
//! ```text
//!  device ─► listen thread ──(speech start, utterance)──► conductor (calling thread)
//!            VAD, endpointer,                                 │ jobs          ▲ events
//!            echo guard                                       ▼               │
//!                                            think thread: Whisper → LLM, streaming
//!                                                             │ chunks (bounded)
//!                                                             ▼
//!                                            speak thread: voice → Player ──► device
//! ```
//!
//! The conductor owns the turn reports. When the listener reports a speech start while a
//! turn is still being answered, it interrupts that turn: generation stops at the next token
//! (`Chat::ask_until`), queued speech is dropped, and the playback ring is flushed at the
//! device's next block; the new utterance becomes the next turn. Failures inside a turn (empty
//! transcript, ASR or LLM error, a speaker that fails) are recorded in that turn's report,
//! told to the user with an earcon and a short spoken message, and the loop goes on.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use log::{error, info, warn};
use serde::Serialize;

use crate::asr::{AsrOptions, Recognizer};
use crate::audio::aec::{AecOptions, Align, EchoCanceller};
use crate::audio::playback::{PlaybackShared, Played, Player};
use crate::audio::replay::{ReplayDevice, ReplayOptions};
use crate::audio::{Source, resample, wav};
use crate::listen::{self, EchoGuard, Heard, Listener};
use crate::llm::{Chat, StopReason};
use crate::metrics::{ms, peak_rss_bytes};
use crate::tts::earcon::Earcon;
use crate::tts::{Voice, chunk::Chunker, normalize};
use crate::vad::{EndpointConfig, SpeechDetector};

/// Said when nothing was understood.
pub const NOTICE_NOT_UNDERSTOOD: &str = "Sorry, I didn't catch that.";
/// Said when thinking failed.
pub const NOTICE_FAILED: &str = "Sorry, something went wrong.";

/// Pause after each spoken chunk, in seconds.
const CHUNK_GAP_S: f32 = 0.15;

/// Milliseconds after the endpointer delivered the utterance (the end of speech), and the
/// process's peak RSS when each stage finished.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub transcript_ready_ms: f64,
    pub first_token_ms: Option<f64>,
    pub first_audio_ms: Option<f64>,
    pub turn_done_ms: f64,
    pub peak_rss_after_asr: Option<u64>,
    pub peak_rss_after_llm: Option<u64>,
    pub peak_rss_after_speech: Option<u64>,
}

/// How an interruption went.
#[derive(Debug, Clone, Serialize)]
pub struct BargeIn {
    /// Where the interrupting speech began in the input, in seconds.
    pub speech_at_s: f64,
    /// From the speech start being detected to the device having dropped the reply's queued
    /// audio (silent); `None` without a speaker.
    pub playback_stopped_ms: Option<f64>,
    /// From detection to the model stopping; `None` when it had already finished.
    pub generation_stopped_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TurnReport {
    pub turn: usize,
    /// Where the utterance was in the input, in seconds.
    pub speech_start_s: f64,
    pub speech_end_s: f64,
    pub transcript: String,
    pub reply: String,
    /// Why generation stopped, when the model was asked.
    pub stop: Option<StopReason>,
    /// Seconds of the reply that went to the speaker.
    pub spoken_s: f64,
    pub timeline: Timeline,
    /// Set when the user spoke over this turn.
    pub barge_in: Option<BargeIn>,
    pub peak_rss_bytes: Option<u64>,
    /// The peak went over the board's budget.
    pub over_budget: bool,
    /// What went wrong in this turn, if anything (the loop goes on).
    pub error: Option<String>,
    /// What the user was told about it.
    pub notice: Option<String>,
}

/// Where replies go.
pub enum Output {
    /// Spoken through a device: the live speaker or the replay device.
    Speaker {
        voice: Box<dyn Voice>,
        player: Player,
    },
    /// Printed, one chunk per line: no speaker.
    Text(Box<dyn Write + Send>),
}

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
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            earcons: false,
            max_turns: None,
            barge_in: true,
            busy: None,
            budget_bytes: None,
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
                ratio: self.echo_ratio,
                window: Duration::from_millis(300),
            });
        let mut l = Listener::new(source, self.detector, self.endpoint).with_echo_guard(guard);
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

/// Jobs for the thinking thread.
struct Job {
    turn: usize,
    samples: Vec<f32>,
}

/// Work for the speaking thread.
enum ToSpeech {
    Earcon(Earcon),
    Chunk { turn: usize, text: String },
    EndTurn { turn: usize },
}

/// What the threads tell the conductor.
enum Ev {
    Heard(Result<Heard>),
    Transcript {
        turn: usize,
        text: String,
        error: Option<String>,
        at: Instant,
    },
    FirstToken {
        turn: usize,
        at: Instant,
    },
    Replied {
        turn: usize,
        text: String,
        stop: Option<StopReason>,
        error: Option<String>,
        notice: Option<String>,
        at: Instant,
    },
    /// The turn's first audio went to the device.
    Audio {
        turn: usize,
        at: Instant,
    },
    SpeechFailed {
        turn: usize,
        error: String,
    },
    Spoken {
        turn: usize,
        at: Instant,
        /// Seconds the device played for this turn.
        played_s: f64,
    },
}

/// Turns numbered up to this are interrupted.
#[derive(Clone, Default)]
struct Cancel(Arc<AtomicUsize>);

impl Cancel {
    fn is(&self, turn: usize) -> bool {
        turn <= self.0.load(Ordering::SeqCst)
    }
    fn upto(&self, turn: usize) {
        self.0.fetch_max(turn, Ordering::SeqCst);
    }
}

/// A turn being answered.
struct Open {
    report: TurnReport,
    t0: Instant,
    replied: bool,
    spoken: bool,
    detected: Option<Instant>,
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
    let (ev_tx, events) = mpsc::sync_channel::<Ev>(64);
    let _listen_thread = listen::spawn_into(listener, ev_tx.clone(), Ev::Heard)?;
    let playback = match &output {
        Output::Speaker { player, .. } => Some(player.shared().clone()),
        Output::Text(_) => None,
    };
    let cancel = Cancel::default();
    let (job_tx, jobs) = mpsc::sync_channel::<Job>(2);
    let (speech_tx, speech_rx) = mpsc::sync_channel::<ToSpeech>(16);
    let Brain { whisper, asr, chat } = brain;

    std::thread::scope(|scope| -> Result<Vec<TurnReport>> {
        let (c, tx, to_speech) = (cancel.clone(), ev_tx.clone(), speech_tx.clone());
        std::thread::Builder::new()
            .name("edgevox-think".into())
            .spawn_scoped(scope, move || {
                think(jobs, whisper, &asr, chat, &c, &to_speech, &tx)
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
        let mut conductor = Conductor {
            open: BTreeMap::new(),
            waiting: VecDeque::new(),
            reports: Vec::new(),
            next_turn: 1,
            ended: false,
            cancel,
            playback,
            barge_in: opts.barge_in,
            busy: opts.busy.clone(),
            budget_bytes: opts.budget_bytes,
        };
        let result = conductor.run(&events, &job_tx, origin, opts.max_turns, &mut on_turn);
        // Closing the job queue ends the thinking thread, which ends the speaking thread.
        drop(job_tx);
        drop(speech_tx);
        if result.is_err() {
            conductor.cancel.upto(usize::MAX);
            if let Some(p) = &conductor.playback {
                p.stop();
            }
        }
        result.map(|()| conductor.reports)
    })
}

struct Conductor {
    open: BTreeMap<usize, Open>,
    /// Utterances waiting for the thinking thread.
    waiting: VecDeque<Job>,
    reports: Vec<TurnReport>,
    next_turn: usize,
    ended: bool,
    cancel: Cancel,
    playback: Option<Arc<PlaybackShared>>,
    barge_in: bool,
    busy: Option<Arc<AtomicBool>>,
    budget_bytes: Option<u64>,
}

impl Conductor {
    fn run(
        &mut self,
        events: &Receiver<Ev>,
        jobs: &SyncSender<Job>,
        origin: &Path,
        max_turns: Option<usize>,
        on_turn: &mut impl FnMut(&TurnReport),
    ) -> Result<()> {
        loop {
            if self.ended && self.open.is_empty() {
                return Ok(());
            }
            if max_turns.is_some_and(|m| self.reports.len() >= m) {
                return Ok(());
            }
            let ev = events
                .recv()
                .map_err(|_| anyhow!("the assistant's threads stopped"))?;
            self.handle(ev, origin)?;
            while let Some(job) = self.waiting.pop_front() {
                match jobs.try_send(job) {
                    Ok(()) => {}
                    Err(TrySendError::Full(job)) => {
                        self.waiting.push_front(job);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        return Err(anyhow!("the thinking thread stopped"));
                    }
                }
            }
            // Reports leave in turn order, once thinking and speaking are both done.
            while let Some(entry) = self.open.first_entry() {
                if !(entry.get().replied && entry.get().spoken) {
                    break;
                }
                let mut o = entry.remove();
                o.report.peak_rss_bytes = peak_rss_bytes();
                if let (Some(peak), Some(budget)) = (o.report.peak_rss_bytes, self.budget_bytes)
                    && peak > budget
                {
                    error!(
                        "turn {}: OVER BUDGET: peak RSS {:.0} MiB, the board's budget is {:.0} MiB",
                        o.report.turn,
                        peak as f64 / 1048576.0,
                        budget as f64 / 1048576.0
                    );
                    o.report.over_budget = true;
                }
                info!(
                    "turn {}: {:?} -> {:?}",
                    o.report.turn, o.report.transcript, o.report.reply
                );
                on_turn(&o.report);
                self.reports.push(o.report);
            }
            if let Some(b) = &self.busy {
                b.store(!self.open.is_empty(), Ordering::Release);
            }
        }
    }

    fn handle(&mut self, ev: Ev, origin: &Path) -> Result<()> {
        match ev {
            Ev::Heard(h) => {
                match h.with_context(|| format!("listening to {}", origin.display()))? {
                    Heard::SpeechStart { at_s, detected } => self.interrupt(at_s, detected),
                    Heard::Utterance(u) => {
                        let turn = self.next_turn;
                        self.next_turn += 1;
                        info!(
                            "turn {turn}: heard {:.2}-{:.2} s ({} ms of speech)",
                            u.start_s, u.end_s, u.speech_ms
                        );
                        self.open.insert(
                            turn,
                            Open {
                                report: TurnReport {
                                    turn,
                                    speech_start_s: u.start_s,
                                    speech_end_s: u.end_s,
                                    transcript: String::new(),
                                    reply: String::new(),
                                    stop: None,
                                    spoken_s: 0.0,
                                    timeline: Timeline::default(),
                                    barge_in: None,
                                    peak_rss_bytes: None,
                                    over_budget: false,
                                    error: None,
                                    notice: None,
                                },
                                t0: Instant::now(),
                                replied: false,
                                spoken: false,
                                detected: None,
                            },
                        );
                        self.waiting.push_back(Job {
                            turn,
                            samples: u.samples,
                        });
                    }
                    Heard::End {
                        samples,
                        echo_gated,
                        ..
                    } => {
                        info!(
                            "input ended after {:.1} s; echo guard held back {echo_gated} windows",
                            samples as f64 / 16_000.0
                        );
                        self.ended = true;
                    }
                }
            }
            Ev::Transcript {
                turn,
                text,
                error,
                at,
            } => {
                if let Some(o) = self.open.get_mut(&turn) {
                    o.report.transcript = text;
                    o.report.timeline.transcript_ready_ms = ms(at - o.t0);
                    o.report.timeline.peak_rss_after_asr = peak_rss_bytes();
                    if let Some(e) = error {
                        o.report.error.get_or_insert(e);
                    }
                }
            }
            Ev::FirstToken { turn, at } => {
                if let Some(o) = self.open.get_mut(&turn) {
                    o.report.timeline.first_token_ms = Some(ms(at - o.t0));
                }
            }
            Ev::Replied {
                turn,
                text,
                stop,
                error,
                notice,
                at,
            } => {
                if let Some(o) = self.open.get_mut(&turn) {
                    o.replied = true;
                    o.report.timeline.peak_rss_after_llm = peak_rss_bytes();
                    o.report.reply = text;
                    o.report.stop = stop;
                    o.report.notice = notice;
                    if let Some(e) = error {
                        o.report.error.get_or_insert(e);
                    }
                    if let (Some(b), Some(d)) = (o.report.barge_in.as_mut(), o.detected) {
                        b.generation_stopped_ms = Some(ms(at.saturating_duration_since(d)));
                    }
                }
            }
            Ev::Audio { turn, at } => {
                if let Some(o) = self.open.get_mut(&turn) {
                    o.report
                        .timeline
                        .first_audio_ms
                        .get_or_insert(ms(at - o.t0));
                }
            }
            Ev::SpeechFailed { turn, error } => {
                warn!("turn {turn}: speech failed: {error}");
                if let Some(o) = self.open.get_mut(&turn) {
                    o.report.error.get_or_insert(error);
                }
            }
            Ev::Spoken { turn, at, played_s } => {
                if let Some(o) = self.open.get_mut(&turn) {
                    o.spoken = true;
                    o.report.timeline.peak_rss_after_speech = peak_rss_bytes();
                    o.report.spoken_s = played_s;
                    o.report.timeline.turn_done_ms = ms(at - o.t0);
                }
            }
        }
        Ok(())
    }

    /// The user started speaking: stop answering every open turn.
    fn interrupt(&mut self, at_s: f64, detected: Instant) {
        if !self.barge_in {
            return;
        }
        let busy: Vec<usize> = self
            .open
            .iter()
            .filter(|(t, o)| !o.spoken && !self.cancel.is(**t))
            .map(|(t, _)| *t)
            .collect();
        let Some(&last) = busy.last() else {
            return;
        };
        self.cancel.upto(last);
        let playback_stopped_ms = self.playback.as_ref().map(|p| {
            p.stop();
            // Wait (briefly) for the device to drop the queued audio.
            let deadline = Instant::now() + Duration::from_millis(500);
            while !p.stopped() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            ms(detected.elapsed())
        });
        for t in busy {
            if let Some(o) = self.open.get_mut(&t) {
                info!("turn {t}: barge-in at {at_s:.2} s: stopping the reply");
                o.detected = Some(detected);
                o.report.barge_in = Some(BargeIn {
                    speech_at_s: at_s,
                    playback_stopped_ms,
                    generation_stopped_ms: None,
                });
            }
        }
    }
}

/// The thinking thread: transcribes each utterance and streams the model's reply, chunked,
/// to the speaking thread.
fn think(
    jobs: Receiver<Job>,
    whisper: &mut dyn Recognizer,
    asr: &AsrOptions,
    chat: &mut Chat,
    cancel: &Cancel,
    to_speech: &SyncSender<ToSpeech>,
    events: &SyncSender<Ev>,
) {
    for Job { turn, samples } in jobs {
        let (text, error) = match whisper.transcribe(&samples, asr) {
            Ok(t) => (t.text, None),
            Err(e) => (String::new(), Some(format!("{e:#}"))),
        };
        let heard = !text.is_empty();
        let _ = events.send(Ev::Transcript {
            turn,
            text: text.clone(),
            error: error.clone(),
            at: Instant::now(),
        });
        let mut reply = Ev::Replied {
            turn,
            text: String::new(),
            stop: None,
            error: None,
            notice: None,
            at: Instant::now(),
        };
        if cancel.is(turn) {
            // Interrupted before it could be answered: the next utterance says what is wanted.
        } else if !heard {
            let why = error.unwrap_or_else(|| "nothing was understood".into());
            warn!("turn {turn}: {why}; not answering");
            let _ = to_speech.send(ToSpeech::Earcon(Earcon::Error));
            let _ = to_speech.send(ToSpeech::Chunk {
                turn,
                text: NOTICE_NOT_UNDERSTOOD.into(),
            });
            reply = Ev::Replied {
                turn,
                text: String::new(),
                stop: None,
                error: Some(why),
                notice: Some(NOTICE_NOT_UNDERSTOOD.into()),
                at: Instant::now(),
            };
        } else {
            let mut chunker = Chunker::new();
            let mut first = true;
            let result = chat.ask_until(
                &text,
                |piece| {
                    if first {
                        first = false;
                        let _ = events.send(Ev::FirstToken {
                            turn,
                            at: Instant::now(),
                        });
                    }
                    for c in chunker.push(piece) {
                        let _ = to_speech.send(ToSpeech::Chunk { turn, text: c });
                    }
                },
                || cancel.is(turn),
            );
            let at = Instant::now();
            reply = match result {
                Ok(r) => {
                    if let Some(c) = chunker.finish() {
                        let _ = to_speech.send(ToSpeech::Chunk { turn, text: c });
                    }
                    Ev::Replied {
                        turn,
                        text: r.text,
                        stop: Some(r.stop),
                        error: None,
                        notice: None,
                        at,
                    }
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    error!("turn {turn}: the model failed: {e}");
                    let _ = to_speech.send(ToSpeech::Earcon(Earcon::Error));
                    let _ = to_speech.send(ToSpeech::Chunk {
                        turn,
                        text: NOTICE_FAILED.into(),
                    });
                    Ev::Replied {
                        turn,
                        text: String::new(),
                        stop: None,
                        error: Some(e),
                        notice: Some(NOTICE_FAILED.into()),
                        at,
                    }
                }
            };
        }
        let _ = events.send(reply);
        if to_speech.send(ToSpeech::EndTurn { turn }).is_err() {
            return;
        }
    }
}

/// The speaking thread: voices chunks into the player (or prints them), and reports when
/// each turn's audio has been played.
fn speak(
    rx: Receiver<ToSpeech>,
    output: Output,
    earcons: bool,
    cancel: &Cancel,
    events: &SyncSender<Ev>,
) {
    let mut mouth = Mouth {
        output,
        earcons,
        turn: None,
    };
    for msg in rx {
        match msg {
            ToSpeech::Earcon(e) => mouth.earcon(e),
            ToSpeech::Chunk { turn, text } => {
                if !cancel.is(turn) {
                    mouth.chunk(turn, &text, cancel, events);
                }
            }
            ToSpeech::EndTurn { turn } => {
                let played_s = mouth.end_turn(turn, cancel, events);
                let _ = events.send(Ev::Spoken {
                    turn,
                    at: Instant::now(),
                    played_s,
                });
            }
        }
    }
}

/// The speaking thread's state.
struct Mouth {
    output: Output,
    earcons: bool,
    /// The turn being spoken, with the device's played-sample count when it began.
    turn: Option<(usize, u64)>,
}

impl Mouth {
    fn earcon(&mut self, e: Earcon) {
        if let Output::Speaker { player, .. } = &mut self.output
            && self.earcons
        {
            let epoch = player.shared().epoch();
            let rate = player.rate();
            if let Err(err) = player.play(&e.samples(rate), rate, epoch) {
                self.fall_back(err);
            }
        }
    }

    fn chunk(&mut self, turn: usize, text: &str, cancel: &Cancel, events: &SyncSender<Ev>) {
        let first = self.turn.is_none_or(|(t, _)| t != turn);
        let failed = match &mut self.output {
            Output::Text(out) => {
                let _ = writeln!(out, "{text}");
                if first {
                    self.turn = Some((turn, 0));
                    let _ = events.send(Ev::Audio {
                        turn,
                        at: Instant::now(),
                    });
                }
                None
            }
            Output::Speaker { voice, player } => {
                if first {
                    self.turn = Some((turn, player.shared().played_samples()));
                }
                let on_first = || {
                    if first {
                        let _ = events.send(Ev::Audio {
                            turn,
                            at: Instant::now(),
                        });
                    }
                };
                match say(voice.as_mut(), player, text, || cancel.is(turn), on_first) {
                    Ok(()) => None,
                    Err(e) => {
                        let _ = events.send(Ev::SpeechFailed {
                            turn,
                            error: format!("{e:#}"),
                        });
                        // A voice error loses one chunk; a device error the speaker.
                        player.shared().failure().map(|_| e)
                    }
                }
            }
        };
        if let Some(e) = failed {
            self.fall_back(e);
            if let Output::Text(out) = &mut self.output {
                let _ = writeln!(out, "{text}");
            }
        }
    }

    /// Waits for the turn's audio to play out (or to be dropped by a barge-in); returns the
    /// seconds played.
    fn end_turn(&mut self, turn: usize, cancel: &Cancel, events: &SyncSender<Ev>) -> f64 {
        let base = match self.turn.take() {
            Some((t, base)) if t == turn => Some(base),
            _ => None,
        };
        let Output::Speaker { player, .. } = &mut self.output else {
            return 0.0;
        };
        let shared = player.shared().clone();
        let epoch = shared.epoch();
        let result = if cancel.is(turn) {
            // The conductor has asked the device to drop the audio; let it finish doing so.
            let deadline = Instant::now() + Duration::from_millis(500);
            while !shared.stopped() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(Played::Stopped)
        } else {
            player.drain(epoch)
        };
        let played_s = base.map_or(0.0, |b| {
            audio_secs((shared.played_samples() - b) as usize, shared.rate())
        });
        match result {
            Ok(Played::Done) if self.earcons => {
                let rate = player.rate();
                let _ = player.play(&Earcon::TurnEnd.samples(rate), rate, epoch);
            }
            Ok(_) => {}
            Err(e) => {
                let _ = events.send(Ev::SpeechFailed {
                    turn,
                    error: format!("{e:#}"),
                });
                self.fall_back(e);
            }
        }
        played_s
    }

    /// The speaker failed for good: say so loudly and print replies from now on.
    fn fall_back(&mut self, e: anyhow::Error) {
        error!("the speaker failed: {e:#}; replies are printed from now on");
        self.output = Output::Text(Box::new(std::io::stderr()));
    }
}

/// Voices one chunk into the player, with a short pause after it; `on_first` runs when its
/// first samples are queued. Stops early if the turn is interrupted.
fn say(
    voice: &mut dyn Voice,
    player: &mut Player,
    text: &str,
    interrupted: impl Fn() -> bool,
    on_first: impl FnOnce(),
) -> Result<()> {
    let epoch = player.shared().epoch();
    let audio = voice.synthesize(&normalize::for_speech(text))?;
    if interrupted() {
        return Ok(());
    }
    let rate = player.rate();
    let mut samples = if audio.rate == rate {
        audio.samples
    } else {
        resample::resample(&audio.samples, audio.rate, rate)?
    };
    samples.resize(samples.len() + (CHUNK_GAP_S * rate as f32) as usize, 0.0);
    // A first short piece, so the first-audio time is when sound starts, not when the
    // chunk's last sample is queued.
    let head = samples.len().min(rate as usize / 50);
    if player.play(&samples[..head], rate, epoch)? == Played::Stopped {
        return Ok(());
    }
    on_first();
    player.play(&samples[head..], rate, epoch)?;
    Ok(())
}

fn audio_secs(samples: usize, rate: u32) -> f64 {
    samples as f64 / rate.max(1) as f64
}
