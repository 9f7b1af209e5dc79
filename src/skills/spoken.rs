//! Lengths of time and clock times as a transcript says them, after [`crate::text::words`]
//! (number words are digits already): "5 minutes", "an hour and a half", "1 minute and 30
//! seconds", "half an hour"; "7 30 am", "half past 6", "a quarter to 7", "noon".

use jiff::civil::{DateTime, Time};

fn is(w: Option<&String>, any: &[&str]) -> bool {
    w.is_some_and(|w| any.contains(&w.as_str()))
}

fn unit_secs(w: &str) -> Option<f64> {
    Some(match w {
        "second" | "seconds" | "sec" | "secs" => 1.0,
        "minute" | "minutes" | "min" | "mins" => 60.0,
        "hour" | "hours" | "hr" | "hrs" => 3600.0,
        "day" | "days" => 86_400.0,
        "week" | "weeks" => 604_800.0,
        "year" | "years" => 31_536_000.0,
        _ => return None,
    })
}

/// A count: a number, or "a"/"an" (one).
fn count(w: &str) -> Option<f64> {
    match w {
        "a" | "an" => Some(1.0),
        _ => w.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0),
    }
}

/// "and a half" at the front of `ws`: its length in words.
fn and_a_half(ws: &[String]) -> usize {
    match ws {
        [a, b, c, ..] if a == "and" && b == "a" && c == "half" => 3,
        _ => 0,
    }
}

/// One "N unit" term at the front of `ws`, with its seconds and the words it took.
fn term(ws: &[String]) -> Option<(f64, usize)> {
    // "half an hour", "half a minute"
    if ws.first().is_some_and(|w| w == "half") && is(ws.get(1), &["a", "an"]) {
        return Some((0.5 * unit_secs(ws.get(2)?)?, 3));
    }
    let n = count(ws.first()?)?;
    let mut at = 1;
    // "2 and a half minutes"
    let mut half = and_a_half(&ws[at..]);
    at += half;
    let unit = unit_secs(ws.get(at)?)?;
    at += 1;
    // "a minute and a half"
    if half == 0 {
        half = and_a_half(&ws[at..]);
        at += half;
    }
    let n = if half > 0 { n + 0.5 } else { n };
    Some((n * unit, at))
}

/// The seconds `ws` says, all of it: "5 minutes", "1 hour and 30 minutes", "an hour and a
/// half", "90 seconds", "2 minutes 10 seconds"; `None` when any word is not part of one.
pub fn duration(ws: &[String]) -> Option<f64> {
    let (mut secs, mut at) = term(ws)?;
    while at < ws.len() {
        if ws[at] == "and" {
            at += 1;
        }
        let (s, n) = term(&ws[at..])?;
        secs += s;
        at += n;
    }
    Some(secs)
}

/// Morning or afternoon, when the user said which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    Am,
    Pm,
}

/// A clock time as said: hours 0–23 (or 1–12 with or without a [`Half`]), minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Said {
    pub hour: u8,
    pub minute: u8,
    pub half: Option<Half>,
}

fn small(w: &str, max: u8) -> Option<u8> {
    w.parse::<u8>().ok().filter(|x| *x <= max)
}

/// The clock time `ws` says, all of it: "7", "7 30", "7 30 am", "7 a m", "7 o'clock", "19
/// 30", "7.30", "half past 6", "a quarter to 7", "10 past 7", "noon", "midnight", "6 in the
/// morning", "8 tonight".
pub fn clock_time(ws: &[String]) -> Option<Said> {
    let w: Vec<&str> = ws.iter().map(String::as_str).collect();
    // The half of the day, at the end.
    let (w, half) = match w.as_slice() {
        [rest @ .., "a", "m"] | [rest @ .., "am"] | [rest @ .., "in", "the", "morning"] => {
            (rest.to_vec(), Some(Half::Am))
        }
        [rest @ .., "p", "m"]
        | [rest @ .., "pm"]
        | [rest @ .., "in", "the", "afternoon" | "evening"]
        | [rest @ .., "at", "night"]
        | [rest @ .., "tonight"] => (rest.to_vec(), Some(Half::Pm)),
        _ => (w, None),
    };
    let w: Vec<&str> = match w.as_slice() {
        [rest @ .., "o'clock" | "oclock"] | [rest @ .., "o", "clock"] => rest.to_vec(),
        _ => w,
    };
    let said = |hour: u8, minute: u8| {
        // "13 pm" is not a time; "0 am" is not said either.
        let ok = match half {
            Some(_) => (1..=12).contains(&hour),
            None => hour <= 23,
        };
        ok.then_some(Said { hour, minute, half })
    };
    match w.as_slice() {
        ["noon"] | ["midday"] if half.is_none() => Some(Said {
            hour: 12,
            minute: 0,
            half: Some(Half::Pm),
        }),
        ["midnight"] if half.is_none() => Some(Said {
            hour: 12,
            minute: 0,
            half: Some(Half::Am),
        }),
        [h] => match h.split_once('.') {
            Some((h, m)) if m.len() == 2 => said(small(h, 23)?, small(m, 59)?),
            Some(_) => None,
            None => said(small(h, 23)?, 0),
        },
        [h, m] => said(small(h, 23)?, small(m, 59)?),
        // "7 oh 5"
        [h, "oh" | "o", m] => said(small(h, 23)?, small(m, 9)?),
        [rest @ .., "past" | "after", h] | [rest @ .., "to" | "before", h] => {
            let to = !matches!(w[w.len() - 2], "past" | "after");
            let m = match rest {
                ["half"] | ["a", "half"] if !to => 30,
                ["quarter"] | ["a", "quarter"] => 15,
                [m] | [m, "minutes" | "minute"] => small(m, 59).filter(|m| *m > 0)?,
                _ => return None,
            };
            let h = small(h, 23)?;
            if to {
                // "a quarter to 7" is 6:45; "to 12" of midnight or noon is 11:xx.
                let h = if h == 0 { 23 } else { h - 1 };
                let h = if h == 0 && half.is_some() { 12 } else { h };
                said(h, 60 - m)
            } else {
                said(h, m)
            }
        }
        _ => None,
    }
}

/// The next time after `now` the clock shows `said`, with the seconds until then and how it
/// is spoken ("7:30 AM"). A time without AM/PM ("7") is the sooner of 7:00 and 19:00, and a
/// 24-hour one ("19 30") is itself.
pub fn next_occurrence(now: DateTime, said: Said) -> Option<(f64, String)> {
    let hours: Vec<u8> = match (said.half, said.hour) {
        (Some(Half::Am), h) => vec![h % 12],
        (Some(Half::Pm), h) => vec![h % 12 + 12],
        (None, h) if (1..=12).contains(&h) => vec![h % 12, h % 12 + 12],
        (None, h) => vec![h],
    };
    let mut best: Option<DateTime> = None;
    for h in hours {
        let t = Time::new(h as i8, said.minute as i8, 0, 0).ok()?;
        let mut at = now.date().to_datetime(t);
        if at <= now {
            at = at.checked_add(jiff::Span::new().days(1)).ok()?;
        }
        if best.is_none_or(|b| at < b) {
            best = Some(at);
        }
    }
    let at = best?;
    let secs = now.duration_until(at).as_secs_f64();
    let h12 = match at.hour() % 12 {
        0 => 12,
        x => x,
    };
    let half = if at.hour() < 12 { "AM" } else { "PM" };
    Some((secs, format!("{h12}:{:02} {half}", at.minute())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        crate::text::words(s)
    }

    #[test]
    fn lengths_of_time_as_said() {
        for (said, secs) in [
            ("five minutes", 300.0),
            ("1 minute", 60.0),
            ("a minute", 60.0),
            ("an hour", 3600.0),
            ("90 seconds", 90.0),
            ("one and a half hours", 5400.0),
            ("an hour and a half", 5400.0),
            ("half an hour", 1800.0),
            ("two minutes and thirty seconds", 150.0),
            ("1 hour 10 minutes", 4200.0),
            ("twenty-five minutes", 1500.0),
            ("1.5 minutes", 90.0),
            ("ten years", 315_360_000.0),
            ("0 seconds", 0.0),
        ] {
            assert_eq!(duration(&w(said)), Some(secs), "{said}");
        }
        for said in [
            "five",
            "minutes",
            "a pasta",
            "5 minutes pasta",
            "and 5 minutes",
            "",
        ] {
            assert_eq!(duration(&w(said)), None, "{said}");
        }
    }

    #[test]
    fn clock_times_as_said() {
        let am = Some(Half::Am);
        let pm = Some(Half::Pm);
        for (said, hour, minute, half) in [
            ("7", 7, 0, None),
            ("7:30", 7, 30, None),
            ("7:30 a.m.", 7, 30, am),
            ("7 30 pm", 7, 30, pm),
            ("seven o'clock", 7, 0, None),
            ("7.45 am", 7, 45, am),
            ("19:30", 19, 30, None),
            ("half past six", 6, 30, None),
            ("a quarter past six in the evening", 6, 15, pm),
            ("quarter to seven", 6, 45, None),
            ("ten to 7 am", 6, 50, am),
            ("twenty past eight tonight", 8, 20, pm),
            ("noon", 12, 0, pm),
            ("midnight", 12, 0, am),
            ("a quarter to 1 pm", 12, 45, pm),
            ("6 in the morning", 6, 0, am),
        ] {
            assert_eq!(
                clock_time(&w(said)),
                Some(Said { hour, minute, half }),
                "{said}"
            );
        }
        for said in [
            "25",
            "7 61",
            "13 pm",
            "half to 7",
            "the morning",
            "7 30 tomorrow",
        ] {
            assert_eq!(clock_time(&w(said)), None, "{said}");
        }
    }

    #[test]
    fn the_next_time_the_clock_shows_it() {
        let now: DateTime = "2026-12-05T21:07".parse().unwrap();
        let at = |s: &str| next_occurrence(now, clock_time(&w(s)).unwrap()).unwrap();
        assert_eq!(at("7 am"), (10.0 * 3600.0 - 7.0 * 60.0, "7:00 AM".into()));
        // Without AM/PM: 9:30 PM tonight is sooner than 9:30 AM.
        assert_eq!(at("9 30"), (23.0 * 60.0, "9:30 PM".into()));
        assert_eq!(at("9 pm").1, "9:00 PM");
        assert!((at("9 pm").0 - (24.0 * 3600.0 - 7.0 * 60.0)).abs() < 1e-6);
        assert_eq!(
            at("midnight"),
            (2.0 * 3600.0 + 53.0 * 60.0, "12:00 AM".into())
        );
        assert_eq!(at("21:10"), (180.0, "9:10 PM".into()));
    }
}
