//! Skills: what a 135M-parameter model cannot know or must not guess — the time, the date,
//! the day, sums, units of time, timers and alarms — answered by code, before the language
//! model is asked.
//!
//! The phrasings are data (`phrases.txt`, one `intent: pattern` per line, checked when the
//! skills are built; [`Skills::parse`] takes a board's own file the same way). A transcript
//! matches a pattern only as a whole, after [`crate::text::words`] normalization and with
//! fillers ("hey", "okay", "please", "thanks") around it ignored, so "What time is it?" and
//! "what time is it" meet, and "what is the time zone of Japan" falls through to the model.

pub mod spoken;
pub mod timers;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use jiff::civil::DateTime;
use serde::Serialize;

/// The phrasings edgevox ships.
pub const PHRASES: &str = include_str!("phrases.txt");

/// What a transcript asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Time,
    Date,
    Day,
    Sum,
    Units,
    Help,
    /// "Stop", "never mind": the reply is dropped and nothing is said.
    Stop,
    /// "Repeat that": the last reply again.
    Repeat,
    /// "Set a timer for 5 minutes" (slots: `for`, optional `name`).
    Timer,
    /// "How much time is left" (optional `name`).
    TimerLeft,
    /// "Cancel the timer" (optional `name`; `all` for every one).
    TimerCancel,
    /// "What timers are set".
    TimerList,
    /// "Set an alarm for 7 30 am" (slot `at`).
    Alarm,
    /// "Cancel the alarm" (`all` for every one).
    AlarmCancel,
    /// A timer or alarm went off (the conductor's turn, not something the user said).
    TimerDone,
    /// "Louder", "turn it up".
    VolumeUp,
    /// "Quieter", "turn the volume down".
    VolumeDown,
    /// "Set the volume to 7" (0-10) or "to 70 percent" (slot `a`).
    VolumeSet,
}

/// The intents a phrases file may name.
const INTENT_NAMES: &str = "time, date, day, sum, units, help, stop, repeat, timer, timer_left, \
                            timer_cancel, timer_list, alarm, alarm_cancel, volume_up, volume_down, volume_set";

impl Intent {
    fn from_name(s: &str) -> Option<Intent> {
        Some(match s {
            "time" => Intent::Time,
            "date" => Intent::Date,
            "day" => Intent::Day,
            "sum" => Intent::Sum,
            "units" => Intent::Units,
            "help" => Intent::Help,
            "stop" => Intent::Stop,
            "repeat" => Intent::Repeat,
            "timer" => Intent::Timer,
            "timer_left" => Intent::TimerLeft,
            "timer_cancel" => Intent::TimerCancel,
            "timer_list" => Intent::TimerList,
            "alarm" => Intent::Alarm,
            "alarm_cancel" => Intent::AlarmCancel,
            "volume_up" => Intent::VolumeUp,
            "volume_down" => Intent::VolumeDown,
            "volume_set" => Intent::VolumeSet,
            _ => return None,
        })
    }
}

/// A matched skill: the intent, its slots and the spoken answer (the turn report's `skill`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkillAnswer {
    pub intent: Intent,
    pub slots: BTreeMap<String, String>,
    pub answer: String,
}

/// The session's clock: seconds since the session began ([`Clock::secs`], what timers run
/// on), and the local time ([`Clock::now`]): the system's, or a given start time advanced by
/// the session's seconds (a replay's clock, so a test knows what "what time is it" must
/// answer). A replay played `speed` times faster runs its clock that much faster too.
#[derive(Debug, Clone)]
pub struct Clock {
    origin: Instant,
    speed: f64,
    wall: Option<DateTime>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system's local time; seconds from now.
    pub fn system() -> Clock {
        Clock {
            origin: Instant::now(),
            speed: 1.0,
            wall: None,
        }
    }

    /// A clock that reads `start` now and runs from here.
    pub fn starting_at(start: DateTime) -> Clock {
        Clock {
            wall: Some(start),
            ..Clock::system()
        }
    }

    /// The same clock running `speed` times faster than real time (a fast replay).
    pub fn with_speed(self, speed: f64) -> Clock {
        Clock {
            speed: if speed > 0.0 && speed.is_finite() {
                speed
            } else {
                1.0
            },
            ..self
        }
    }

    /// The same clock, its seconds (and a given start time) counted from now: a session
    /// starts its clock when it starts listening.
    pub fn restarted(&self) -> Clock {
        Clock {
            origin: Instant::now(),
            ..self.clone()
        }
    }

    /// Seconds since the clock started, on its own time.
    pub fn secs(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * self.speed
    }

    /// Real time from now until the clock reads `secs` (zero once it has).
    pub fn until(&self, secs: f64) -> Duration {
        Duration::from_secs_f64(((secs - self.secs()) / self.speed).clamp(0.0, 86_400.0 * 365.0))
    }

    pub fn now(&self) -> DateTime {
        match self.wall {
            None => jiff::Zoned::now().datetime(),
            Some(start) => {
                let since =
                    jiff::SignedDuration::try_from_secs_f64(self.secs()).unwrap_or_default();
                start.checked_add(since).unwrap_or(start)
            }
        }
    }
}

/// What a skill reads and changes while it answers.
pub struct Ask<'a> {
    /// The local time.
    pub now: DateTime,
    /// When the request was heard, in session seconds (timers count from then).
    pub at_s: f64,
    /// What was said last, for "repeat that".
    pub last_reply: Option<&'a str>,
    pub timers: &'a mut timers::Timers,
    /// The speaker's volume; `None` without a speaker (replies printed).
    pub volume: Option<&'a crate::audio::volume::Volume>,
}

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// One of these words; optional or not.
    Words { any: Vec<String>, optional: bool },
    /// A number, into the named slot.
    Number(String),
    /// An arithmetic operator (one or two words).
    Op,
    /// A unit of time, into the named slot.
    Unit(String),
    /// A length of time ("5 minutes", "an hour and a half"), in seconds into `for`.
    Duration,
    /// A clock time ("7 30 am", "half past 6"), into `at`.
    ClockTime,
    /// A timer's name, one to three words, into `name`.
    Name,
    /// "all", "every" or "both": the request is for every timer (slot `all`).
    All,
    /// "percent" or "per cent" after a number (slot `percent`).
    Percent,
}

#[derive(Debug, Clone)]
struct Pattern {
    intent: Intent,
    parts: Vec<Part>,
}

/// The compiled phrasings.
#[derive(Debug, Clone)]
pub struct Skills {
    patterns: Vec<Pattern>,
}

/// Words ignored before a request.
const LEADING: [&str; 10] = [
    "hey", "hi", "ok", "okay", "so", "um", "uh", "please", "can", "could",
];
/// Words ignored after one.
const TRAILING: [&str; 2] = ["please", "thanks"];

impl Skills {
    /// The phrasings edgevox ships.
    pub fn builtin() -> Skills {
        Skills::parse("phrases.txt (built in)", PHRASES).expect("the built-in phrases parse")
    }

    /// Compiles `text` (the format of `phrases.txt`); `origin` names it in errors, which give
    /// the line.
    pub fn parse(origin: &str, text: &str) -> Result<Skills> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("{origin}, line {}", i + 1);
            let Some((name, pattern)) = line.split_once(':') else {
                bail!("{}: expected `intent: pattern`, got {line:?}", at());
            };
            let Some(intent) = Intent::from_name(name.trim()) else {
                bail!(
                    "{}: unknown intent {:?} ({INTENT_NAMES})",
                    at(),
                    name.trim()
                );
            };
            let parts = parse_pattern(pattern).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
            let needs: &[&str] = match intent {
                Intent::Sum => &["{a}", "{op}", "{b}"],
                Intent::Units => &["{small}", "{big}"],
                Intent::Alarm => &["{at}"],
                _ => &[],
            };
            for n in needs {
                if !pattern.contains(n) {
                    bail!("{}: a `{name}` pattern needs the slot {n}", at());
                }
            }
            patterns.push(Pattern { intent, parts });
        }
        if patterns.is_empty() {
            bail!("{origin}: no patterns");
        }
        Ok(Skills { patterns })
    }

    /// The skill `transcript` asks for, answered with what `ask` holds (timers it sets or
    /// cancels change there); `None` when it asks for something else (the model answers it).
    /// A [`Intent::Stop`] answer is empty: nothing is said.
    pub fn answer(&self, transcript: &str, ask: &mut Ask<'_>) -> Option<SkillAnswer> {
        // "70%" is said "70 percent" (the normalizer drops the sign).
        let words = request_words(&transcript.replace('%', " percent"));
        let mut core = strip_fillers(&words);
        if core.is_empty() {
            return None;
        }
        // Whisper sometimes writes a short request twice ("Turn the volume to 3. Turn the
        // volume to 3."): one of them is the request.
        let half = core.len() / 2;
        if core.len().is_multiple_of(2) && core[..half] == core[half..] {
            core = &core[..half];
        }
        for p in &self.patterns {
            let mut slots = BTreeMap::new();
            // "Cancel the timers" is all of them.
            if matches!(p.intent, Intent::TimerCancel | Intent::AlarmCancel)
                && core.last().is_some_and(|w| w == "timers" || w == "alarms")
            {
                slots.insert("all".into(), "all".into());
            }
            if matches(&p.parts, core, &mut slots)
                && let Some(answer) = respond(p.intent, &slots, ask)
            {
                return Some(SkillAnswer {
                    intent: p.intent,
                    slots,
                    answer,
                });
            }
        }
        None
    }
}

fn parse_pattern(pattern: &str) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    // Group brackets first, so "[what's|what is]" is one element.
    let mut rest = pattern.trim();
    while !rest.is_empty() {
        let (token, tail) = if let Some(open @ ('[' | '(' | '{')) = rest.chars().next() {
            let close = match open {
                '[' => ']',
                '(' => ')',
                _ => '}',
            };
            let Some(end) = rest.find(close) else {
                bail!("`{open}` without `{close}` in {pattern:?}");
            };
            (&rest[..=end], &rest[end + 1..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        rest = tail.trim_start();
        let inner = if token.starts_with(['[', '(', '{']) {
            &token[1..token.len() - 1]
        } else {
            token
        };
        let part = match token.chars().next() {
            Some('{') => match inner {
                "a" | "b" => Part::Number(inner.into()),
                "op" => Part::Op,
                "small" | "big" => Part::Unit(inner.into()),
                "for" => Part::Duration,
                "at" => Part::ClockTime,
                "name" => Part::Name,
                "all" => Part::All,
                "percent" => Part::Percent,
                other => bail!("unknown slot {{{other}}} in {pattern:?}"),
            },
            Some(c @ ('[' | '(')) => {
                let any: Vec<String> = inner.split('|').map(|w| w.trim().to_string()).collect();
                if any.iter().any(|w| w.is_empty()) {
                    bail!("an empty choice in {token:?}");
                }
                Part::Words {
                    any,
                    optional: c == '[',
                }
            }
            _ => {
                if token.contains([']', ')', '}', '|']) {
                    bail!("a stray bracket or `|` in {token:?}");
                }
                Part::Words {
                    any: vec![token.to_string()],
                    optional: false,
                }
            }
        };
        parts.push(part);
    }
    if parts.is_empty() {
        bail!("an empty pattern");
    }
    Ok(parts)
}

/// The transcript's words, with symbols Whisper writes for operators spelled out first.
fn request_words(transcript: &str) -> Vec<String> {
    let mut t = String::with_capacity(transcript.len() + 16);
    let chars: Vec<char> = transcript.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '+' => t.push_str(" plus "),
            '×' | '*' => t.push_str(" times "),
            '÷' | '/' => t.push_str(" divided by "),
            '−' => t.push_str(" minus "),
            // A hyphen with a space on either side is a minus ("5 - 3"), not "twenty-five".
            '-' if chars.get(i + 1) == Some(&' ') || (i > 0 && chars[i - 1] == ' ') => {
                t.push_str(" minus ")
            }
            _ => t.push(c),
        }
    }
    crate::text::words(&t)
}

fn strip_fillers(words: &[String]) -> &[String] {
    let mut s = words;
    while let Some((first, rest)) = s.split_first() {
        // "can you tell me the time" → "tell me the time"; "could you" likewise.
        if LEADING.contains(&first.as_str()) {
            s = rest;
            if s.first().is_some_and(|w| w == "you") {
                s = &s[1..];
            }
        } else {
            break;
        }
    }
    while let Some((last, rest)) = s.split_last() {
        if TRAILING.contains(&last.as_str()) {
            s = rest;
        } else if last == "you" && rest.last().is_some_and(|w| w == "thank") {
            s = &rest[..rest.len() - 1];
        } else {
            break;
        }
    }
    s
}

fn matches(parts: &[Part], words: &[String], slots: &mut BTreeMap<String, String>) -> bool {
    let Some((part, rest)) = parts.split_first() else {
        return words.is_empty();
    };
    match part {
        Part::Words { any, optional } => {
            for choice in any {
                let n = choice.split(' ').count();
                if words.len() >= n
                    && choice.split(' ').zip(words).all(|(c, w)| c == w)
                    && matches(rest, &words[n..], slots)
                {
                    return true;
                }
            }
            *optional && matches(rest, words, slots)
        }
        Part::Number(name) => match words.first() {
            Some(w) if w.parse::<f64>().is_ok_and(f64::is_finite) => {
                slots.insert(name.clone(), w.clone());
                matches(rest, &words[1..], slots) || {
                    slots.remove(name);
                    false
                }
            }
            _ => false,
        },
        Part::Op => {
            for (spelled, op) in OPS {
                let n = spelled.split(' ').count();
                if words.len() >= n
                    && spelled.split(' ').zip(words).all(|(c, w)| c == w)
                    && matches(rest, &words[n..], slots)
                {
                    slots.insert("op".into(), op.to_string());
                    return true;
                }
            }
            false
        }
        Part::Duration => span(1, 8, words, rest, slots, "for", |ws| {
            spoken::duration(ws).map(number)
        }),
        Part::ClockTime => span(1, 8, words, rest, slots, "at", |ws| {
            spoken::clock_time(ws).map(|_| ws.join(" "))
        }),
        Part::Name => span(1, 3, words, rest, slots, "name", |ws| {
            let plain = ws.iter().all(|w| {
                !NOT_NAMES.contains(&w.as_str()) && !w.starts_with(|c: char| c.is_ascii_digit())
            });
            plain.then(|| ws.join(" "))
        }),
        Part::All => match words.first().map(String::as_str) {
            Some("all" | "every" | "both") if matches(rest, &words[1..], slots) => {
                slots.insert("all".into(), "all".into());
                true
            }
            _ => false,
        },
        Part::Percent => {
            let n = match (
                words.first().map(String::as_str),
                words.get(1).map(String::as_str),
            ) {
                (Some("percent"), _) => 1,
                (Some("per"), Some("cent")) => 2,
                _ => return false,
            };
            slots.insert("percent".into(), "percent".into());
            matches(rest, &words[n..], slots) || {
                slots.remove("percent");
                false
            }
        }
        Part::Unit(name) => match words.first().and_then(|w| unit_seconds(w)) {
            Some(_) => {
                slots.insert(name.clone(), words[0].clone());
                matches(rest, &words[1..], slots) || {
                    slots.remove(name);
                    false
                }
            }
            None => false,
        },
    }
}

/// Words a timer's name does not take ("set a timer for ..." has no name "timer for").
const NOT_NAMES: [&str; 13] = [
    "a", "an", "the", "my", "timer", "timers", "alarm", "for", "called", "named", "on", "and",
    "all",
];

/// Matches `first..=last` words at the front of `words` (shortest first) that `read` turns
/// into a slot value, with `rest` matching what follows.
fn span(
    first: usize,
    last: usize,
    words: &[String],
    rest: &[Part],
    slots: &mut BTreeMap<String, String>,
    slot: &str,
    read: impl Fn(&[String]) -> Option<String>,
) -> bool {
    for n in first..=last.min(words.len()) {
        if let Some(value) = read(&words[..n])
            && matches(rest, &words[n..], slots)
        {
            slots.insert(slot.into(), value);
            return true;
        }
    }
    false
}

/// Operator spellings and the operator they mean.
const OPS: [(&str, char); 10] = [
    ("plus", '+'),
    ("and", '+'),
    ("minus", '-'),
    ("less", '-'),
    ("times", '*'),
    ("x", '*'),
    ("multiplied by", '*'),
    ("divided by", '/'),
    ("over", '/'),
    ("into", '/'),
];

fn unit_seconds(word: &str) -> Option<u64> {
    Some(match word.trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 604_800,
        _ => return None,
    })
}

fn unit_name(word: &str) -> &str {
    word.trim_end_matches('s')
}

fn respond(intent: Intent, slots: &BTreeMap<String, String>, ask: &mut Ask<'_>) -> Option<String> {
    use timers::Kind;
    let now = ask.now;
    let name = slots.get("name").map(String::as_str);
    let all = slots.contains_key("all");
    Some(match intent {
        Intent::Time => {
            let (h, m) = (now.hour(), now.minute());
            let h12 = match h % 12 {
                0 => 12,
                x => x,
            };
            let half = if h < 12 { "AM" } else { "PM" };
            format!("It's {h12}:{m:02} {half}.")
        }
        Intent::Date => format!(
            "Today is {}, {} {}, {}.",
            weekday(now),
            month(now),
            now.day(),
            now.year()
        ),
        Intent::Day => format!("Today is {}.", weekday(now)),
        Intent::Sum => {
            let a: f64 = slots.get("a")?.parse().ok()?;
            let b: f64 = slots.get("b")?.parse().ok()?;
            let op = slots.get("op")?.chars().next()?;
            let (value, said) = match op {
                '+' => (a + b, "plus"),
                '-' => (a - b, "minus"),
                '*' => (a * b, "times"),
                _ => {
                    if b == 0.0 {
                        return Some("I can't divide by zero.".into());
                    }
                    (a / b, "divided by")
                }
            };
            format!("{} {said} {} is {}.", number(a), number(b), number(value))
        }
        Intent::Units => {
            let small = slots.get("small")?;
            let big = slots.get("big")?;
            let (s, b) = (unit_seconds(small)?, unit_seconds(big)?);
            let (sn, bn) = (unit_name(small), unit_name(big));
            if s >= b {
                format!("A {sn} is not shorter than a {bn}.")
            } else {
                let article = if bn == "hour" { "an" } else { "a" };
                format!("There are {} {sn}s in {article} {bn}.", b / s)
            }
        }
        Intent::Stop => String::new(),
        Intent::Timer => match slots.get("for") {
            Some(secs) => ask.timers.set(name, secs.parse().ok()?, ask.at_s),
            None => "For how long? Say, for example: set a timer for 5 minutes.".into(),
        },
        Intent::TimerLeft => ask.timers.left(name, ask.at_s),
        Intent::TimerCancel => ask.timers.cancel(name, Kind::Timer, all),
        Intent::TimerList => ask.timers.list(ask.at_s),
        Intent::Alarm => {
            let said = spoken::clock_time(&crate::text::words(slots.get("at")?))?;
            let (in_s, label) = spoken::next_occurrence(now, said)?;
            ask.timers.alarm(&label, in_s, ask.at_s)
        }
        Intent::AlarmCancel => ask.timers.cancel(None, Kind::Alarm, all),
        // Not something a user says: the conductor words it.
        Intent::TimerDone => return None,
        Intent::Repeat => match ask.last_reply {
            Some(r) if !r.trim().is_empty() => r.to_string(),
            _ => "I haven't said anything yet.".into(),
        },
        Intent::VolumeUp | Intent::VolumeDown | Intent::VolumeSet => {
            let Some(v) = ask.volume else {
                return Some("I have no speaker to change the volume of.".into());
            };
            use crate::audio::volume::STEP;
            let level = match intent {
                Intent::VolumeUp => v.step(STEP),
                Intent::VolumeDown => v.step(-STEP),
                _ => {
                    let n: f64 = slots.get("a")?.parse().ok()?;
                    if !(0.0..=100.0).contains(&n) {
                        return Some("The volume goes from 0 to 10, or 0 to 100 percent.".into());
                    }
                    // "to 7" is out of ten; "to 70" (or "70 percent") is percent.
                    let said_percent = slots.contains_key("percent") || n > 10.0;
                    v.set(if said_percent { n } else { n * 10.0 }.round() as i32)
                }
            };
            format!("Volume {level} percent.")
        }
        Intent::Help => "I can tell you the time, the date and the day of the week, set \
                         timers and alarms, do sums, change my volume, and answer short \
                         questions."
            .into(),
    })
}

/// A number as said: whole numbers without a decimal point, others to four places at most.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn weekday(d: DateTime) -> &'static str {
    use jiff::civil::Weekday::*;
    match d.weekday() {
        Monday => "Monday",
        Tuesday => "Tuesday",
        Wednesday => "Wednesday",
        Thursday => "Thursday",
        Friday => "Friday",
        Saturday => "Saturday",
        Sunday => "Sunday",
    }
}

fn month(d: DateTime) -> &'static str {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    NAMES[(d.month() as usize).clamp(1, 12) - 1]
}

#[cfg(test)]
mod tests;
