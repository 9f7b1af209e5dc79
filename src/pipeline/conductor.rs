//! The conductor: opens a turn for each utterance, hands it to the thinking thread, records
//! what the threads report into the turn's report, interrupts open turns when the user speaks
//! over them (barge-in), and lets reports out in turn order.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use log::{error, info, warn};

use super::events::{Cancel, Ev, Job};
use super::report::{BargeIn, Timeline, TurnReport};
use crate::audio::playback::PlaybackShared;
use crate::listen::Heard;
use crate::metrics::{ms, peak_rss_bytes};

/// A turn being answered.
struct Open {
    report: TurnReport,
    t0: Instant,
    replied: bool,
    spoken: bool,
    detected: Option<Instant>,
}

pub struct Conductor {
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
    /// A conductor with no turns yet; `cancel` is shared with the thinking and speaking
    /// threads, `playback` is the speaker's state (dropped on a barge-in), `busy` is set while
    /// a turn is open, and a turn whose peak RSS passes `budget_bytes` is flagged.
    pub fn new(
        cancel: Cancel,
        playback: Option<Arc<PlaybackShared>>,
        barge_in: bool,
        busy: Option<Arc<AtomicBool>>,
        budget_bytes: Option<u64>,
    ) -> Conductor {
        Conductor {
            open: BTreeMap::new(),
            waiting: VecDeque::new(),
            reports: Vec::new(),
            next_turn: 1,
            ended: false,
            cancel,
            playback,
            barge_in,
            busy,
            budget_bytes,
        }
    }

    /// The session is failing: every turn is interrupted and the speaker silenced.
    pub fn abort(&self) {
        self.cancel.upto(usize::MAX);
        if let Some(p) = &self.playback {
            p.stop();
        }
    }

    /// The reports of the turns completed so far, in turn order.
    pub fn into_reports(self) -> Vec<TurnReport> {
        self.reports
    }

    pub fn run(
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
                                    skill: None,
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
                skill,
                at,
            } => {
                if let Some(o) = self.open.get_mut(&turn) {
                    o.replied = true;
                    o.report.timeline.peak_rss_after_llm = peak_rss_bytes();
                    o.report.reply = text;
                    o.report.stop = stop;
                    o.report.notice = notice;
                    o.report.skill = skill;
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
