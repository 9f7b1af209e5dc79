//! Your own wake phrase without training: a few takes of it, kept as sequences of the front
//! end's speech embeddings (one 96-value embedding per 80 ms step), matched against the live
//! embedding stream by dynamic time warping.
//!
//! At each step every template is aligned with the end of the recent embeddings (open start,
//! end at the newest step; cosine distance per pair, the path's mean). The phrase's distance is
//! the smallest over its templates, and its score `1 - d / (2 * threshold)` is 0.5 exactly at
//! the threshold, so the same [`super::Decider`] as the pretrained heads' decides.
//!
//! The threshold comes from the takes themselves: each take is matched against the other
//! takes' templates, its nearest distance taken, and the largest of those, times a margin
//! ([`DEFAULT_MARGIN`]), is the threshold: every take would have been heard, with room for a
//! day on which the phrase is said differently.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{EMB_DIM, STEP_S, WakeWord};

/// Takes an enrollment needs, at least (and at most [`MAX_TAKES`]).
pub const MIN_TAKES: usize = 3;
pub const MAX_TAKES: usize = 8;
/// The threshold over the largest nearest distance between takes.
pub const DEFAULT_MARGIN: f32 = 1.3;
/// Steps of a template, at least (0.32 s) and at most (2 s).
const MIN_STEPS: usize = 4;
const MAX_STEPS: usize = 25;
const FORMAT: u32 = 1;

/// Where enrolled phrases are kept: `$EDGEVOX_CONFIG/wake`, else `$XDG_CONFIG_HOME/edgevox/wake`,
/// else `~/.config/edgevox/wake` (a board's service sets `EDGEVOX_CONFIG`).
pub fn dir() -> PathBuf {
    let base = std::env::var_os("EDGEVOX_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("edgevox")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/edgevox")))
        .unwrap_or_else(|| PathBuf::from(".edgevox"));
    base.join("wake")
}

/// The file of the phrase `name` (a path when it ends in `.json`).
pub fn path_of(name: &str) -> PathBuf {
    if name.ends_with(".json") {
        PathBuf::from(name)
    } else {
        dir().join(format!("{name}.json"))
    }
}

/// An enrolled phrase: its templates and threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phrase {
    pub format: u32,
    pub name: String,
    /// Cosine-DTW distance at or below which the phrase counts (score 0.5).
    pub threshold: f32,
    /// Each take's nearest distance to the others (what the threshold was chosen from).
    pub take_distances: Vec<f32>,
    /// One template per take: steps × [`EMB_DIM`] values, row-major.
    pub templates: Vec<Vec<f32>>,
    /// sha256 of the templates' values (little-endian f32), so a damaged file is refused.
    pub sha256: String,
}

fn checksum(templates: &[Vec<f32>]) -> String {
    let mut h = Sha256::new();
    for t in templates {
        h.update((t.len() as u64).to_le_bytes());
        for v in t {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Phrase {
    /// The phrase from `takes` (each a take's template, steps × [`EMB_DIM`]) and `streams`
    /// (each take's whole embedding stream, to match the others' templates against).
    pub fn from_takes(
        name: &str,
        templates: Vec<Vec<f32>>,
        streams: &[Vec<f32>],
        margin: f32,
    ) -> Result<Phrase> {
        ensure!(
            templates.len() >= MIN_TAKES,
            "an enrollment needs at least {MIN_TAKES} takes of the phrase, got {}",
            templates.len()
        );
        ensure!(
            templates.len() <= MAX_TAKES,
            "at most {MAX_TAKES} takes, got {}",
            templates.len()
        );
        ensure!(margin >= 1.0, "a margin of {margin} is below 1");
        let mut nearest = Vec::new();
        for (i, stream) in streams.iter().enumerate() {
            let mut best = f32::INFINITY;
            for (j, t) in templates.iter().enumerate() {
                if i != j {
                    best = best.min(best_match(t, stream));
                }
            }
            nearest.push(best);
        }
        let worst = nearest.iter().copied().fold(0.0f32, f32::max);
        let phrase = Phrase {
            format: FORMAT,
            name: name.to_string(),
            threshold: (worst * margin).max(1e-3),
            take_distances: nearest,
            sha256: checksum(&templates),
            templates,
        };
        Ok(phrase)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let json = serde_json::to_string(self)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads and checks an enrolled phrase (format, shapes, checksum), naming the file in
    /// every refusal.
    pub fn load(path: &Path) -> Result<Phrase> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "{}: no enrolled wake phrase there (run `edgevox enroll NAME`)",
                path.display()
            )
        })?;
        let p: Phrase = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not an enrolled wake phrase (truncated or damaged? enroll it again)",
                path.display()
            )
        })?;
        if p.format != FORMAT {
            bail!(
                "{}: format {} (this build reads {FORMAT}); enroll it again",
                path.display(),
                p.format
            );
        }
        ensure!(
            p.templates.len() >= MIN_TAKES
                && p.templates.iter().all(|t| {
                    t.len() % EMB_DIM == 0
                        && (MIN_STEPS..=MAX_STEPS).contains(&(t.len() / EMB_DIM))
                        && t.iter().all(|v| v.is_finite())
                }),
            "{}: its templates are not {MIN_TAKES} or more sequences of {MIN_STEPS}-{MAX_STEPS} \
             embeddings of {EMB_DIM} values",
            path.display()
        );
        ensure!(
            p.threshold.is_finite() && p.threshold > 0.0,
            "{}: threshold {} is not a positive distance",
            path.display(),
            p.threshold
        );
        if checksum(&p.templates) != p.sha256 {
            bail!(
                "{}: its templates do not match their sha256 (damaged); enroll it again",
                path.display()
            );
        }
        Ok(p)
    }

    /// The longest template, in steps (how much embedding history a match needs, doubled for
    /// slower speech).
    pub fn history_steps(&self) -> usize {
        2 * self
            .templates
            .iter()
            .map(|t| t.len() / EMB_DIM)
            .max()
            .unwrap_or(0)
    }

    /// The phrase's distance at the end of `recent` (steps × [`EMB_DIM`], oldest first).
    pub fn distance(&self, recent: &[f32]) -> f32 {
        self.templates
            .iter()
            .map(|t| dtw_end(t, recent))
            .fold(f32::INFINITY, f32::min)
    }

    /// The score the [`super::Decider`] sees: 0.5 at the threshold, 1 for a perfect match.
    pub fn score(&self, recent: &[f32]) -> f32 {
        (1.0 - self.distance(recent) / (2.0 * self.threshold)).clamp(0.0, 1.0)
    }
}

/// Where the speech is in a take, in seconds (10 ms frames louder than a tenth of the
/// loudest, and above a floor); `None` for silence.
pub fn speech_span(x: &[f32]) -> Option<(f64, f64)> {
    const FRAME: usize = 160;
    const FLOOR: f32 = 0.005;
    let rms: Vec<f32> = x
        .chunks(FRAME)
        .map(|c| (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32).sqrt())
        .collect();
    let peak = rms.iter().copied().fold(0.0f32, f32::max);
    if peak < FLOOR {
        return None;
    }
    let on = |r: &f32| *r >= (0.1 * peak).max(FLOOR);
    let first = rms.iter().position(on)?;
    let last = rms.iter().rposition(on)?;
    Some((first as f64 * 0.01, (last + 1) as f64 * 0.01))
}

/// Enrolls `name` from `takes` (a label for errors, e.g. the file, and 16 kHz samples in
/// [-1, 1], each one take of the phrase alone) through the front end of `front`.
pub fn enroll(
    front: &mut WakeWord,
    name: &str,
    takes: &[(String, Vec<f32>)],
    margin: f32,
) -> Result<Phrase> {
    ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "a phrase name is letters, digits, '_' and '-' (got {name:?})"
    );
    let mut templates = Vec::new();
    let mut streams = Vec::new();
    for (label, x) in takes {
        let Some((start, end)) = speech_span(x) else {
            bail!("{label}: no speech in this take (silence?)");
        };
        ensure!(
            end - start >= 0.3,
            "{label}: only {:.2} s of speech; say the whole phrase",
            end - start
        );
        ensure!(
            end - start <= 2.5,
            "{label}: {:.1} s of speech; a wake phrase is a few words (record it alone)",
            end - start
        );
        front.reset()?;
        let mut padded = x.clone();
        padded.extend(std::iter::repeat_n(0.0, 8000));
        let emb = front.embeddings(&padded)?;
        let steps = emb.len() / EMB_DIM;
        let at = |k: usize| (k + 1) as f64 * STEP_S;
        let pick = |from: f64, to: f64| -> Vec<f32> {
            (0..steps)
                .filter(|&k| at(k) >= from && at(k) <= to)
                .flat_map(|k| emb[k * EMB_DIM..(k + 1) * EMB_DIM].to_vec())
                .collect()
        };
        let mut t = pick(start + 0.3, end + 0.24);
        if t.len() / EMB_DIM > MAX_STEPS {
            t.drain(..t.len() - MAX_STEPS * EMB_DIM);
        }
        ensure!(
            t.len() / EMB_DIM >= MIN_STEPS,
            "{label}: too short a phrase for a template ({} steps of 80 ms)",
            t.len() / EMB_DIM
        );
        templates.push(t);
        streams.push(pick(start, end + 0.5));
    }
    Phrase::from_takes(name, templates, &streams, margin)
}

/// Cosine distance of two embeddings.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 1.0;
    }
    1.0 - ab / (aa.sqrt() * bb.sqrt())
}

/// The mean cosine distance along the best warping path that aligns all of `template` with a
/// stretch of `stream` ending at its last step (the start in `stream` is free). Steps: one
/// forward in either or both; the path's length is what the mean is over.
pub fn dtw_end(template: &[f32], stream: &[f32]) -> f32 {
    let n = template.len() / EMB_DIM;
    let m = stream.len() / EMB_DIM;
    if n == 0 || m == 0 {
        return f32::INFINITY;
    }
    // Only the last 2n steps of the stream can take part (at most two stream steps per
    // template step on average).
    let first = m.saturating_sub(2 * n);
    let cols = m - first;
    // (cost, length) per cell, two rows.
    let mut prev = vec![(f32::INFINITY, 0u32); cols];
    let mut cur = vec![(f32::INFINITY, 0u32); cols];
    for i in 0..n {
        let t = &template[i * EMB_DIM..(i + 1) * EMB_DIM];
        for j in 0..cols {
            let s = &stream[(first + j) * EMB_DIM..(first + j + 1) * EMB_DIM];
            let d = cosine(t, s);
            let left = if j > 0 {
                cur[j - 1]
            } else {
                (f32::INFINITY, 0)
            };
            let best = if i == 0 {
                // A fresh start here, or the first template step held along the stream.
                if left.1 > 0 && (left.0 + d) / (left.1 + 1) as f32 <= d {
                    left
                } else {
                    (0.0, 0)
                }
            } else {
                let diag = if j > 0 {
                    prev[j - 1]
                } else {
                    (f32::INFINITY, 0)
                };
                [diag, prev[j], left]
                    .into_iter()
                    .min_by(|a, b| mean(*a).total_cmp(&mean(*b)))
                    .unwrap_or(diag)
            };
            cur[j] = (best.0 + d, best.1 + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    mean(prev[cols - 1])
}

fn mean((cost, len): (f32, u32)) -> f32 {
    if len == 0 {
        f32::INFINITY
    } else {
        cost / len as f32
    }
}

/// The smallest [`dtw_end`] of `template` over every end position in `stream`.
pub fn best_match(template: &[f32], stream: &[f32]) -> f32 {
    let m = stream.len() / EMB_DIM;
    (1..=m)
        .map(|k| dtw_end(template, &stream[..k * EMB_DIM]))
        .fold(f32::INFINITY, f32::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sequence of `n` embeddings walking from one random direction towards another.
    fn sweep(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let a: Vec<f32> = (0..EMB_DIM).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..EMB_DIM).map(|_| rnd()).collect();
        (0..n)
            .flat_map(|k| {
                let t = k as f32 / (n - 1).max(1) as f32;
                a.iter()
                    .zip(&b)
                    .map(move |(x, y)| x * (1.0 - t) + y * t)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn noise(seed: u64, n: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|k| sweep(seed * 1000 + k as u64, 2)[..EMB_DIM].to_vec())
            .collect()
    }

    #[test]
    fn dtw_finds_the_phrase_said_slower_at_the_end_of_the_stream() {
        let phrase = sweep(7, 8);
        let slow = sweep(7, 13);
        let mut stream = noise(3, 10);
        stream.extend(&slow);
        assert!(
            dtw_end(&phrase, &stream) < 0.05,
            "{}",
            dtw_end(&phrase, &stream)
        );
        // Not at the end any more: noise after it.
        let mut later = stream.clone();
        later.extend(noise(4, 6));
        assert!(
            dtw_end(&phrase, &later) > 0.3,
            "{}",
            dtw_end(&phrase, &later)
        );
        assert!(best_match(&phrase, &later) < 0.05);
        // Another phrase does not match.
        assert!(best_match(&sweep(9, 8), &stream) > 0.3);
    }

    #[test]
    fn the_threshold_covers_every_take_and_a_damaged_file_is_refused() {
        let takes: Vec<Vec<f32>> = (8..12).map(|n| sweep(5, n)).collect();
        let streams: Vec<Vec<f32>> = takes
            .iter()
            .map(|t| [noise(1, 5), t.clone(), noise(2, 3)].concat())
            .collect();
        let p = Phrase::from_takes("computer", takes.clone(), &streams, 1.3).unwrap();
        for d in &p.take_distances {
            assert!(*d * 1.3 <= p.threshold + 1e-6);
        }
        let mut live = noise(6, 12);
        live.extend(sweep(5, 10));
        assert!(p.score(&live) > 0.5, "{}", p.score(&live));
        assert!(p.score(&noise(6, 20)) < 0.5);

        let dir = std::env::temp_dir().join(format!("edgevox-enroll-{}", std::process::id()));
        let path = dir.join("computer.json");
        p.save(&path).unwrap();
        assert_eq!(Phrase::load(&path).unwrap().templates, p.templates);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let e = format!("{:#}", Phrase::load(&path).unwrap_err());
        assert!(e.contains("computer.json") && e.contains("damaged"), "{e}");
        let mut bad = p.clone();
        bad.templates[0][3] += 0.5;
        let json = serde_json::to_string(&bad).unwrap();
        std::fs::write(&path, json).unwrap();
        let e = format!("{:#}", Phrase::load(&path).unwrap_err());
        assert!(e.contains("sha256"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let one = Phrase::from_takes("x", takes[..1].to_vec(), &streams[..1], 1.3);
        assert!(format!("{:#}", one.unwrap_err()).contains("at least 3 takes"));
    }
}
