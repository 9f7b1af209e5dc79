//! The messages the assistant's threads exchange over bounded channels: jobs for the thinking
//! thread, work for the speaking thread, and what both tell the conductor.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Result;

use crate::listen::Heard;
use crate::llm::StopReason;
use crate::skills::SkillAnswer;
use crate::tts::earcon::Earcon;

/// Jobs for the thinking thread.
pub struct Job {
    pub turn: usize,
    pub samples: Vec<f32>,
    /// When the utterance was complete, in session seconds (a timer it sets counts from here).
    pub heard_s: f64,
}

/// Work for the speaking thread.
pub enum ToSpeech {
    Earcon(Earcon),
    Chunk {
        turn: usize,
        text: String,
    },
    EndTurn {
        turn: usize,
    },
    /// A whole turn of the conductor's own: the timer earcon (played even with earcons off),
    /// then `text`, then the turn's end.
    Notice {
        turn: usize,
        text: String,
    },
}

/// What the threads tell the conductor.
pub enum Ev {
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
        /// Answered by a skill, not the model.
        skill: Option<SkillAnswer>,
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
    /// The push-to-talk key went down.
    Press,
}

/// Turns numbered up to this are interrupted.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicUsize>);

impl Cancel {
    pub fn is(&self, turn: usize) -> bool {
        turn <= self.0.load(Ordering::SeqCst)
    }
    pub fn upto(&self, turn: usize) {
        self.0.fetch_max(turn, Ordering::SeqCst);
    }
}
