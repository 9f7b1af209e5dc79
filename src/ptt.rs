//! Push-to-talk: a key or a button wakes the assistant as the wake phrase does (the next
//! utterance, or the one under way, is a turn). Boards expose buttons and GPIO keys through
//! Linux evdev (`/dev/input/eventN`); a terminal's Enter key works too, and a replay takes
//! scripted presses at seconds of its input.

use std::io::BufRead;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use log::{info, warn};

/// Where presses come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Ptt {
    /// Each line on standard input is a press (Enter).
    Stdin,
    /// Key-down events of an evdev device; only `key` (e.g. `KEY_SPACE`, `BTN_0`) when given.
    Evdev { path: PathBuf, key: Option<u16> },
    /// Presses at these seconds of the input (replays and tests).
    At(Vec<f64>),
}

impl FromStr for Ptt {
    type Err = anyhow::Error;

    /// `stdin`, `at:2.5,10` or `/dev/input/eventN[:KEY_NAME]`.
    fn from_str(s: &str) -> Result<Ptt> {
        if s == "stdin" {
            return Ok(Ptt::Stdin);
        }
        if let Some(list) = s.strip_prefix("at:") {
            let mut at = Vec::new();
            for t in list.split(',') {
                let v: f64 = t
                    .trim()
                    .parse()
                    .with_context(|| format!("--ptt {s:?}: {t:?} is not seconds"))?;
                if !(v.is_finite() && v >= 0.0) {
                    bail!("--ptt {s:?}: {t:?} is not seconds");
                }
                at.push(v);
            }
            at.sort_by(f64::total_cmp);
            return Ok(Ptt::At(at));
        }
        if s.starts_with('/') {
            let (path, key) = match s.rsplit_once(':') {
                Some((p, k)) => {
                    let code = evdev::KeyCode::from_str(k).map_err(|_| {
                        anyhow::anyhow!(
                            "--ptt {s:?}: {k:?} is not an evdev key name (KEY_SPACE, BTN_0, …)"
                        )
                    })?;
                    (p, Some(code.code()))
                }
                None => (s, None),
            };
            return Ok(Ptt::Evdev {
                path: PathBuf::from(path),
                key,
            });
        }
        bail!("--ptt {s:?}: expected stdin, at:SECONDS,... or /dev/input/eventN[:KEY]")
    }
}

impl Ptt {
    /// Starts reading presses on a thread of their own, calling `press` for each; `At` needs
    /// no thread (the conductor plays its script). A device that cannot be opened is an error
    /// naming it.
    pub fn spawn(&self, press: impl Fn() + Send + 'static) -> Result<()> {
        match self {
            Ptt::At(_) => Ok(()),
            Ptt::Stdin => {
                std::thread::Builder::new()
                    .name("edgevox-ptt".into())
                    .spawn(move || {
                        for line in std::io::stdin().lock().lines() {
                            if line.is_err() {
                                break;
                            }
                            press();
                        }
                        info!("push-to-talk: standard input closed");
                    })
                    .context("spawning the push-to-talk thread")?;
                Ok(())
            }
            Ptt::Evdev { path, key } => {
                let mut dev = evdev::Device::open(path).with_context(|| {
                    format!(
                        "push-to-talk {}: cannot open it (does it exist, and may this user read \
                         it? the input group usually may)",
                        path.display()
                    )
                })?;
                if let (Some(k), Some(keys)) = (key, dev.supported_keys())
                    && !keys.contains(evdev::KeyCode(*k))
                {
                    bail!(
                        "push-to-talk {}: the device has no key {:?}",
                        path.display(),
                        evdev::KeyCode(*k)
                    );
                }
                info!(
                    "push-to-talk: {} ({})",
                    path.display(),
                    dev.name().unwrap_or("unnamed")
                );
                let (path, key) = (path.clone(), *key);
                std::thread::Builder::new()
                    .name("edgevox-ptt".into())
                    .spawn(move || {
                        loop {
                            let events = match dev.fetch_events() {
                                Ok(e) => e,
                                Err(e) => {
                                    warn!("push-to-talk {}: {e}; no more presses", path.display());
                                    return;
                                }
                            };
                            for ev in events {
                                if let evdev::EventSummary::Key(_, code, 1) = ev.destructure()
                                    && key.is_none_or(|k| k == code.code())
                                {
                                    press();
                                }
                            }
                        }
                    })
                    .context("spawning the push-to-talk thread")?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_bad_ones_are_refused_in_words() {
        assert_eq!("stdin".parse::<Ptt>().unwrap(), Ptt::Stdin);
        assert_eq!("at:9.5, 2".parse::<Ptt>().unwrap(), Ptt::At(vec![2.0, 9.5]));
        assert_eq!(
            "/dev/input/event3:KEY_SPACE".parse::<Ptt>().unwrap(),
            Ptt::Evdev {
                path: "/dev/input/event3".into(),
                key: Some(57)
            }
        );
        let e = format!(
            "{:#}",
            "/dev/input/event3:KEY_NOPE".parse::<Ptt>().unwrap_err()
        );
        assert!(e.contains("not an evdev key name"), "{e}");
        assert!("at:x".parse::<Ptt>().is_err());
        assert!("keyboard".parse::<Ptt>().is_err());
        let missing = Ptt::Evdev {
            path: "/dev/input/no-such-event".into(),
            key: None,
        };
        let e = format!("{:#}", missing.spawn(|| {}).unwrap_err());
        assert!(
            e.contains("/dev/input/no-such-event") && e.contains("cannot open"),
            "{e}"
        );
    }
}
