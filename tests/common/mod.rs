//! Shared by the integration tests (each test binary uses part of it).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use edgevox::audio::wav;
pub use edgevox::cache::Cache;

/// The models cache the tests read: `$EDGEVOX_CACHE`, else `models/cache` in the checkout.
pub fn cache() -> Cache {
    Cache::for_tests()
}

/// A fresh scratch directory for one test.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgevox-{suite}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A HOME whose `.asoundrc` points the default ALSA device at a card that does not exist
/// and, with `infile`, defines `edgevox_test`: a capture device that plays `infile` (raw, in
/// the device's format) through ALSA's `file` plugin over `null`.
pub fn alsa_home(name: &str, infile: Option<&Path>) -> PathBuf {
    let home = scratch("alsa", name);
    let mut rc = String::from("pcm.!default { type hw card 99 }\n");
    if let Some(infile) = infile {
        rc += &format!(
            "pcm.edgevox_test {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  \
             infile \"{}\"\n  format \"raw\"\n  hint {{ show on description \"edgevox test capture\" }}\n}}\n",
            infile.display()
        );
    }
    std::fs::write(home.join(".asoundrc"), rc).unwrap();
    home
}

/// Runs the binary with `HOME=home`, killing it (and failing) after `limit`.
pub fn edgevox_with_home(home: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgevox"))
        .args(args)
        .env("HOME", home)
        .env("EDGEVOX_CACHE", cache().root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "edgevox {args:?} still running after {limit:?}\n{}",
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// The format cpal negotiates with `edgevox_test`.
pub struct DeviceFormat {
    pub rate: usize,
    pub channels: usize,
    pub sample_format: String,
}

/// A HOME whose `edgevox_test` capture device plays `clip` (then two seconds of silence):
/// cpal is asked (through the binary) which format the device opens with, and the clip is
/// written in exactly that format, so the capture path converts and resamples it back.
pub fn alsa_capture_home(name: &str, clip: &Path) -> (PathBuf, DeviceFormat) {
    let probe_home = alsa_home(&format!("{name}-probe"), Some(Path::new("/dev/null")));
    let o = edgevox_with_home(&probe_home, &["devices", "--json"], Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    let devices: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let dev = devices
        .iter()
        .find(|d| d["id"] == "edgevox_test")
        .unwrap_or_else(|| panic!("edgevox_test not listed: {devices:?}"));
    let format = DeviceFormat {
        rate: dev["sample_rate"].as_u64().unwrap() as usize,
        channels: dev["channels"].as_u64().unwrap() as usize,
        sample_format: dev["sample_format"].as_str().unwrap().to_string(),
    };

    let (clip, _) = wav::read_16k_mono(clip).unwrap();
    // Linear interpolation up to the device rate is plenty for a test signal.
    let rate = format.rate;
    let n_out = clip.len() * rate / 16_000;
    let mut raw = Vec::new();
    for i in 0..n_out + rate * 2 {
        let pos = i as f64 * 16_000.0 / rate as f64;
        let j = pos as usize;
        let x = if j + 1 < clip.len() {
            let f = (pos - j as f64) as f32;
            clip[j] * (1.0 - f) + clip[j + 1] * f
        } else {
            0.0
        };
        for _ in 0..format.channels {
            match format.sample_format.as_str() {
                "f32" => raw.extend_from_slice(&x.to_le_bytes()),
                "i16" => raw.extend_from_slice(&((x * 32767.0) as i16).to_le_bytes()),
                "i32" => raw.extend_from_slice(&((x * 2.147e9) as i32).to_le_bytes()),
                other => panic!("no test writer for sample format {other}"),
            }
        }
    }
    let infile = scratch("alsa", &format!("{name}-raw")).join("capture.raw");
    std::fs::File::create(&infile)
        .unwrap()
        .write_all(&raw)
        .unwrap();
    (alsa_home(name, Some(&infile)), format)
}

/// Asserts that `text` (recognized speech, a reply, or a log quoting them) mentions one of
/// `phrases` once both are normalized (`edgevox::text`: case, punctuation, hyphens, number
/// words). The check is made on `text` as this machine spelled it and on the spellings other
/// machines give for the same audio (`text::machine_variants`), so it cannot pass here and fail
/// on a machine that writes "play-hamlet". A failure shows the raw and the normalized text.
#[track_caller]
pub fn assert_mentions_any(what: &str, text: &str, phrases: &[&str]) {
    use edgevox::text;
    for variant in text::machine_variants(text) {
        assert!(
            phrases.iter().any(|p| text::mentions(&variant, p)),
            "{what} does not mention any of {phrases:?}\n  raw:        {text:?}\n  \
             spelled as: {variant:?}\n  normalized: {:?}",
            text::normalize(&variant)
        );
    }
}

/// [`assert_mentions_any`] with one phrase.
#[track_caller]
pub fn assert_mentions(what: &str, text: &str, phrase: &str) {
    assert_mentions_any(what, text, &[phrase]);
}

/// The string at `v[key]` of a turn report (an empty string where it is null).
pub fn field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}
