//! Timers and alarms: what is set, when each is due, and what is said about them.
//!
//! A pure state machine on the session's clock ([`super::Clock::secs`]): the thinking thread
//! sets, cancels and asks about timers through [`super::Skills::answer`]; the conductor asks
//! [`Timers::next_due`] how long it may wait and takes the ones that are due with
//! [`Timers::take_due`]. Nothing here reads a clock, so tests drive it with plain numbers.

use std::fmt::Write;

/// The longest timer edgevox sets: a day. Longer is refused in words.
pub const MAX_TIMER_S: f64 = 24.0 * 3600.0;
/// How many timers and alarms can run at once.
pub const MAX_TIMERS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Timer,
    Alarm,
}

/// One running timer or alarm.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Timer {
    pub id: u32,
    pub kind: Kind,
    /// The user's name for it ("pasta"), if they gave one.
    pub name: Option<String>,
    /// How it is spoken of: "the 5 minute timer", "the pasta timer", "the 7:30 AM alarm".
    pub label: String,
    /// When it was set and when it is due, in session seconds.
    pub set_s: f64,
    pub due_s: f64,
}

/// The timers and alarms that are running.
#[derive(Debug, Default)]
pub struct Timers {
    running: Vec<Timer>,
    next_id: u32,
}

impl Timers {
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Sets a timer of `secs` at session time `now_s`; the answer confirms it, or refuses a
    /// length of zero, one above [`MAX_TIMER_S`] or one timer too many.
    pub fn set(&mut self, name: Option<&str>, secs: f64, now_s: f64) -> String {
        if secs.is_nan() || secs < 1.0 {
            return "A timer needs at least one second.".into();
        }
        if secs > MAX_TIMER_S {
            return "I can only set timers of up to 24 hours.".into();
        }
        if self.running.len() >= MAX_TIMERS {
            return format!("I can only keep {MAX_TIMERS} timers at once.");
        }
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        if let Some(n) = name
            && self.running.iter().any(|t| t.name.as_deref() == Some(n))
        {
            return format!("There is already a {n} timer.");
        }
        let length = say_duration(secs);
        let label = match name {
            Some(n) => format!("the {n} timer"),
            None => format!("the {} timer", say_duration_adjective(secs)),
        };
        self.push(Kind::Timer, name, label, now_s, now_s + secs);
        match name {
            Some(n) => format!("OK, a {n} timer for {length}, starting now."),
            None => format!("OK, {length}, starting now."),
        }
    }

    /// Sets an alarm due `in_s` from `now_s`, spoken of as `at` ("7:30 AM").
    pub fn alarm(&mut self, at: &str, in_s: f64, now_s: f64) -> String {
        if self.running.len() >= MAX_TIMERS {
            return format!("I can only keep {MAX_TIMERS} timers and alarms at once.");
        }
        if self
            .running
            .iter()
            .any(|t| t.kind == Kind::Alarm && (t.due_s - (now_s + in_s)).abs() < 30.0)
        {
            return format!("There is already an alarm at {at}.");
        }
        self.push(
            Kind::Alarm,
            None,
            format!("the {at} alarm"),
            now_s,
            now_s + in_s,
        );
        format!(
            "OK, an alarm at {at}, {} from now.",
            say_duration(round_to_minute(in_s))
        )
    }

    fn push(&mut self, kind: Kind, name: Option<&str>, label: String, set_s: f64, due_s: f64) {
        self.next_id += 1;
        self.running.push(Timer {
            id: self.next_id,
            kind,
            name: name.map(str::to_string),
            label,
            set_s,
            due_s,
        });
        self.running.sort_by(|a, b| a.due_s.total_cmp(&b.due_s));
    }

    /// Cancels the timer called `name`, the only one, or (`all`) every one.
    pub fn cancel(&mut self, name: Option<&str>, kind: Kind, all: bool) -> String {
        let of_kind = |t: &Timer| t.kind == kind;
        let noun = noun(kind);
        if all {
            let n = self.running.iter().filter(|t| of_kind(t)).count();
            self.running.retain(|t| !of_kind(t));
            return match n {
                0 => format!("There are no {noun}s to cancel."),
                1 => format!("OK, the {noun} is cancelled."),
                n => format!("OK, {n} {noun}s cancelled."),
            };
        }
        match self.pick(name, kind) {
            Pick::One(i) => {
                let t = self.running.remove(i);
                format!("OK, {} is cancelled.", t.label)
            }
            Pick::None => match name {
                Some(n) => format!("There is no {n} {noun}."),
                None => format!("There is no {noun} to cancel."),
            },
            Pick::Several(n) => {
                format!("There are {n} {noun}s. Say which one, or cancel all {noun}s.")
            }
        }
    }

    /// How long is left on the timer called `name` (or the only one; or each, in order).
    pub fn left(&self, name: Option<&str>, now_s: f64) -> String {
        match self.pick(name, Kind::Timer) {
            Pick::One(i) => {
                let t = &self.running[i];
                format!("{} left on {}.", cap(&say_left(t.due_s - now_s)), t.label)
            }
            Pick::None => match name {
                Some(n) => format!("There is no {n} timer."),
                None => "There is no timer running.".into(),
            },
            Pick::Several(_) => self.list(now_s),
        }
    }

    /// Every running timer and alarm, soonest first.
    pub fn list(&self, now_s: f64) -> String {
        match self.running.as_slice() {
            [] => "There are no timers or alarms set.".into(),
            all => {
                let mut s = match all.len() {
                    1 => "There is one: ".to_string(),
                    n => format!("There are {n}: "),
                };
                for (i, t) in all.iter().enumerate() {
                    if i > 0 {
                        s.push_str(if i + 1 == all.len() { " and " } else { ", " });
                    }
                    let _ = write!(s, "{} with {} left", t.label, say_left(t.due_s - now_s));
                }
                s.push('.');
                s
            }
        }
    }

    /// When the next one is due, in session seconds.
    pub fn next_due(&self) -> Option<f64> {
        self.running.first().map(|t| t.due_s)
    }

    /// Removes and returns those due at `now_s`, soonest first.
    pub fn take_due(&mut self, now_s: f64) -> Vec<Timer> {
        let n = self.running.iter().take_while(|t| t.due_s <= now_s).count();
        self.running.drain(..n).collect()
    }

    pub fn running(&self) -> &[Timer] {
        &self.running
    }

    fn pick(&self, name: Option<&str>, kind: Kind) -> Pick {
        let found: Vec<usize> = self
            .running
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == kind && name.is_none_or(|n| t.name.as_deref() == Some(n)))
            .map(|(i, _)| i)
            .collect();
        match found.as_slice() {
            [] => Pick::None,
            [i] => Pick::One(*i),
            more => Pick::Several(more.len()),
        }
    }
}

enum Pick {
    None,
    One(usize),
    Several(usize),
}

/// What is said when `t` goes off.
pub fn done_notice(t: &Timer) -> String {
    match t.kind {
        Kind::Timer => format!("{} is done.", cap(&t.label)),
        Kind::Alarm => format!("It's time: {} is going off.", t.label),
    }
}

fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::Timer => "timer",
        Kind::Alarm => "alarm",
    }
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn round_to_minute(secs: f64) -> f64 {
    (secs / 60.0).round().max(1.0) * 60.0
}

/// Hours, minutes and seconds of `secs` (rounded to the second).
fn hms(secs: f64) -> (u64, u64, u64) {
    let s = secs.max(0.0).round() as u64;
    (s / 3600, s / 60 % 60, s % 60)
}

/// "5 minutes", "1 hour and 30 minutes", "1 minute and 5 seconds".
pub fn say_duration(secs: f64) -> String {
    let (h, m, s) = hms(secs);
    let mut parts = Vec::new();
    for (n, unit) in [(h, "hour"), (m, "minute"), (s, "second")] {
        if n > 0 {
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
        }
    }
    match parts.len() {
        0 => "0 seconds".into(),
        1 => parts.remove(0),
        _ => {
            let last = parts.pop().unwrap_or_default();
            format!("{} and {last}", parts.join(", "))
        }
    }
}

/// "5 minute", "90 second", "1 hour 30 minute": as in "the 5 minute timer".
fn say_duration_adjective(secs: f64) -> String {
    let (h, m, s) = hms(secs);
    let mut parts = Vec::new();
    for (n, unit) in [(h, "hour"), (m, "minute"), (s, "second")] {
        if n > 0 {
            parts.push(format!("{n} {unit}"));
        }
    }
    parts.join(" ")
}

/// Time left, said to the second under two minutes and to the minute above.
fn say_left(secs: f64) -> String {
    if secs < 120.0 {
        say_duration(secs.max(0.0).ceil())
    } else {
        format!("about {}", say_duration(round_to_minute(secs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_is_confirmed_and_due_at_its_length() {
        let mut t = Timers::new();
        assert_eq!(t.set(None, 300.0, 10.0), "OK, 5 minutes, starting now.");
        assert_eq!(t.next_due(), Some(310.0));
        assert!(t.take_due(309.9).is_empty());
        let due = t.take_due(310.0);
        assert_eq!(due.len(), 1);
        assert_eq!(done_notice(&due[0]), "The 5 minute timer is done.");
        assert_eq!(t.next_due(), None);
    }

    #[test]
    fn zero_ten_years_and_one_too_many_are_refused_in_words() {
        let mut t = Timers::new();
        assert!(t.set(None, 0.0, 0.0).contains("at least one second"));
        assert!(t.set(None, f64::NAN, 0.0).contains("at least one second"));
        assert!(
            t.set(None, 10.0 * 365.0 * 86_400.0, 0.0)
                .contains("24 hours")
        );
        assert!(t.running().is_empty());
        for i in 0..MAX_TIMERS {
            t.set(None, 60.0 + i as f64, 0.0);
        }
        assert!(t.set(None, 5.0, 0.0).contains("only keep"));
        assert_eq!(t.running().len(), MAX_TIMERS);
    }

    #[test]
    fn overlapping_timers_go_off_in_order_and_are_told_apart() {
        let mut t = Timers::new();
        t.set(Some("pasta"), 600.0, 0.0);
        t.set(None, 60.0, 5.0);
        assert!(t.set(Some("pasta"), 60.0, 5.0).contains("already"));
        assert_eq!(t.next_due(), Some(65.0));
        assert_eq!(
            t.list(5.0),
            "There are 2: the 1 minute timer with 1 minute left and \
             the pasta timer with about 10 minutes left."
        );
        assert!(t.left(None, 5.0).starts_with("There are 2"));
        assert_eq!(
            t.left(Some("pasta"), 30.0),
            "About 10 minutes left on the pasta timer."
        );
        assert!(t.cancel(None, Kind::Timer, false).contains("Say which one"));
        assert_eq!(
            t.cancel(Some("pasta"), Kind::Timer, false),
            "OK, the pasta timer is cancelled."
        );
        assert_eq!(t.left(None, 20.0), "45 seconds left on the 1 minute timer.");
        let due = t.take_due(1000.0);
        assert_eq!(due.len(), 1);
        assert!(t.cancel(None, Kind::Timer, false).contains("no timer"));
    }

    #[test]
    fn cancelling_all_and_alarms_apart_from_timers() {
        let mut t = Timers::new();
        t.set(None, 60.0, 0.0);
        t.set(None, 120.0, 0.0);
        assert_eq!(
            t.alarm("7:30 AM", 3600.0, 0.0),
            "OK, an alarm at 7:30 AM, 1 hour from now."
        );
        assert!(t.alarm("7:30 AM", 3600.0, 0.0).contains("already"));
        assert_eq!(t.cancel(None, Kind::Timer, true), "OK, 2 timers cancelled.");
        assert_eq!(t.running().len(), 1);
        assert_eq!(
            t.cancel(None, Kind::Alarm, false),
            "OK, the 7:30 AM alarm is cancelled."
        );
        assert_eq!(t.list(0.0), "There are no timers or alarms set.");
    }

    #[test]
    fn durations_are_said_as_people_say_them() {
        assert_eq!(say_duration(1.0), "1 second");
        assert_eq!(say_duration(90.0), "1 minute and 30 seconds");
        assert_eq!(
            say_duration(3600.0 + 120.0 + 1.0),
            "1 hour, 2 minutes and 1 second"
        );
        assert_eq!(say_duration_adjective(5400.0), "1 hour 30 minute");
        assert_eq!(say_left(0.2), "1 second");
        assert_eq!(say_left(3599.0), "about 1 hour");
    }
}
