//! The whole assistant with the real models, replayed in real time through the virtual sound
//! card (the live code path): question WAV in, spoken reply WAV out, one JSON timeline per
//! turn; barge-in, the echo guard, and failures inside turns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Result, bail};
use common::{alsa_capture_home, assert_mentions, cache, edgevox_with_home, field, stderr, stdout};
use edgevox::asr::{self, AsrOptions, Recognizer, Transcript, Whisper, wer};
use edgevox::audio::replay::ReplayOptions;
use edgevox::audio::wav;
use edgevox::llm::{Chat, ChatOptions, LlmModel, LoadOptions};
use edgevox::pipeline::{
    self, Brain, Hearing, LoopOptions, NOTICE_FAILED, NOTICE_NOT_UNDERSTOOD, TurnReport,
};
use edgevox::text;
use edgevox::tts::{self, espeak::Espeak};
use edgevox::vad::{self, EndpointConfig};
use serde_json::Value;

/// Replays run in real time and share two cores: one at a time keeps their timings honest.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("assistant", name)
}

fn question(name: &str) -> Vec<f32> {
    wav::read_16k_mono(
        &cache()
            .speech()
            .join("synthetic")
            .join(format!("{name}.wav")),
    )
    .unwrap()
    .0
}

fn silence(secs: f32) -> Vec<f32> {
    vec![0.0; (16_000.0 * secs) as usize]
}

/// Writes the pieces one after the other as a 16 kHz WAV.
fn recording(path: &Path, pieces: &[Vec<f32>]) {
    wav::write_mono_i16(path, &pieces.concat(), 16_000).unwrap();
}

fn run(args: &[&str]) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_edgevox"))
        .arg("run")
        .args(args)
        .env("EDGEVOX_CACHE", cache().root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn whisper() -> Whisper {
    Whisper::load(&asr::model_path(&cache().whisper(), "q8_0", true).unwrap()).unwrap()
}

fn ms(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn two_questions_in_two_spoken_answers_out() {
    let _one = one_at_a_time();
    let d = scratch("two");
    let input = d.join("questions.wav");
    // Long enough a pause that the first answer is over before the second question.
    recording(
        &input,
        &[
            question("capital"),
            silence(14.0),
            question("spider"),
            silence(1.0),
        ],
    );
    let reply = d.join("reply.wav");
    let turns = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        reply.to_str().unwrap(),
    ]);

    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_mentions("transcript 1", field(&turns[0], "transcript"), "capital");
    assert_mentions("transcript 2", field(&turns[1], "transcript"), "spider");
    let mut replies = Vec::new();
    for t in &turns {
        assert!(t["error"].is_null() && t["barge_in"].is_null(), "{t}");
        let tl = &t["timeline"];
        let stages = [
            ms(&tl["transcript_ready_ms"]),
            ms(&tl["first_token_ms"]),
            ms(&tl["first_audio_ms"]),
            ms(&tl["turn_done_ms"]),
        ];
        assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{tl}");
        // Speech starts after the first chunk, long before the turn is over.
        assert!(stages[3] - stages[2] > 1_000.0, "{tl}");
        assert!(t["peak_rss_bytes"].as_u64().unwrap() > 0);
        replies.push(t["reply"].as_str().unwrap().to_string());
    }
    assert_mentions("reply 1", &replies[0], "paris");

    // The reply WAV holds both answers, audibly, and Whisper hears them back.
    let (samples, info) = wav::read_16k_mono(&reply).unwrap();
    let spoken: f64 = turns.iter().map(|t| ms(&t["spoken_s"])).sum();
    assert!(
        (info.seconds() - spoken).abs() < 0.1,
        "{} vs {spoken}",
        info.seconds()
    );
    let words: usize = replies.iter().map(|r| r.split_whitespace().count()).sum();
    assert!(
        info.seconds() > words as f64 * 0.2 && info.seconds() < words as f64 * 1.0 + 5.0,
        "{} s for {words} words",
        info.seconds()
    );
    let rms = (samples.iter().map(|x| x * x).sum::<f32>() / samples.len() as f32).sqrt();
    assert!(rms > 0.01);
    let mut whisper = whisper();
    let heard = whisper
        .transcribe(&samples, &AsrOptions::default())
        .unwrap()
        .text;
    let rate = wer::wer(&replies.join(" "), &heard);
    // Against the same sentences spoken by espeak-ng straight to a file: Whisper base
    // mishears espeak's voice on some words whatever the path ("a spider has eight eyes" ->
    // "a cyber-familia"), so the loop's audio must be heard about as well as the voice's own.
    let direct_samples = tts::render_all(&mut Espeak::default(), &replies.join(" "), Some(16_000))
        .unwrap()
        .samples;
    let heard_direct = whisper
        .transcribe(&direct_samples, &AsrOptions::default())
        .unwrap()
        .text;
    let rate_direct = wer::wer(&replies.join(" "), &heard_direct);
    assert!(
        rate <= rate_direct + 0.15,
        "said {replies:?}, heard {heard:?} (WER {rate:.2}); straight from espeak-ng: \
         {heard_direct:?} (WER {rate_direct:.2})"
    );
}

#[test]
fn silence_in_gives_no_turns_and_an_empty_reply_file() {
    let _one = one_at_a_time();
    let d = scratch("silence");
    let input = d.join("silence.wav");
    recording(&input, &[silence(3.0)]);
    let reply = d.join("reply.wav");
    assert!(
        run(&[
            "--input",
            input.to_str().unwrap(),
            "--output",
            reply.to_str().unwrap()
        ])
        .is_empty()
    );
    let (samples, _) = wav::read_16k_mono(&reply).unwrap();
    assert!(samples.is_empty());
}

/// Speaks `text` with espeak-ng, at 16 kHz.
fn spoken(text: &str) -> Vec<f32> {
    use edgevox::tts::Voice;
    let a = Espeak::default().synthesize(text).unwrap();
    edgevox::audio::resample::resample(&a.samples, a.rate, 16_000).unwrap()
}

/// Time and sums are answered by the skills, exactly and without the model: the time from the
/// replay's clock (`--clock`), the product computed; "repeat that" and "stop" are handled
/// without it too; a question beside them still goes to the model.
#[test]
fn the_time_and_a_sum_are_answered_by_skills_not_the_model() {
    let _one = one_at_a_time();
    let d = scratch("skills");
    let input = d.join("skills.wav");
    recording(
        &input,
        &[
            question("capital"),
            silence(8.0),
            spoken("What time is it?"),
            silence(4.0),
            spoken("What is twelve times seven?"),
            silence(4.0),
            spoken("Repeat that."),
            silence(4.0),
            spoken("Okay, stop talking."),
            silence(1.0),
        ],
    );
    let turns = run(&[
        "--input",
        input.to_str().unwrap(),
        "--clock",
        "2026-12-05T21:07",
    ]);
    assert_eq!(turns.len(), 5, "{turns:?}");
    let skill = |t: &Value| t["skill"]["intent"].as_str().map(str::to_string);
    assert_eq!(skill(&turns[0]), None, "{}", turns[0]);
    assert_mentions("model's reply", field(&turns[0], "reply"), "paris");
    assert!(!turns[0]["stop"].is_null());
    assert_eq!(skill(&turns[1]).as_deref(), Some("time"), "{}", turns[1]);
    // The clock started with the run; the question comes within its first minute.
    assert_mentions("time", field(&turns[1], "reply"), "9:07 pm");
    assert!(
        turns[1]["stop"].is_null(),
        "the model was not asked: {}",
        turns[1]
    );
    assert_eq!(skill(&turns[2]).as_deref(), Some("sum"), "{}", turns[2]);
    assert_mentions("product", field(&turns[2], "reply"), "84");
    // "Repeat that" says the last reply again; "stop" says nothing; neither asks the model.
    assert_eq!(skill(&turns[3]).as_deref(), Some("repeat"), "{}", turns[3]);
    assert_eq!(turns[3]["reply"], turns[2]["reply"]);
    assert_eq!(skill(&turns[4]).as_deref(), Some("stop"), "{}", turns[4]);
    assert_eq!(field(&turns[4], "reply"), "");
    assert!(turns[3]["stop"].is_null() && turns[4]["stop"].is_null());
}

/// A timer set by voice is confirmed, then goes off on the replay's clock five seconds after
/// the request: the timer earcon and a spoken notice, in a turn of its own, after which the
/// replay ends (the session waits for a timer due within a minute of the input's end).
#[test]
fn a_timer_set_by_voice_goes_off_on_the_replay_clock() {
    let _one = one_at_a_time();
    let d = scratch("timer");
    let input = d.join("timer.wav");
    recording(
        &input,
        &[spoken("Set a timer for five seconds."), silence(0.5)],
    );
    let reply = d.join("reply.wav");
    let turns = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        reply.to_str().unwrap(),
    ]);
    assert_eq!(turns.len(), 2, "{turns:?}");
    let skill = |t: &Value| t["skill"]["intent"].as_str().map(str::to_string);
    assert_eq!(skill(&turns[0]).as_deref(), Some("timer"), "{}", turns[0]);
    assert_eq!(turns[0]["skill"]["slots"]["for"], "5", "{}", turns[0]);
    assert_mentions(
        "confirmation",
        field(&turns[0], "reply"),
        "5 seconds starting now",
    );
    assert!(turns[0]["stop"].is_null(), "the model was not asked");
    assert_eq!(
        skill(&turns[1]).as_deref(),
        Some("timer_done"),
        "{}",
        turns[1]
    );
    assert_mentions("notice", field(&turns[1], "reply"), "timer is done");
    // Five seconds after the request was heard, on the replay's clock.
    let after = ms(&turns[1]["opened_s"]) - ms(&turns[0]["opened_s"]);
    assert!(
        (5.0..5.6).contains(&after),
        "went off {after:.2} s after the request"
    );
    // The recording holds both replies; the notice's turn counts the timer earcon it opens
    // with, and a spoken sentence after it.
    let (samples, info) = wav::read_16k_mono(&reply).unwrap();
    let spoken: f64 = turns.iter().map(|t| ms(&t["spoken_s"])).sum();
    assert!(
        (info.seconds() - spoken).abs() < 0.1,
        "{} s recorded, {spoken} s spoken",
        info.seconds()
    );
    let earcon = edgevox::tts::earcon::Earcon::Timer.samples(16_000).len() as f64 / 16_000.0;
    let notice = ms(&turns[1]["spoken_s"]);
    assert!(
        notice > earcon + 0.8,
        "the notice turn played {notice} s, the earcon alone is {earcon} s"
    );
    let heard = whisper()
        .transcribe(&samples, &AsrOptions::default())
        .unwrap()
        .text;
    assert_mentions("the recording", &heard, "timer");
}

/// With a wake word the assistant answers only what is addressed to it: a question before
/// the wake phrase gets no turn; "Hey Jarvis, what time is it?" in one breath is answered (its
/// audio after the phrase is the question); a follow-up inside the window needs no wake
/// phrase; after the window has closed, a question is ignored again.
#[test]
fn with_a_wake_word_only_what_follows_the_phrase_is_answered() {
    let _one = one_at_a_time();
    let d = scratch("wake");
    let input = d.join("wake.wav");
    recording(
        &input,
        &[
            spoken("What is two plus two?"),
            silence(3.0),
            spoken("Hey Jarvis, what time is it?"),
            silence(3.0),
            spoken("What is twelve times seven?"),
            silence(7.0),
            spoken("What day is it?"),
            silence(1.5),
        ],
    );
    let turns = run(&[
        "--input",
        input.to_str().unwrap(),
        "--clock",
        "2026-12-05T21:07",
        "--wake",
        "hey_jarvis",
        "--follow-up-s",
        "4",
    ]);
    let skill = |t: &Value| t["skill"]["intent"].as_str().map(str::to_string);
    assert_eq!(turns.len(), 2, "{turns:#?}");
    assert_eq!(skill(&turns[0]).as_deref(), Some("time"), "{}", turns[0]);
    assert_mentions("time", field(&turns[0], "reply"), "9:07 pm");
    assert_eq!(turns[0]["wake"]["head"], "hey_jarvis", "{}", turns[0]);
    assert!(turns[0]["stop"].is_null(), "the model was not asked");
    // The turn's audio starts after the phrase.
    let phrase_end = ms(&turns[0]["wake"]["at_s"]);
    assert!(ms(&turns[0]["speech_start_s"]) >= phrase_end - 1e-3);
    assert_eq!(skill(&turns[1]).as_deref(), Some("sum"), "{}", turns[1]);
    assert_mentions("product", field(&turns[1], "reply"), "84");
    assert!(turns[1]["wake"].is_null(), "a follow-up: {}", turns[1]);
}

/// "Set the volume to three" turns the speaker down: the same reply, asked before and after,
/// plays at the level squared (30% is a gain of 0.09) in what the speaker played.
#[test]
fn the_volume_skill_turns_the_speaker_down() {
    let _one = one_at_a_time();
    let d = scratch("volume");
    let input = d.join("volume.wav");
    recording(
        &input,
        &[
            spoken("What time is it?"),
            silence(3.0),
            spoken("Set the volume to three."),
            // Room for Whisper on a busy host: speech over an unanswered turn interrupts it.
            silence(6.0),
            spoken("What time is it?"),
            silence(1.5),
        ],
    );
    let reply = d.join("reply.wav");
    let turns = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        reply.to_str().unwrap(),
        "--clock",
        "2026-12-05T21:07",
    ]);
    assert_eq!(turns.len(), 3, "{turns:#?}");
    assert_eq!(turns[1]["skill"]["intent"], "volume_set", "{}", turns[1]);
    assert_mentions("confirmation", field(&turns[1], "reply"), "30 percent");
    assert_eq!(turns[0]["reply"], turns[2]["reply"]);
    // The recording is the turns' audio one after the other.
    let (samples, _) = wav::read_16k_mono(&reply).unwrap();
    let mut at = 0.0;
    let mut peaks = Vec::new();
    for t in &turns {
        let len = ms(&t["spoken_s"]);
        let (a, b) = ((at + 0.05) * 16_000.0, (at + len - 0.05) * 16_000.0);
        let seg = &samples[(a as usize).min(samples.len())..(b as usize).min(samples.len())];
        peaks.push(seg.iter().fold(0.0f32, |m, x| m.max(x.abs())));
        at += len;
    }
    let ratio = peaks[2] / peaks[0];
    assert!(peaks[0] > 0.05, "the first reply is heard: {peaks:?}");
    assert!(
        (0.07..0.11).contains(&ratio),
        "after: {ratio} of before ({peaks:?})"
    );
}

/// Push-to-talk without a wake word: a question asked without a press gets no turn; one
/// asked as the key goes down (a scripted press, `--ptt at:S`) is answered whole.
#[test]
fn a_scripted_key_press_wakes_it_for_one_question() {
    let _one = one_at_a_time();
    let d = scratch("ptt");
    let input = d.join("ptt.wav");
    let first = spoken("What is two plus two?");
    let press_s = (first.len() as f64 / 16_000.0 + 3.0 + 0.2).to_string();
    recording(
        &input,
        &[
            first,
            silence(3.0),
            spoken("What time is it?"),
            silence(1.5),
        ],
    );
    let turns = run(&[
        "--input",
        input.to_str().unwrap(),
        "--clock",
        "2026-12-05T21:07",
        "--ptt",
        &format!("at:{press_s}"),
    ]);
    assert_eq!(turns.len(), 1, "{turns:#?}");
    assert_eq!(turns[0]["skill"]["intent"], "time", "{}", turns[0]);
    assert_eq!(turns[0]["wake"]["head"], "push-to-talk", "{}", turns[0]);
    assert_mentions("time", field(&turns[0], "reply"), "9:07 pm");
    // Nothing of the question was cut: Whisper heard all of it.
    assert_mentions(
        "transcript",
        field(&turns[0], "transcript"),
        "what time is it",
    );
}

#[test]
fn speaking_over_a_reply_stops_it_and_the_new_question_is_answered() {
    let _one = one_at_a_time();
    let d = scratch("barge");
    let input = d.join("barge.wav");
    // The second question comes 2 s after the first: the first answer is playing by then.
    let first = question("capital");
    let second_at = (first.len() as f64 / 16_000.0) + 2.0;
    recording(
        &input,
        &[first, silence(2.0), question("spider"), silence(1.0)],
    );
    let reply = d.join("reply.wav");
    // The speaker leaks into the microphone, as on a device: only the user may interrupt.
    let turns = run(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        reply.to_str().unwrap(),
        "--echo-gain",
        "0.3",
    ]);
    assert_eq!(turns.len(), 2, "{turns:#?}");
    let (t1, t2) = (&turns[0], &turns[1]);
    assert_mentions("transcript 1", field(t1, "transcript"), "capital");
    let b = &t1["barge_in"];
    assert!(b.is_object(), "the first reply was not interrupted: {t1}");
    let at = ms(&b["speech_at_s"]);
    assert!(
        (at - second_at).abs() < 0.5,
        "barge-in at {at} s, question at {second_at} s"
    );
    // Stopped within 200 ms of the speech being detected (and the model too, if it was
    // still generating).
    assert!(ms(&b["playback_stopped_ms"]) <= 200.0, "{b}");
    if !b["generation_stopped_ms"].is_null() {
        assert!(ms(&b["generation_stopped_ms"]) <= 200.0, "{b}");
    }
    // Cut short (or, on a slow machine, not started yet): the full answer takes ~9 s to say.
    let cut = ms(&t1["spoken_s"]);
    assert!(cut < 3.0, "first reply played {cut} s");

    // The first words of the question overlap the reply until it stops: the echo canceller
    // takes the reply out (Whisper hears the clean recording as "How many lengths does a
    // spider have?", WER 0.14; without the canceller, 0.43-0.86).
    let heard = t2["transcript"].as_str().unwrap();
    let rate = wer::wer("How many legs does a spider have?", heard);
    assert!(rate <= 0.3, "heard {heard:?} (WER {rate:.2})");
    assert!(t2["barge_in"].is_null() && t2["error"].is_null(), "{t2}");
    assert!(ms(&t2["spoken_s"]) > 2.0, "{t2}");
    let (_, info) = wav::read_16k_mono(&reply).unwrap();
    let spoken = cut + ms(&t2["spoken_s"]);
    assert!(
        (info.seconds() - spoken).abs() < 0.1,
        "{} vs {spoken}",
        info.seconds()
    );
}

#[test]
fn the_echo_guard_keeps_the_assistant_from_interrupting_itself() {
    let _one = one_at_a_time();
    let d = scratch("echo");
    let input = d.join("capital.wav");
    recording(&input, &[question("capital"), silence(0.5)]);
    let run_with = |name: &str, extra: &[&str]| {
        let reply = d.join(format!("reply-{name}.wav"));
        let gain = if name == "quiet" { "0" } else { "0.4" };
        let mut args = vec![
            "--input",
            input.to_str().unwrap(),
            "--output",
            reply.to_str().unwrap(),
            "--echo-gain",
            gain,
            "--max-turns",
            "2",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    // How long the whole reply takes to say: the same run with no echo at all (greedy, so the
    // same reply).
    let quiet = run_with("quiet", &[]);
    let full = ms(&quiet[0]["spoken_s"]);
    assert!(full > 1.0, "{}", quiet[0]);
    // The guard alone (no echo canceller), and both: the reply plays to its end and is not
    // taken for the user. (The canceller alone is not enough: it starts knowing nothing of the
    // echo path, and the first reply's first 100 ms pass while it learns.)
    for (name, extra) in [
        ("guard", &["--no-aec", "--echo-ratio", "0.6"][..]),
        ("both", &["--echo-ratio", "0.6"][..]),
    ] {
        let turns = run_with(name, extra);
        assert_eq!(turns.len(), 1, "{name}: {turns:#?}");
        assert!(turns[0]["barge_in"].is_null(), "{name}: {}", turns[0]);
        assert!(
            (ms(&turns[0]["spoken_s"]) - full).abs() < 0.1,
            "{name}: the whole reply is {full} s: {}",
            turns[0]
        );
    }
    // With neither, the assistant hears its own voice and stops itself within its first second.
    let turns = run_with("neither", &["--no-aec", "--echo-ratio", "0"]);
    assert!(turns[0]["barge_in"].is_object(), "{}", turns[0]);
    let cut = ms(&turns[0]["spoken_s"]);
    assert!(
        cut < 1.0 && cut < full - 0.5,
        "whole reply {full} s: {}",
        turns[0]
    );
}

/// Whisper, with failures injected by turn: turn 1 hears nothing, turn 2 fails, turn 3 hears
/// a question far longer than the model's context; later turns are transcribed normally.
struct Flaky {
    inner: Whisper,
    turn: usize,
}

impl Recognizer for Flaky {
    fn transcribe(&mut self, samples: &[f32], opts: &AsrOptions) -> Result<Transcript> {
        self.turn += 1;
        let mut t = self.inner.transcribe(samples, opts)?;
        match self.turn {
            1 => t.text.clear(),
            2 => bail!("whisper.cpp failed (injected)"),
            3 => t.text = "Tell me everything about the history of France. ".repeat(40),
            _ => {}
        }
        Ok(t)
    }
}

#[test]
fn failures_inside_turns_are_told_to_the_user_and_the_loop_goes_on() {
    let _one = one_at_a_time();
    let _ = env_logger::builder().is_test(true).try_init();
    let d = scratch("faults");
    let input = d.join("four.wav");
    let q = question("capital");
    recording(
        &input,
        &[
            q.clone(),
            silence(5.0),
            q.clone(),
            silence(5.0),
            q,
            silence(5.0),
            question("hamlet"),
            silence(1.0),
        ],
    );
    let reply = d.join("reply.wav");
    let mut flaky = Flaky {
        inner: whisper(),
        turn: 0,
    };
    let model = LlmModel::load(&cache().llm("q4_1"), &LoadOptions::default()).unwrap();
    // A small context, so the third turn's question cannot fit.
    let mut chat = Chat::new(
        model,
        ChatOptions {
            context: 256,
            max_new_tokens: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let hearing = Hearing {
        detector: vad::detector(&cache().vad_model()).unwrap(),
        endpoint: EndpointConfig::default(),
        barge_in_ms: 96,
        echo_ratio: 0.6,
        aec: Some(Default::default()),
        wake: None,
    };
    let mut seen = Vec::new();
    let turns = pipeline::replay(
        &input,
        hearing,
        &ReplayOptions {
            record: Some(reply.clone()),
            ..Default::default()
        },
        Some(Box::new(Espeak::default())),
        Brain {
            whisper: &mut flaky,
            asr: AsrOptions::default(),
            chat: &mut chat,
        },
        &LoopOptions {
            barge_in: false,
            ..Default::default()
        },
        |t: &TurnReport| seen.push(t.turn),
    )
    .unwrap();
    assert_eq!(seen, [1, 2, 3, 4]);
    let [t1, t2, t3, t4] = &turns[..] else {
        panic!("{turns:#?}")
    };
    assert!(
        t1.error
            .as_deref()
            .unwrap()
            .contains("nothing was understood"),
        "{t1:?}"
    );
    assert_eq!(t1.notice.as_deref(), Some(NOTICE_NOT_UNDERSTOOD));
    assert!(t2.error.as_deref().unwrap().contains("injected"), "{t2:?}");
    assert_eq!(t2.notice.as_deref(), Some(NOTICE_NOT_UNDERSTOOD));
    // The over-long question is kept in the log with the model's error.
    assert!(t3.transcript.starts_with("Tell me everything"), "{t3:?}");
    assert!(
        t3.error
            .as_deref()
            .unwrap()
            .contains("does not fit the context"),
        "{t3:?}"
    );
    assert_eq!(t3.notice.as_deref(), Some(NOTICE_FAILED));
    for t in [t1, t2, t3] {
        // The notice was spoken.
        assert!(t.spoken_s > 0.8, "{t:?}");
        assert!(t.reply.is_empty());
    }
    // And the assistant still answers.
    assert!(t4.error.is_none(), "{t4:?}");
    assert_mentions("transcript 4", &t4.transcript, "hamlet");
    assert_mentions("reply 4", &t4.reply, "shakespeare");
    assert_eq!(chat.history_turns(), 1);

    let (samples, _) = wav::read_16k_mono(&reply).unwrap();
    let heard = flaky
        .inner
        .transcribe(&samples, &AsrOptions::default())
        .unwrap()
        .text;
    let sorries = text::occurrences(&heard, "sorry");
    assert!(sorries >= 2, "{sorries} sorry in {heard:?}");
    assert_mentions("the recorded replies", &heard, "shakespeare");
}

#[test]
fn a_speaker_that_fails_mid_reply_is_reported_and_the_loop_goes_on() {
    let _one = one_at_a_time();
    let d = scratch("devfull");
    let input = d.join("two.wav");
    recording(
        &input,
        &[
            question("capital"),
            silence(4.0),
            question("hamlet"),
            silence(1.0),
        ],
    );
    // /dev/full takes the file open, then every write fails: the disk is full.
    let turns = run(&["--input", input.to_str().unwrap(), "--output", "/dev/full"]);
    assert_eq!(turns.len(), 2, "{turns:#?}");
    let e = turns[0]["error"].as_str().unwrap_or_default();
    assert!(e.contains("/dev/full"), "{}", turns[0]);
    // Replies still come, as text.
    assert_mentions("reply 1", field(&turns[0], "reply"), "paris");
    assert_mentions("transcript 2", field(&turns[1], "transcript"), "hamlet");
    assert!(
        !turns[1]["reply"].as_str().unwrap().is_empty(),
        "{}",
        turns[1]
    );
}

/// `edgevox -v run` live, the microphone being the `edgevox_test` ALSA device playing the
/// capital question, and `speaker` the output; returns the log and the first turn.
fn live_run(name: &str, speaker: &str) -> (String, Value) {
    let clip = cache().synthetic("capital.wav");
    let (home, _) = alsa_capture_home(name, &clip);
    let o = edgevox_with_home(
        &home,
        &[
            "-v",
            "run",
            "--device",
            "edgevox_test",
            "--speaker",
            speaker,
            "--buffer-ms",
            "60000",
            "--max-turns",
            "1",
        ],
        Duration::from_secs(240),
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let turn: Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_mentions("transcript", field(&turn, "transcript"), "capital");
    assert_mentions("reply", field(&turn, "reply"), "paris");
    (e, turn)
}

#[test]
fn live_without_a_speaker_the_replies_are_printed() {
    let _one = one_at_a_time();
    let (log, _) = live_run("live-nospeaker", "no_such_speaker");
    assert!(
        log.contains("no output device named \"no_such_speaker\""),
        "{log}"
    );
    // The reply went to the terminal instead.
    assert!(log.contains("replies are printed instead"), "{log}");
    assert_mentions("the printed reply", &log, "paris");
}

#[test]
fn live_through_cpal_the_reply_goes_to_the_speaker() {
    let _one = one_at_a_time();
    // ALSA's `null` device takes whatever it is given (unpaced): this proves the cpal output
    // path (device format, resampling from the voice's rate, the ring) end to end, not timing.
    let (log, turn) = live_run("live-null", "null");
    assert!(log.contains("speaker: null:"), "{log}");
    assert!(turn["error"].is_null(), "{turn}");
    assert!(ms(&turn["spoken_s"]) > 2.0, "{turn}");
}
