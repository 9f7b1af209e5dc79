//! The whole assistant, replayed from a file: utterances (listening thread) → Whisper →
//! the LLM, streaming → chunker → speech (TTS thread) → a reply WAV. Stages are joined by
//! bounded channels; each turn yields a timeline.
//!
//! Live capture with a speaker sink and barge-in build on this (issue 4, next part).

use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use log::{info, warn};
use serde::Serialize;

use crate::asr::{AsrOptions, Whisper};
use crate::audio::{MemorySource, wav};
use crate::listen::{self, Heard, Listener};
use crate::llm::Chat;
use crate::metrics::{ms, peak_rss_bytes};
use crate::tts::{SpeechSink, chunk::Chunker};
use crate::vad::{EndpointConfig, SpeechDetector};

/// Milliseconds after the endpointer delivered the utterance (the end of speech).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub transcript_ready_ms: f64,
    pub first_token_ms: Option<f64>,
    pub first_audio_ms: Option<f64>,
    pub turn_done_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TurnReport {
    pub turn: usize,
    /// Where the utterance was in the input, in seconds.
    pub speech_start_s: f64,
    pub speech_end_s: f64,
    pub transcript: String,
    pub reply: String,
    pub spoken_s: f64,
    pub timeline: Timeline,
    pub peak_rss_bytes: Option<u64>,
    /// What went wrong in this turn, if anything (the loop goes on).
    pub error: Option<String>,
}

enum ToTts {
    Chunk(String),
    EndTurn,
    Finish,
}

enum FromTts {
    /// A chunk's audio is ready (first audio out), with its length.
    Spoken(Instant, f64),
    Failed(String),
    TurnDone,
}

/// Reads `input` (a WAV file) through the speech detector and endpointer.
pub fn file_listener(
    input: &Path,
    detector: Box<dyn SpeechDetector>,
    endpoint: EndpointConfig,
) -> Result<Listener> {
    let (samples, _) = wav::read_16k_mono(input)?;
    Ok(Listener::new(
        Box::new(MemorySource::new(samples)),
        detector,
        endpoint,
    ))
}

/// Runs the assistant on what `listener` hears (`origin` names it in errors), speaking every
/// reply into `sink`; calls `on_turn` with each turn's report as it completes.
pub fn converse(
    listener: Listener,
    origin: &Path,
    whisper: &mut Whisper,
    asr: &AsrOptions,
    chat: &mut Chat,
    sink: Box<dyn SpeechSink>,
    mut on_turn: impl FnMut(&TurnReport),
) -> Result<Vec<TurnReport>> {
    let (heard, _listen_thread) = listen::spawn(listener, 4)?;

    let (to_tts, tts_rx) = mpsc::sync_channel::<ToTts>(16);
    let (tts_tx, from_tts) = mpsc::channel::<FromTts>();
    let tts_thread = std::thread::Builder::new()
        .name("edgevox-tts".into())
        .spawn(move || tts_loop(sink, tts_rx, tts_tx))
        .context("spawning the TTS thread")?;

    let mut reports = Vec::new();
    for h in heard {
        let u = match h.with_context(|| format!("listening to {}", origin.display()))? {
            Heard::Utterance(u) => u,
            Heard::End { .. } => break,
        };
        let t0 = Instant::now();
        let turn = reports.len() + 1;
        let mut report = TurnReport {
            turn,
            speech_start_s: u.start_s,
            speech_end_s: u.end_s,
            transcript: String::new(),
            reply: String::new(),
            spoken_s: 0.0,
            timeline: Timeline::default(),
            peak_rss_bytes: None,
            error: None,
        };
        match whisper.transcribe(&u.samples, asr) {
            Ok(t) => report.transcript = t.text,
            Err(e) => report.error = Some(format!("{e:#}")),
        }
        report.timeline.transcript_ready_ms = ms(t0.elapsed());
        if report.transcript.is_empty() {
            warn!("turn {turn}: nothing was understood; not answering");
        } else {
            let mut chunker = Chunker::new();
            let mut first_token = None;
            let mut send_failed = false;
            let result = chat.ask(&report.transcript, |piece| {
                first_token.get_or_insert_with(Instant::now);
                for c in chunker.push(piece) {
                    send_failed |= to_tts.send(ToTts::Chunk(c)).is_err();
                }
            });
            report.timeline.first_token_ms = first_token.map(|t| ms(t - t0));
            match result {
                Ok(r) => report.reply = r.text,
                Err(e) => report.error = Some(format!("{e:#}")),
            }
            if let Some(c) = chunker.finish() {
                send_failed |= to_tts.send(ToTts::Chunk(c)).is_err();
            }
            send_failed |= to_tts.send(ToTts::EndTurn).is_err();
            if send_failed {
                return Err(anyhow!("the TTS thread stopped"));
            }
            // Wait for this turn's speech to be done, noting when its first audio came out.
            for ev in &from_tts {
                match ev {
                    FromTts::Spoken(at, secs) => {
                        report.timeline.first_audio_ms.get_or_insert(ms(at - t0));
                        report.spoken_s += secs;
                    }
                    FromTts::Failed(e) => {
                        warn!("turn {turn}: speech failed: {e}");
                        report.error.get_or_insert(e);
                    }
                    FromTts::TurnDone => break,
                }
            }
        }
        report.timeline.turn_done_ms = ms(t0.elapsed());
        report.peak_rss_bytes = peak_rss_bytes();
        info!("turn {turn}: {:?} -> {:?}", report.transcript, report.reply);
        on_turn(&report);
        reports.push(report);
    }
    let _ = to_tts.send(ToTts::Finish);
    tts_thread
        .join()
        .map_err(|_| anyhow!("the TTS thread panicked"))??;
    Ok(reports)
}

fn tts_loop(
    mut sink: Box<dyn SpeechSink>,
    rx: mpsc::Receiver<ToTts>,
    tx: mpsc::Sender<FromTts>,
) -> Result<()> {
    for msg in rx {
        match msg {
            ToTts::Chunk(c) => match sink.say(&c) {
                Ok(secs) => {
                    let _ = tx.send(FromTts::Spoken(Instant::now(), secs));
                }
                Err(e) => {
                    let _ = tx.send(FromTts::Failed(format!("{e:#}")));
                }
            },
            ToTts::EndTurn => {
                let _ = tx.send(FromTts::TurnDone);
            }
            ToTts::Finish => break,
        }
    }
    sink.finish()
}
