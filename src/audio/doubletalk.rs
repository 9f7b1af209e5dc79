//! Double-talk detection (Geigel's rule): is someone talking over the speaker?
//!
//! The speaker's echo reaches the microphone attenuated by the device's coupling. A
//! microphone block whose peak is above `ratio` times the loudest the speaker played over the
//! echo path's span cannot be the echo alone: someone is talking. `ratio` must exceed the
//! speaker-to-microphone coupling (the board profile's `echo_ratio`).
//!
//! Two parts of hearing ask this question: the echo canceller (learn the echo path only while
//! the speaker alone is heard, [`super::aec`]) and the listener's echo guard (a window counts
//! as the user's speech only if it is double talk, [`crate::listen::EchoGuard`]).

/// Geigel's double-talk rule for one speaker-to-microphone coupling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geigel {
    pub ratio: f32,
}

impl Geigel {
    /// A speaker peak below this (about -60 dBFS) is silence: nothing to be mistaken for.
    pub const QUIET: f32 = 1e-3;

    pub fn new(ratio: f32) -> Self {
        Self { ratio }
    }

    /// True when a microphone block with peak `mic` is louder than the speaker's echo could
    /// be, `speaker` being the loudest peak the speaker played over the echo path's span.
    #[inline]
    pub fn talking_over(&self, mic: f32, speaker: f32) -> bool {
        mic > self.ratio * speaker
    }

    /// True when the microphone block may be the speaker's echo alone: the speaker was
    /// audible and the microphone no louder than its echo could be.
    #[inline]
    pub fn may_be_echo(&self, mic: f32, speaker: f32) -> bool {
        speaker >= Self::QUIET && !self.talking_over(mic, speaker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_alone_is_not_double_talk_and_a_louder_voice_is() {
        let g = Geigel::new(0.6);
        // The speaker at 0.5, its echo at 0.25 (coupling 0.5 < 0.6): echo.
        assert!(!g.talking_over(0.25, 0.5) && g.may_be_echo(0.25, 0.5));
        // The user at 0.4 over it: double talk.
        assert!(g.talking_over(0.4, 0.5) && !g.may_be_echo(0.4, 0.5));
        // A silent speaker: nothing on the microphone can be its echo.
        assert!(!g.may_be_echo(0.0, 0.0) && !g.may_be_echo(1e-4, 5e-4));
    }
}
