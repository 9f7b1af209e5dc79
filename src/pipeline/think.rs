//! The thinking thread: Whisper on each utterance, then the model's reply streamed in
//! sentence-sized chunks to the speaking thread.

use crate::audio::volume::Volume;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use log::{error, info, warn};

use super::conductor::SharedTimers;
use super::events::{Cancel, Ev, Job, ToSpeech};
use super::{NOTICE_FAILED, NOTICE_NOT_UNDERSTOOD};
use crate::asr::{AsrOptions, Recognizer};
use crate::llm::Chat;
use crate::skills::{Ask, Clock, Skills};
use crate::tts::chunk::Chunker;
use crate::tts::earcon::Earcon;

/// The thinking thread: transcribes each utterance and streams the reply, chunked, to the
/// speaking thread: a skill's answer when one of `skills` matches (read at `clock`'s time;
/// timers set in `timers`), else the model's.
#[allow(clippy::too_many_arguments)]
pub fn think(
    jobs: Receiver<Job>,
    whisper: &mut dyn Recognizer,
    asr: &AsrOptions,
    chat: &mut Chat,
    skills: Option<&Skills>,
    clock: &Clock,
    timers: &SharedTimers,
    volume: Option<&Volume>,
    cancel: &Cancel,
    to_speech: &SyncSender<ToSpeech>,
    events: &SyncSender<Ev>,
) {
    // What was said last, for "repeat that".
    let mut last_reply: Option<String> = None;
    for Job {
        turn,
        samples,
        heard_s,
    } in jobs
    {
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
            skill: None,
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
                skill: None,
                at: Instant::now(),
            };
        } else if let Some(answer) = skills.and_then(|s| {
            let mut timers = timers.lock().unwrap_or_else(|e| e.into_inner());
            s.answer(
                &text,
                &mut Ask {
                    now: clock.now(),
                    at_s: heard_s,
                    last_reply: last_reply.as_deref(),
                    timers: &mut timers,
                    volume,
                },
            )
        }) {
            info!(
                "turn {turn}: the {:?} skill answers: {:?}",
                answer.intent, answer.answer
            );
            let _ = events.send(Ev::FirstToken {
                turn,
                at: Instant::now(),
            });
            let mut chunker = Chunker::new();
            let mut chunks = chunker.push(&answer.answer);
            chunks.extend(chunker.finish());
            for c in chunks {
                let _ = to_speech.send(ToSpeech::Chunk { turn, text: c });
            }
            if !answer.answer.is_empty() {
                last_reply = Some(answer.answer.clone());
            }
            reply = Ev::Replied {
                turn,
                text: answer.answer.clone(),
                stop: None,
                error: None,
                notice: None,
                skill: Some(answer),
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
                    if !r.text.is_empty() {
                        last_reply = Some(r.text.clone());
                    }
                    Ev::Replied {
                        turn,
                        text: r.text,
                        stop: Some(r.stop),
                        error: None,
                        notice: None,
                        skill: None,
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
                        skill: None,
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
