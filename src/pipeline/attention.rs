//! Whom the assistant answers when a wake word is on: a pure state machine on the listener's
//! stream seconds, so it is tested without models or clocks.
//!
//! Asleep, an utterance is a turn only when the wake phrase was heard in it ("hey jarvis what
//! time is it", in one breath: the turn gets the audio after the phrase) or shortly before it
//! ("hey jarvis" … "what time is it"). While a reply is under way every utterance is a turn
//! (so "stop" works without the wake phrase). After a reply, a follow-up window stays open:
//! an utterance that starts in it is a turn too. When the window passes unused the assistant
//! is asleep again (the conductor sounds an earcon).

/// Where one utterance stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Not addressed to the assistant: no turn.
    Ignore,
    /// The wake phrase and nothing after it: no turn, but the question may follow.
    WakeOnly,
    /// A turn; its audio starts `skip_s` seconds into the utterance (after the wake phrase);
    /// `woken`: the wake phrase opened it (rather than a reply under way or a follow-up).
    Turn { skip_s: f64, woken: bool },
}

const FOLLOW_UP: Verdict = Verdict::Turn {
    skip_s: 0.0,
    woken: false,
};

#[derive(Debug, Clone)]
pub struct Attention {
    follow_up_s: f64,
    /// An utterance needs this much audio after the wake phrase to be a question (the
    /// endpointer's closing silence plus a short word).
    min_question_s: f64,
    /// The last wake phrase not yet used by an utterance (stream seconds at its end).
    woke_at_s: Option<f64>,
    /// Utterances starting before this are turns (the follow-up window, or the wait for
    /// the question after a wake phrase alone).
    listen_until_s: Option<f64>,
    /// Someone started speaking inside the window: it stays open until their utterance ends.
    held: bool,
    /// The wake came from push-to-talk: nothing of the utterance is the phrase.
    pressed: bool,
}

impl Attention {
    /// `follow_up_s`: how long after a reply (or a wake phrase alone) an utterance may start
    /// and still be a turn; `end_silence_s`: the silence the endpointer waits for before it
    /// closes an utterance (part of every utterance's tail).
    pub fn new(follow_up_s: f64, end_silence_s: f64) -> Attention {
        Attention {
            follow_up_s: follow_up_s.max(0.0),
            min_question_s: end_silence_s + 0.25,
            woke_at_s: None,
            listen_until_s: None,
            held: false,
            pressed: false,
        }
    }

    /// The push-to-talk key went down at `at_s`: as a wake phrase that takes no audio (an
    /// utterance under way, or starting soon, is the question whole).
    pub fn pressed(&mut self, at_s: f64) {
        self.woke_at_s = Some(at_s);
        self.pressed = true;
    }

    /// Speech began at `at_s` (before its utterance is complete): one that began inside the
    /// window keeps it open until the utterance arrives.
    pub fn speech_started(&mut self, at_s: f64) {
        if self.listen_until_s.is_some_and(|until| at_s <= until) {
            self.held = true;
        }
    }

    /// The wake phrase ended at `at_s`.
    pub fn woke(&mut self, at_s: f64) {
        self.woke_at_s = Some(at_s);
        self.pressed = false;
    }

    /// A reply (or a timer's notice) ended at `at_s`: the follow-up window opens.
    pub fn reply_ended(&mut self, at_s: f64) {
        self.listen_until_s = Some(at_s + self.follow_up_s);
    }

    /// Whether an utterance may still start as a follow-up.
    pub fn listening(&self) -> bool {
        self.listen_until_s.is_some()
    }

    /// True once, when the window has passed at `now_s` with nothing said in it.
    pub fn window_closed(&mut self, now_s: f64) -> bool {
        match self.listen_until_s {
            Some(until) if now_s > until && !self.held => {
                self.listen_until_s = None;
                true
            }
            _ => false,
        }
    }

    /// An utterance from `start_s` to `end_s`; `answering`: a reply is under way.
    pub fn utterance(&mut self, start_s: f64, end_s: f64, answering: bool) -> Verdict {
        self.held = false;
        if let Some(w) = self.woke_at_s {
            if w > start_s && w <= end_s {
                self.woke_at_s = None;
                if std::mem::take(&mut self.pressed) {
                    self.listen_until_s = None;
                    return Verdict::Turn {
                        skip_s: 0.0,
                        woken: true,
                    };
                }
                if end_s - w < self.min_question_s {
                    // "Hey Jarvis." and a pause: wait for the question.
                    self.listen_until_s = Some(end_s + self.follow_up_s);
                    return Verdict::WakeOnly;
                }
                self.listen_until_s = None;
                return Verdict::Turn {
                    skip_s: w - start_s,
                    woken: true,
                };
            }
            if w <= start_s && start_s <= w + self.follow_up_s {
                self.woke_at_s = None;
                self.listen_until_s = None;
                return Verdict::Turn {
                    skip_s: 0.0,
                    woken: true,
                };
            }
            if w <= start_s {
                // Heard long before this utterance: stale.
                self.woke_at_s = None;
            }
        }
        if answering {
            return FOLLOW_UP;
        }
        if self.listen_until_s.is_some_and(|until| start_s <= until) {
            self.listen_until_s = None;
            return FOLLOW_UP;
        }
        Verdict::Ignore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attention() -> Attention {
        Attention::new(8.0, 0.6)
    }

    #[test]
    fn asleep_only_an_utterance_with_the_wake_phrase_is_a_turn() {
        let mut a = attention();
        assert_eq!(a.utterance(1.0, 3.0, false), Verdict::Ignore);
        a.woke(5.0);
        // "Hey Jarvis, what time is it?" from 4.2 to 7.0: the turn starts after the phrase.
        assert_eq!(
            a.utterance(4.2, 7.0, false),
            Verdict::Turn {
                skip_s: 5.0 - 4.2,
                woken: true
            }
        );
        // The wake phrase is used up: the next utterance (no reply ended yet) is ignored.
        assert_eq!(a.utterance(20.0, 22.0, false), Verdict::Ignore);
    }

    #[test]
    fn a_wake_phrase_alone_waits_for_the_question() {
        let mut a = attention();
        a.woke(2.0);
        assert_eq!(a.utterance(1.0, 2.5, false), Verdict::WakeOnly);
        assert_eq!(a.utterance(4.0, 6.0, false), FOLLOW_UP);
        // Detected after its own utterance had closed: the next one is the question.
        a.woke(10.2);
        assert_eq!(
            a.utterance(11.0, 13.0, false),
            Verdict::Turn {
                skip_s: 0.0,
                woken: true
            }
        );
        // Too long after the phrase.
        a.woke(20.0);
        assert_eq!(a.utterance(30.0, 32.0, false), Verdict::Ignore);
    }

    #[test]
    fn the_follow_up_window_opens_after_a_reply_and_closes_once() {
        let mut a = attention();
        a.reply_ended(10.0);
        assert!(a.listening());
        assert!(!a.window_closed(17.0));
        assert_eq!(a.utterance(17.5, 19.0, false), FOLLOW_UP);
        // Speech that began in the window holds it open until its utterance ends.
        a.reply_ended(20.0);
        a.speech_started(27.5);
        assert!(!a.window_closed(29.0));
        assert_eq!(a.utterance(27.4, 29.5, false), FOLLOW_UP);
        a.reply_ended(25.0);
        a.speech_started(33.1);
        assert!(a.window_closed(33.5));
        assert!(!a.window_closed(34.0), "told once");
        assert_eq!(a.utterance(34.0, 36.0, false), Verdict::Ignore);
    }

    #[test]
    fn a_press_takes_no_audio_from_the_question() {
        let mut a = attention();
        // Pressed just after speech began (the pre-roll is before it): the whole utterance.
        a.pressed(3.3);
        assert_eq!(
            a.utterance(3.0, 4.0, false),
            Verdict::Turn {
                skip_s: 0.0,
                woken: true
            }
        );
        assert_eq!(a.utterance(10.0, 11.0, false), Verdict::Ignore);
        a.pressed(20.0);
        assert_eq!(
            a.utterance(21.0, 23.0, false),
            Verdict::Turn {
                skip_s: 0.0,
                woken: true
            }
        );
    }

    #[test]
    fn during_a_reply_everything_is_heard() {
        let mut a = attention();
        assert_eq!(a.utterance(3.0, 4.0, true), FOLLOW_UP);
    }
}
