//! The speaking thread: voices the reply's chunks into the player (or prints them when there
//! is no speaker), plays the earcons, and reports when each turn's audio has played.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use anyhow::Result;
use log::error;

use super::events::{Cancel, Ev, ToSpeech};
use crate::audio::playback::{Played, Player};
use crate::tts::earcon::Earcon;
use crate::tts::{self, Voice};

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

/// The speaking thread: voices chunks into the player (or prints them), and reports when
/// each turn's audio has been played.
pub fn speak(
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
            ToSpeech::EndTurn { turn } => mouth.finish(turn, cancel, events),
            // A timer's turn: the alarm earcon, then its sentence; the turn's played seconds
            // count both (the earcon is queued before the first chunk is).
            ToSpeech::Notice { turn, text } => {
                if !cancel.is(turn) {
                    mouth.alarm();
                    mouth.chunk(turn, &text, cancel, events);
                }
                mouth.finish(turn, cancel, events);
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
        if self.earcons {
            self.tone(e);
        }
    }

    /// The timer earcon: it plays whether or not earcons are on, since it is the alarm.
    fn alarm(&mut self) {
        self.tone(Earcon::Timer);
    }

    fn tone(&mut self, e: Earcon) {
        if let Output::Speaker { player, .. } = &mut self.output {
            let epoch = player.shared().epoch();
            let rate = player.rate();
            if let Err(err) = player.play(&e.samples(rate), rate, epoch) {
                self.fall_back(err);
            }
        }
    }

    /// The turn's audio has played (or was dropped): the conductor hears so.
    fn finish(&mut self, turn: usize, cancel: &Cancel, events: &SyncSender<Ev>) {
        let played_s = self.end_turn(turn, cancel, events);
        let _ = events.send(Ev::Spoken {
            turn,
            at: Instant::now(),
            played_s,
        });
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
    let rate = player.rate();
    let samples = tts::render(voice, text, Some(rate))?.samples;
    if interrupted() {
        return Ok(());
    }
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
