//! The whole assistant replayed from a file, with the real models: question WAV in, spoken
//! reply WAV out, one JSON timeline per turn.

mod common;

use std::process::Command;

use common::cache;
use edgevox::asr::{self, AsrOptions, Whisper, wer};
use edgevox::audio::wav;

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("edgevox-assistant-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(input: &std::path::Path, output: &std::path::Path) -> Vec<serde_json::Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_edgevox"))
        .args(["run", "--input", input.to_str().unwrap(), "--output"])
        .arg(output)
        .env("EDGEVOX_CACHE", cache())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn two_questions_in_two_spoken_answers_out() {
    let synth = cache().join("speech/synthetic");
    let (q1, _) = wav::read_16k_mono(&synth.join("capital.wav")).unwrap();
    let (q2, _) = wav::read_16k_mono(&synth.join("spider.wav")).unwrap();
    let mut input = q1.clone();
    input.extend(vec![0.0; 16_000 * 2]);
    input.extend(&q2);
    input.extend(vec![0.0; 16_000]);
    let d = scratch("two");
    let question = d.join("questions.wav");
    wav::write_mono_i16(&question, &input, 16_000).unwrap();
    let reply = d.join("reply.wav");
    let turns = run(&question, &reply);

    assert_eq!(turns.len(), 2, "{turns:?}");
    assert!(turns[0]["transcript"].as_str().unwrap().contains("capital"));
    assert!(turns[1]["transcript"].as_str().unwrap().contains("spider"));
    let mut replies = Vec::new();
    for t in &turns {
        assert!(t["error"].is_null(), "{t}");
        let tl = &t["timeline"];
        let stages = [
            tl["transcript_ready_ms"].as_f64().unwrap(),
            tl["first_token_ms"].as_f64().unwrap(),
            tl["first_audio_ms"].as_f64().unwrap(),
            tl["turn_done_ms"].as_f64().unwrap(),
        ];
        assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{tl}");
        assert!(t["peak_rss_bytes"].as_u64().unwrap() > 0);
        replies.push(t["reply"].as_str().unwrap().to_string());
    }
    assert!(replies[0].contains("Paris"), "{replies:?}");

    // The reply WAV holds both answers, audibly, and Whisper hears them back.
    let (samples, info) = wav::read_16k_mono(&reply).unwrap();
    let spoken: f64 = turns.iter().map(|t| t["spoken_s"].as_f64().unwrap()).sum();
    assert!((info.seconds() - spoken).abs() < 0.1);
    let words: usize = replies.iter().map(|r| r.split_whitespace().count()).sum();
    assert!(
        info.seconds() > words as f64 * 0.2 && info.seconds() < words as f64 * 1.0 + 5.0,
        "{} s for {words} words",
        info.seconds()
    );
    let rms = (samples.iter().map(|x| x * x).sum::<f32>() / samples.len() as f32).sqrt();
    assert!(rms > 0.01);
    let model = asr::model_path(&cache().join("whisper"), "q8_0", true).unwrap();
    let mut whisper = Whisper::load(&model).unwrap();
    let heard = whisper
        .transcribe(&samples, &AsrOptions::default())
        .unwrap()
        .text;
    let rate = wer::wer(&replies.join(" "), &heard);
    assert!(
        rate <= 0.5,
        "said {replies:?}, heard {heard:?} (WER {rate:.2})"
    );
}

#[test]
fn silence_in_gives_no_turns_and_an_empty_reply_file() {
    let d = scratch("silence");
    let question = d.join("silence.wav");
    wav::write_mono_i16(&question, &vec![0.0; 16_000 * 3], 16_000).unwrap();
    let reply = d.join("reply.wav");
    assert!(run(&question, &reply).is_empty());
    let (samples, _) = wav::read_16k_mono(&reply).unwrap();
    assert!(samples.is_empty());
}
