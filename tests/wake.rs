//! The wake word on the real openWakeWord models: spoken phrases are heard, real speech is not.

mod common;

use std::path::PathBuf;
use std::process::Command;

use edgevox::audio::wav;
use edgevox::wake::{WakeOptions, WakeWord};

fn wake_dir() -> PathBuf {
    common::cache().wake()
}

fn espeak(text: &str, voice: &str, speed: u32, name: &str) -> Vec<f32> {
    let d = common::scratch("wake", name);
    let p = d.join("w.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", voice, "-s", &speed.to_string(), "-w"])
        .arg(&p)
        .arg(text)
        .status()
        .unwrap()
        .success();
    assert!(ok, "espeak-ng failed");
    wav::read_16k_mono(&p).unwrap().0
}

/// All the recorded speech the cache has (`corpus::real_speech`), as (name, samples).
fn real_speech() -> Vec<(String, Vec<f32>)> {
    let clips = edgevox::asr::corpus::real_speech(&common::cache()).unwrap();
    let names: Vec<&str> = clips.iter().map(|c| c.name.as_str()).collect();
    assert!(clips.len() >= 7, "the real speech: {names:?}");
    let secs: f64 = clips.iter().map(|c| c.seconds()).sum();
    // LibriVox, the CMU ARCTIC clips and the Asterisk prompts (25 min).
    assert!(secs > 1500.0, "{secs:.0} s of real speech: {names:?}");
    clips.into_iter().map(|c| (c.name, c.samples)).collect()
}

/// `phrase` over `noise` (from its start) at `snr_db`, RMS over the phrase's speech.
fn mix(phrase: &[f32], noise: &[f32], snr_db: f32) -> Vec<f32> {
    let rms = |x: &[f32]| {
        let loud: Vec<f32> = x.iter().copied().filter(|v| v.abs() > 1e-3).collect();
        (loud.iter().map(|v| v * v).sum::<f32>() / loud.len().max(1) as f32).sqrt()
    };
    let gain = rms(phrase) / rms(&noise[..phrase.len()]) / 10f32.powf(snr_db / 20.0);
    phrase
        .iter()
        .zip(noise)
        .map(|(p, n)| (p + gain * n).clamp(-1.0, 1.0))
        .collect()
}

#[test]
fn hey_jarvis_is_heard_in_one_breath_with_the_question_also_over_speech() {
    let (noise, _) = wav::read_16k_mono(&common::cache().speech().join("two_cities.wav")).unwrap();
    let mut clean = (0, 0);
    let mut mixed = std::collections::BTreeMap::new();
    for (k, voice) in ["en-us", "en", "en-us+f3"].into_iter().enumerate() {
        for speed in [130, 170] {
            let mut x = espeak(
                "Hey Jarvis, what time is it?",
                voice,
                speed,
                &format!("{voice}{speed}"),
            );
            x.extend(std::iter::repeat_n(0.0, 8000));
            let mut w =
                WakeWord::load(&wake_dir(), &["hey_jarvis"], WakeOptions::default()).unwrap();
            let found = w.push(&x).unwrap();
            eprintln!("{voice} {speed}: {found:?}");
            clean.0 += usize::from(found.len() == 1);
            clean.1 += 1;
            // Over Dickens read aloud, a different stretch for each voice.
            let at = 16_000 * (5 + 9 * k);
            for snr in [20, 10, 0] {
                w.reset().unwrap();
                let found = w.push(&mix(&x, &noise[at..], snr as f32)).unwrap();
                let e = mixed.entry(snr).or_insert((0, 0));
                e.0 += usize::from(found.len() == 1);
                e.1 += 1;
            }
        }
    }
    eprintln!("hey_jarvis heard: clean {clean:?}, over speech by SNR dB {mixed:?}");
    assert!(clean.0 * 10 >= clean.1 * 9, "clean: {clean:?}");
    let (hit, n) = mixed[&20];
    assert!(hit * 10 >= n * 8, "at 20 dB: {hit} of {n}");
}

/// Every pretrained head and an enrolled phrase ("Computer", [`enroll_computer`]) on all the
/// real speech the corpus has (LibriVox Dickens, Beckett, the CMU ARCTIC clips, the Asterisk
/// prompts, …, 32 minutes), in one pass over it (the front end's embeddings feed every head):
/// at most one false accept each, alexa's known two apart.
#[test]
fn the_pretrained_heads_and_an_enrolled_phrase_do_not_fire_on_real_speech() {
    let (_, custom_head) = enroll_computer("fa");
    let mut heads: Vec<&str> = edgevox::wake::PRETRAINED.to_vec();
    heads.push(&custom_head);
    let clips = real_speech();
    let secs: f64 = clips.iter().map(|(_, x)| x.len() as f64 / 16_000.0).sum();
    // Two detectors side by side, each taking the next recording (the machines have 2 cores).
    let next = std::sync::atomic::AtomicUsize::new(0);
    let found: Vec<(String, edgevox::wake::Detection)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut w =
                        WakeWord::load(&wake_dir(), &heads, WakeOptions::default()).unwrap();
                    let mut found = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((name, x)) = clips.get(i) else { break };
                        w.reset().unwrap();
                        found.extend(w.push(x).unwrap().into_iter().map(|d| (name.clone(), d)));
                    }
                    found
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut per_head = std::collections::BTreeMap::<String, usize>::new();
    for (name, d) in found {
        eprintln!("{name}: false accept {d:?}");
        *per_head.entry(d.head).or_default() += 1;
    }
    eprintln!("false accepts over {secs:.0} s of real speech: {per_head:?}");
    // At most one each, except `alexa`: it takes "less than" for its phrase (Asterisk's
    // `letters/ascii60` and `queue-less-than` prompts, scores 0.94), 2 in 32 minutes, which
    // is above the bound and said so in the README. Its count is pinned so that it cannot
    // grow unnoticed.
    for (head, n) in &per_head {
        let allowed = if head == "alexa" { 2 } else { 1 };
        assert!(*n <= allowed, "{head}: {n} false accepts in {secs:.0} s");
    }
}

/// Four espeak-ng takes of "Computer" enrolled (no training) and saved under the scratch
/// directory `tag`: the takes and the head name (`custom:PATH`) that loads the phrase.
fn enroll_computer(tag: &str) -> (Vec<(String, Vec<f32>)>, String) {
    use edgevox::wake::custom;
    let mut front = WakeWord::front_end(&wake_dir()).unwrap();
    let takes: Vec<(String, Vec<f32>)> = [
        ("en-us", 140),
        ("en", 160),
        ("en-us+f3", 150),
        ("en-us", 175),
    ]
    .iter()
    .map(|&(v, s)| {
        let label = format!("{v}@{s}");
        let x = espeak("Computer.", v, s, &format!("{tag}-take-{v}{s}"));
        (label, x)
    })
    .collect();
    let phrase = custom::enroll(&mut front, "computer", &takes, custom::DEFAULT_MARGIN).unwrap();
    eprintln!(
        "enrolled: threshold {:.3}, take distances {:?}",
        phrase.threshold, phrase.take_distances
    );
    let path = common::scratch("wake", &format!("enrolled-{tag}")).join("computer.json");
    phrase.save(&path).unwrap();
    (takes, format!("custom:{}", path.display()))
}

/// tract's scores against onnxruntime's on the same samples, stepped the same way
/// (`models/reference.py wake`: espeak-ng's "Hey Jarvis, what time is it?", written as the
/// WAV both read): every 80 ms step, each head.
#[test]
fn tract_scores_the_phrase_as_onnxruntime_does() {
    let refs = common::cache().refs();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(refs.join("wake_jarvis.json")).unwrap())
            .unwrap();
    let heads: Vec<&str> = json["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    let want: Vec<Vec<f64>> = json["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    let (x, _) = wav::read_16k_mono(&refs.join(json["wav"].as_str().unwrap())).unwrap();
    let mut w = WakeWord::load(&wake_dir(), &heads, WakeOptions::default()).unwrap();
    let got = w.scores(&x).unwrap();
    assert_eq!(got.len(), want.len(), "steps");
    let mut worst = 0.0f64;
    for (g, r) in got.iter().zip(&want) {
        for (a, b) in g.scores.iter().zip(r) {
            worst = worst.max((*a as f64 - b).abs());
        }
    }
    let best = |i: usize| got.iter().map(|s| s.scores[i]).fold(0.0f32, f32::max);
    eprintln!(
        "tract vs onnxruntime over {} steps: max score difference {worst:.2e}; best {:?}",
        got.len(),
        (0..heads.len()).map(best).collect::<Vec<_>>()
    );
    assert!(worst < 5e-3, "max score difference {worst}");
    assert!(best(0) > 0.5, "hey_jarvis heard");
}

/// An enrolled phrase, no training ([`enroll_computer`]): heard in one breath with a question
/// by other voices and speeds (not heard in real speech: the false-accept test above).
/// Silence and a single take are refused.
#[test]
fn an_enrolled_phrase_is_heard_and_bad_enrollments_are_refused() {
    use edgevox::wake::custom;
    let (takes, head) = enroll_computer("heard");
    let mut front = WakeWord::front_end(&wake_dir()).unwrap();
    let load = || WakeWord::load(&wake_dir(), &[head.as_str()], WakeOptions::default()).unwrap();

    let mut hits = 0;
    let cases = [
        ("en-us+m3", 150),
        ("en", 130),
        ("en-us+f2", 170),
        ("en-us", 155),
    ];
    for &(voice, speed) in &cases {
        let mut x = espeak(
            "Computer, what time is it?",
            voice,
            speed,
            &format!("q-{voice}{speed}"),
        );
        x.extend(std::iter::repeat_n(0.0, 8000));
        let found = load().push(&x).unwrap();
        eprintln!("custom {voice} {speed}: {found:?}");
        hits += usize::from(found.len() == 1);
    }
    assert!(
        hits * 4 >= cases.len() * 3,
        "{hits} of {} heard",
        cases.len()
    );
    let silence = vec![("quiet.wav".to_string(), vec![0.0f32; 32_000]); 3];
    let e = format!(
        "{:#}",
        custom::enroll(&mut front, "x", &silence, 1.3).unwrap_err()
    );
    assert!(e.contains("quiet.wav") && e.contains("no speech"), "{e}");
    let e = format!(
        "{:#}",
        custom::enroll(&mut front, "x", &takes[..1], 1.3).unwrap_err()
    );
    assert!(e.contains("at least 3 takes"), "{e}");
}
