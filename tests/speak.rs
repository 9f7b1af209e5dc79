//! The speaking stage's file output with the real voice (espeak-ng), heard back by Whisper.

mod common;

use std::process::Command;

use common::cache;
use edgevox::asr::{self, AsrOptions, Whisper, wer};
use edgevox::audio::wav;
use edgevox::tts::{self, espeak::Espeak};

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("edgevox-speak-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn spoken_reply_is_heard_back_by_whisper() {
    let reply = "The capital of France is Paris. It has been the capital for centuries, \
                 and about two million people live there.";
    let path = scratch("reply").join("reply.wav");
    // What `edgevox say --output` writes.
    let o = Command::new(env!("CARGO_BIN_EXE_edgevox"))
        .args(["say", reply, "--output", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let secs = tts::render_all(&mut Espeak::default(), reply, None)
        .unwrap()
        .seconds();
    let (samples, info) = wav::read_16k_mono(&path).unwrap();
    // Plausible length: 21 words at 150 words per minute is ~8.4 s, plus pauses.
    assert!((5.0..15.0).contains(&secs), "{secs} s");
    assert!((info.seconds() - secs).abs() < 0.05);
    let rms = (samples.iter().map(|x| x * x).sum::<f32>() / samples.len() as f32).sqrt();
    assert!(rms > 0.01, "silent reply (rms {rms})");

    let model = asr::model_path(&cache().whisper(), "q8_0", true).unwrap();
    let mut whisper = Whisper::load(&model).unwrap();
    let opts = AsrOptions {
        audio_ctx: asr::AudioCtx::Full,
        ..Default::default()
    };
    let heard = whisper.transcribe(&samples, &opts).unwrap().text;
    let rate = wer::wer(reply, &heard);
    assert!(rate <= 0.25, "heard {heard:?} (WER {rate:.2})");
}

#[test]
fn say_without_a_file_prints_the_chunks_in_order() {
    let o = Command::new(env!("CARGO_BIN_EXE_edgevox"))
        .args(["say", "One. Two! Three?"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "One.\nTwo!\nThree?\n");
}

#[test]
fn unwritable_output_is_a_clear_error_before_speaking() {
    let o = Command::new(env!("CARGO_BIN_EXE_edgevox"))
        .args(["say", "Hello.", "--output", "/nonexistent-dir/reply.wav"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("/nonexistent-dir/reply.wav"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}
