//! The conductor: opens a turn for each utterance, hands it to the thinking thread, records
//! what the threads report into the turn's report, interrupts open turns when the user speaks
//! over them (barge-in), lets reports out in turn order, and sounds the timers and alarms.
//!
//! Timers live here, on the session's clock: when one is due and no turn is being answered,
//! it becomes a turn of its own (the timer earcon and a spoken notice, which barge-in stops
//! like any reply); while a reply is under way it waits for that reply to end. A failed turn
//! does not touch them. When the input ends (a replay), the conductor stays for the timers
//! due within [`TIMER_WAIT_S`], so a replay hears them on its own clock.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use log::{error, info, warn};

use super::attention::{Attention, Verdict};
use super::events::{Cancel, Ev, Job, ToSpeech};
use super::report::{BargeIn, TurnReport};
use super::session::LoopOptions;
use crate::audio::playback::PlaybackShared;
use crate::listen::Heard;
use crate::metrics::{ms, peak_rss_bytes};
use crate::skills::timers::{self, Timers};
use crate::skills::{Clock, Intent, SkillAnswer};
use crate::tts::earcon::Earcon;
use crate::wake::Detection;

/// After the input ends, timers due within this many seconds still go off before the
/// session ends (later ones are dropped, and the log says so).
pub const TIMER_WAIT_S: f64 = 60.0;

/// The timers, shared by the thinking thread (which sets them) and the conductor.
pub type SharedTimers = Arc<Mutex<Timers>>;

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
    clock: Clock,
    timers: SharedTimers,
    /// Where timer notices go, and those the speaking thread had no room for yet.
    speech: SyncSender<ToSpeech>,
    outbox: VecDeque<ToSpeech>,
    /// When the input ended, in session seconds.
    ended_s: f64,
    earcons: bool,
    /// With a wake word: which utterances are turns, the listener's stream position (in
    /// samples, for the follow-up window) and the last wake phrase heard.
    attention: Option<Attention>,
    position: Option<Arc<AtomicU64>>,
    last_wake: Option<Detection>,
    /// Utterances not addressed to the assistant (no wake phrase).
    ignored: usize,
    /// Scripted push-to-talk presses still to come, in stream seconds.
    presses: VecDeque<f64>,
}

impl Conductor {
    /// A conductor with no turns yet; `cancel` is shared with the thinking and speaking
    /// threads, `playback` is the speaker's state (dropped on a barge-in), `speech` the
    /// speaking thread's queue (for timer notices), `clock` the session's and `timers` those
    /// the thinking thread sets. From `opts`: barge-in, `busy` (set while a turn is open or a
    /// timer is due soon) and the budget a turn's peak RSS is checked against.
    pub fn new(
        cancel: Cancel,
        playback: Option<Arc<PlaybackShared>>,
        speech: SyncSender<ToSpeech>,
        clock: Clock,
        timers: SharedTimers,
        opts: &LoopOptions,
    ) -> Conductor {
        Conductor {
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
            clock,
            timers,
            speech,
            outbox: VecDeque::new(),
            ended_s: 0.0,
            earcons: opts.earcons,
            attention: None,
            position: None,
            last_wake: None,
            ignored: 0,
            presses: VecDeque::new(),
        }
    }

    /// Push-to-talk presses at these stream seconds (a replay's script).
    pub fn with_presses(mut self, at_s: &[f64]) -> Self {
        self.presses = at_s.iter().copied().collect();
        self
    }

    /// The push-to-talk key went down at `at_s`: awake, as after the wake phrase.
    fn press(&mut self, at_s: f64) {
        let Some(a) = self.attention.as_mut() else {
            return;
        };
        info!("push-to-talk at {at_s:.2} s");
        a.pressed(at_s);
        if self.earcons && self.open.is_empty() {
            self.outbox.push_back(ToSpeech::Earcon(Earcon::Listening));
        }
        self.last_wake = Some(Detection {
            head: "push-to-talk".into(),
            score: 1.0,
            at_s,
        });
    }

    /// Answers only what is addressed to it (see [`Attention`]): the wake phrase, a reply
    /// under way, the follow-up window. `position` is the listener's stream position in
    /// samples ([`crate::listen::Listener::position`]).
    pub fn with_attention(mut self, attention: Attention, position: Arc<AtomicU64>) -> Self {
        self.attention = Some(attention);
        self.position = Some(position);
        self
    }

    /// Where the listener is in its stream, in seconds.
    fn stream_s(&self) -> f64 {
        self.position
            .as_ref()
            .map_or(0.0, |p| p.load(Ordering::Acquire) as f64 / 16_000.0)
    }

    /// The follow-up window passed unused: asleep again. Scripted presses that are due
    /// happen here too.
    fn check_window(&mut self) {
        let now_s = self.stream_s();
        while self.presses.front().is_some_and(|&t| t <= now_s) {
            let t = self.presses.pop_front().unwrap_or(now_s);
            self.press(t);
        }
        if self.open.is_empty()
            && let Some(a) = self.attention.as_mut()
            && a.window_closed(now_s)
        {
            info!("follow-up window closed at {now_s:.2} s: waiting for the wake phrase");
            if self.earcons {
                self.outbox.push_back(ToSpeech::Earcon(Earcon::Asleep));
            }
        }
    }

    fn timers(&self) -> std::sync::MutexGuard<'_, Timers> {
        // A thread that panicked holding the lock left the timers as they were: keep them.
        self.timers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next timer the session still waits for, in session seconds.
    fn next_timer(&self) -> Option<f64> {
        let due = self.timers().next_due()?;
        (!self.ended || due <= self.ended_s + TIMER_WAIT_S).then_some(due)
    }

    /// Timers that are due become turns, unless a reply is under way.
    fn sound_timers(&mut self) {
        if !self.open.is_empty() {
            return;
        }
        let now_s = self.clock.secs();
        let due = self.timers().take_due(now_s);
        for t in due {
            let turn = self.next_turn;
            self.next_turn += 1;
            let text = timers::done_notice(&t);
            info!(
                "turn {turn}: {} went off ({:.1} s late)",
                t.label,
                (now_s - t.due_s).max(0.0)
            );
            let mut report = TurnReport::new(turn, now_s);
            report.reply = text.clone();
            report.skill = Some(SkillAnswer {
                intent: Intent::TimerDone,
                slots: BTreeMap::from([
                    ("label".to_string(), t.label.clone()),
                    ("set_s".to_string(), format!("{:.2}", t.set_s)),
                    ("due_s".to_string(), format!("{:.2}", t.due_s)),
                ]),
                answer: text.clone(),
            });
            self.open.insert(
                turn,
                Open {
                    report,
                    t0: Instant::now(),
                    replied: true,
                    spoken: false,
                    detected: None,
                },
            );
            self.outbox.push_back(ToSpeech::Notice { turn, text });
        }
    }

    /// How long the loop may wait for an event before a timer or the outbox needs it.
    fn wait(&self) -> Option<Duration> {
        let timer = self
            .next_timer()
            .filter(|_| self.open.is_empty())
            .map(|due| self.clock.until(due));
        let outbox = (!self.outbox.is_empty()).then_some(Duration::from_millis(10));
        // The follow-up window is watched on the listener's stream.
        let window = self
            .attention
            .as_ref()
            .filter(|a| a.listening() || !self.presses.is_empty())
            .map(|_| Duration::from_millis(20));
        [timer, outbox, window].into_iter().flatten().min()
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
            if self.ended
                && self.open.is_empty()
                && self.outbox.is_empty()
                && self.next_timer().is_none()
            {
                for t in self.timers().running() {
                    warn!(
                        "the input ended; {} (due in {:.0} s) is dropped",
                        t.label,
                        t.due_s - self.clock.secs()
                    );
                }
                return Ok(());
            }
            if max_turns.is_some_and(|m| self.reports.len() >= m) {
                return Ok(());
            }
            let ev = match self.wait() {
                None => Some(
                    events
                        .recv()
                        .map_err(|_| anyhow!("the assistant's threads stopped"))?,
                ),
                Some(d) => match events.recv_timeout(d) {
                    Ok(ev) => Some(ev),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(anyhow!("the assistant's threads stopped"));
                    }
                },
            };
            if let Some(ev) = ev {
                self.handle(ev, origin)?;
            }
            self.check_window();
            self.sound_timers();
            while let Some(msg) = self.outbox.pop_front() {
                match self.speech.try_send(msg) {
                    Ok(()) => {}
                    Err(TrySendError::Full(msg)) => {
                        self.outbox.push_front(msg);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        return Err(anyhow!("the speaking thread stopped"));
                    }
                }
            }
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
                let soon = self
                    .next_timer()
                    .is_some_and(|due| due <= self.clock.secs() + TIMER_WAIT_S);
                b.store(!self.open.is_empty() || soon, Ordering::Release);
            }
        }
    }

    fn handle(&mut self, ev: Ev, origin: &Path) -> Result<()> {
        match ev {
            Ev::Heard(h) => {
                match h.with_context(|| format!("listening to {}", origin.display()))? {
                    Heard::SpeechStart { at_s, detected } => {
                        if let Some(a) = self.attention.as_mut() {
                            a.speech_started(at_s);
                        }
                        self.interrupt(at_s, detected)
                    }
                    Heard::Wake(d) => {
                        info!(
                            "wake phrase {:?} ({:.2}) at {:.2} s",
                            d.head, d.score, d.at_s
                        );
                        if let Some(a) = self.attention.as_mut() {
                            a.woke(d.at_s);
                            if self.earcons && self.open.is_empty() {
                                self.outbox.push_back(ToSpeech::Earcon(Earcon::Listening));
                            }
                        }
                        self.last_wake = Some(d);
                    }
                    Heard::Utterance(mut u) => {
                        let mut wake = None;
                        if let Some(a) = self.attention.as_mut() {
                            match a.utterance(u.start_s, u.end_s, !self.open.is_empty()) {
                                Verdict::Ignore => {
                                    self.ignored += 1;
                                    info!(
                                        "not addressed (no wake phrase): {:.2}-{:.2} s ignored",
                                        u.start_s, u.end_s
                                    );
                                    return Ok(());
                                }
                                Verdict::WakeOnly => {
                                    info!("the wake phrase alone: listening for the question");
                                    return Ok(());
                                }
                                Verdict::Turn { skip_s, woken } => {
                                    let skip = ((skip_s * 16_000.0) as usize).min(u.samples.len());
                                    u.samples.drain(..skip);
                                    u.start_s += skip as f64 / 16_000.0;
                                    if woken {
                                        wake = self.last_wake.take();
                                    }
                                }
                            }
                        }
                        let turn = self.next_turn;
                        self.next_turn += 1;
                        info!(
                            "turn {turn}: heard {:.2}-{:.2} s ({} ms of speech)",
                            u.start_s, u.end_s, u.speech_ms
                        );
                        let heard_s = self.clock.secs();
                        let mut report = TurnReport::new(turn, heard_s);
                        report.speech_start_s = u.start_s;
                        report.speech_end_s = u.end_s;
                        report.wake = wake;
                        self.open.insert(
                            turn,
                            Open {
                                report,
                                t0: Instant::now(),
                                replied: false,
                                spoken: false,
                                detected: None,
                            },
                        );
                        self.waiting.push_back(Job {
                            turn,
                            samples: u.samples,
                            heard_s,
                        });
                    }
                    Heard::End {
                        samples,
                        echo_gated,
                        wake_time,
                        ..
                    } => {
                        let secs = samples as f64 / 16_000.0;
                        info!(
                            "input ended after {secs:.1} s; echo guard held back {echo_gated} windows"
                        );
                        if self.attention.is_some() {
                            info!(
                                "wake word: {:.1} ms of CPU per second of audio; {} utterances \
                                 not addressed to the assistant",
                                ms(wake_time) / secs.max(1e-9),
                                self.ignored
                            );
                        }
                        self.ended = true;
                        self.ended_s = self.clock.secs();
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
            Ev::Press => {
                let at_s = self.stream_s();
                self.press(at_s);
            }
            Ev::Spoken { turn, at, played_s } => {
                let now_s = self.stream_s();
                if let Some(a) = self.attention.as_mut() {
                    a.reply_ended(now_s);
                }
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

#[cfg(test)]
mod tests {
    //! The conductor driven by scripted events on a fast clock (100 session seconds a real
    //! one), with the test playing the thinking and speaking threads.
    use std::sync::mpsc::{self, Receiver, SyncSender};
    use std::thread::JoinHandle;

    use super::*;
    use crate::vad::endpoint::{EndReason, Utterance};

    const SPEED: f64 = 100.0;

    struct Rig {
        events: SyncSender<Ev>,
        jobs: Receiver<Job>,
        speech: Receiver<ToSpeech>,
        timers: SharedTimers,
        clock: Clock,
        run: JoinHandle<Result<Vec<TurnReport>>>,
    }

    fn rig() -> Rig {
        let (ev_tx, events) = mpsc::sync_channel::<Ev>(64);
        let (job_tx, jobs) = mpsc::sync_channel::<Job>(2);
        let (speech_tx, speech) = mpsc::sync_channel::<ToSpeech>(16);
        let timers = SharedTimers::default();
        let clock = Clock::system().with_speed(SPEED);
        let opts = LoopOptions::default();
        let mut c = Conductor::new(
            Cancel::default(),
            None,
            speech_tx,
            clock.clone(),
            timers.clone(),
            &opts,
        );
        let run = std::thread::spawn(move || {
            c.run(&events, &job_tx, Path::new("script"), None, &mut |_| {})?;
            Ok(c.into_reports())
        });
        Rig {
            events: ev_tx,
            jobs,
            speech,
            timers,
            clock,
            run,
        }
    }

    fn heard(h: Heard) -> Ev {
        Ev::Heard(Ok(h))
    }

    fn end() -> Ev {
        heard(Heard::End {
            samples: 16_000,
            vad_time: Duration::ZERO,
            echo_gated: 0,
            wake_time: Duration::ZERO,
        })
    }

    fn utterance() -> Ev {
        heard(Heard::Utterance(Utterance {
            samples: vec![0.0; 1600],
            start_s: 0.0,
            end_s: 0.1,
            speech_ms: 100,
            reason: EndReason::Silence,
        }))
    }

    fn spoken(turn: usize) -> Ev {
        Ev::Spoken {
            turn,
            at: Instant::now(),
            played_s: 1.0,
        }
    }

    fn replied(turn: usize) -> Ev {
        Ev::Replied {
            turn,
            text: "Paris.".into(),
            stop: None,
            error: None,
            notice: None,
            skill: None,
            at: Instant::now(),
        }
    }

    fn notice(rx: &Receiver<ToSpeech>, within: Duration) -> Option<(usize, String)> {
        match rx.recv_timeout(within) {
            Ok(ToSpeech::Notice { turn, text }) => Some((turn, text)),
            Ok(_) => panic!("the conductor sent speech other than a notice"),
            Err(_) => None,
        }
    }

    #[test]
    fn a_timer_goes_off_on_the_session_clock_and_the_session_waits_for_it() {
        let r = rig();
        let set_s = r.clock.secs();
        r.timers.lock().unwrap().set(None, 5.0, set_s);
        r.events.send(end()).unwrap();
        let (turn, text) = notice(&r.speech, Duration::from_secs(5)).expect("a notice");
        assert_eq!(text, "The 5 second timer is done.");
        let late = r.clock.secs() - (set_s + 5.0);
        assert!((0.0..2.0).contains(&late), "went off {late} s late");
        r.events.send(spoken(turn)).unwrap();
        let reports = r.run.join().unwrap().unwrap();
        assert_eq!(reports.len(), 1);
        let skill = reports[0].skill.as_ref().unwrap();
        assert_eq!(skill.intent, Intent::TimerDone);
        assert!(reports[0].opened_s >= set_s + 5.0, "{:?}", reports[0]);
        assert_eq!(reports[0].reply, text);
    }

    #[test]
    fn a_due_timer_waits_for_the_reply_under_way_then_has_its_own_turn() {
        let r = rig();
        r.events.send(utterance()).unwrap();
        let job = r.jobs.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(job.turn, 1);
        // Due at once, but turn 1 is being answered.
        r.timers
            .lock()
            .unwrap()
            .set(Some("tea"), 1.0, job.heard_s - 1.0);
        assert_eq!(notice(&r.speech, Duration::from_millis(200)), None);
        r.events.send(replied(1)).unwrap();
        assert_eq!(notice(&r.speech, Duration::from_millis(200)), None);
        r.events.send(spoken(1)).unwrap();
        let (turn, text) = notice(&r.speech, Duration::from_secs(5)).expect("a notice");
        assert_eq!((turn, text.as_str()), (2, "The tea timer is done."));
        r.events.send(spoken(2)).unwrap();
        r.events.send(end()).unwrap();
        let reports = r.run.join().unwrap().unwrap();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].reply, "Paris.");
        assert_eq!(reports[1].skill.as_ref().unwrap().intent, Intent::TimerDone);
    }

    #[test]
    fn timers_past_the_wait_are_dropped_when_the_input_ends() {
        let r = rig();
        let now = r.clock.secs();
        r.timers.lock().unwrap().set(None, 3600.0, now);
        let started = Instant::now();
        r.events.send(end()).unwrap();
        let reports = r.run.join().unwrap().unwrap();
        assert!(reports.is_empty());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(notice(&r.speech, Duration::ZERO).is_none());
    }
}
