//! The whole assistant: hearing → thinking → speaking, each on its own thread, joined by
//! bounded channels, with barge-in.
//!
//! ```text
//!  device ─► listen thread ──(wake, speech start, utterance)──► conductor (calling thread)
//!            wake word, VAD,                                  │ jobs          ▲ events
//!            endpointer, echo guard                           ▼               │
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
//!
//! With a wake word, [`attention`] decides which utterances are turns (the wake phrase, a
//! reply under way, the follow-up window after one); without it every utterance is.
//!
//! One file per thread of it: [`events`] (the messages between the threads), [`conductor`]
//! (the turns and barge-in), [`think`] (Whisper → LLM), [`speak`] (voice → player),
//! [`report`] (what a turn reports) and [`session`] (wiring them up, live or from a file).

pub mod attention;
pub mod conductor;
pub mod events;
pub mod report;
pub mod session;
pub mod speak;
pub mod think;

pub use report::{BargeIn, Timeline, TurnReport};
pub use session::{Brain, Hearing, LoopOptions, converse, replay};
pub use speak::Output;

/// Said when nothing was understood.
pub const NOTICE_NOT_UNDERSTOOD: &str = "Sorry, I didn't catch that.";
/// Said when thinking failed.
pub const NOTICE_FAILED: &str = "Sorry, something went wrong.";
