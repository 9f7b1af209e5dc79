//! Earcons: short tones that tell the user what the assistant is doing without words.

use std::f32::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Earcon {
    /// Rising two notes: the assistant is listening.
    Listening,
    /// One soft note: the reply is over.
    TurnEnd,
    /// Falling two notes: something went wrong (a short spoken message follows).
    Error,
    /// Two low falling notes: the follow-up window closed, the wake word is needed again.
    Asleep,
    /// Three bright notes, twice: a timer or alarm went off (a spoken notice follows).
    Timer,
}

impl Earcon {
    /// The earcon's notes: (frequency in Hz, milliseconds).
    fn notes(self) -> &'static [(f32, u32)] {
        match self {
            Earcon::Listening => &[(660.0, 70), (880.0, 90)],
            Earcon::TurnEnd => &[(523.0, 80)],
            Earcon::Error => &[(440.0, 90), (330.0, 120)],
            Earcon::Asleep => &[(392.0, 60), (294.0, 90)],
            Earcon::Timer => &[
                (988.0, 80),
                (1319.0, 80),
                (988.0, 80),
                (0.0, 120),
                (988.0, 80),
                (1319.0, 80),
                (988.0, 80),
            ],
        }
    }

    /// The tone at `rate`: sine notes at a quarter of full scale, each with 5 ms fades so
    /// nothing clicks.
    pub fn samples(self, rate: u32) -> Vec<f32> {
        let fade = (rate as f32 * 0.005) as usize;
        let mut out = Vec::new();
        for &(freq, ms) in self.notes() {
            let n = (rate as u64 * ms as u64 / 1000) as usize;
            out.extend((0..n).map(|i| {
                let env = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
                0.25 * env * (2.0 * PI * freq * i as f32 / rate as f32).sin()
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tones_are_short_quiet_and_start_and_end_at_zero() {
        for e in [
            Earcon::Listening,
            Earcon::TurnEnd,
            Earcon::Error,
            Earcon::Timer,
        ] {
            for rate in [16_000, 22_050, 48_000] {
                let s = e.samples(rate);
                let secs = s.len() as f32 / rate as f32;
                let longest = if e == Earcon::Timer { 0.7 } else { 0.3 };
                assert!((0.05..longest).contains(&secs), "{e:?}: {secs} s");
                let peak = s.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                assert!((0.2..=0.25).contains(&peak), "{e:?}: peak {peak}");
                assert!(s[0].abs() < 1e-6 && s[s.len() - 1].abs() < 0.01);
            }
        }
    }
}
