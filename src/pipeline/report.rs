//! What a turn reports: its transcript and reply, the timeline of its stages, barge-in and
//! memory. Serialized as the JSON lines `edgevox run --report` writes.

use serde::Serialize;

use crate::llm::StopReason;
use crate::skills::SkillAnswer;
use crate::wake::Detection;

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
    /// When the turn opened, in session seconds: the utterance was complete, or a timer went
    /// off (on a replay, seconds of the replay's clock).
    pub opened_s: f64,
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
    /// The skill that answered, with its intent and slots (the model was not asked); a
    /// timer's own turn has the intent `timer_done`.
    pub skill: Option<SkillAnswer>,
    /// The wake phrase that opened this turn (with a wake word on; a follow-up has none).
    pub wake: Option<Detection>,
}

impl TurnReport {
    /// A turn with nothing in it yet.
    pub fn new(turn: usize, opened_s: f64) -> TurnReport {
        TurnReport {
            turn,
            opened_s,
            speech_start_s: 0.0,
            speech_end_s: 0.0,
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
            wake: None,
        }
    }
}
