//! Live capture with cpal, at whatever rate, format and channel count the device offers.
//!
//! The device's callback runs on cpal's audio thread. It only converts samples to `f32` and
//! copies them into a lock-free single-producer ring (rtrb): no allocation, no lock, no
//! blocking. When the ring is full the callback drops what does not fit and counts it; the
//! consumer logs the count. The consumer side ([`Capture`], a [`Source`]) runs on the
//! inference thread, where it downmixes and resamples to 16 kHz.
//!
//! cpal's stream handle is not `Send` on every platform, so it lives on a small thread of its
//! own that builds it, reports the negotiated format and keeps it alive until [`Capture`] is
//! dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use log::{info, warn};

use super::resample::Resampler;
use super::{Source, downmix_into, take_from_ring};

/// Overruns are logged at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// How to open the capture device.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// A device id (ALSA PCM name such as `default`, `hw:CARD=…`) or description name; the
    /// host's default input device when `None`.
    pub device: Option<String>,
    /// Ring-buffer length between the audio callback and the consumer, in milliseconds.
    pub buffer_ms: u32,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            device: None,
            buffer_ms: 2_000,
        }
    }
}

/// One input device as `edgevox devices` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
    pub is_default: bool,
    /// Native format, when the device could be asked: e.g. "2 ch, 48000 Hz, i16".
    pub default_config: Option<String>,
    pub channels: Option<u16>,
    pub sample_rate: Option<u32>,
    /// cpal's name of the sample format ("i16", "f32", ...).
    pub sample_format: Option<String>,
}

/// Input devices of the default host. Never fails for a missing sound card: it returns an
/// empty list (the caller says so).
pub fn list_devices() -> Result<Vec<DeviceInfo>> {
    let host = cpal::default_host();
    let default_id = host.default_input_device().and_then(|d| d.id().ok());
    let devices = host
        .input_devices()
        .with_context(|| format!("listing {} input devices", host.id().name()))?;
    let mut out = Vec::new();
    for d in devices {
        let Ok(id) = d.id() else { continue };
        let name = d
            .description()
            .map(|desc| desc.name().to_string())
            .unwrap_or_else(|_| id.id().to_string());
        let config = d.default_input_config().ok();
        let default_config = config.as_ref().map(|c| {
            format!(
                "{} ch, {} Hz, {}",
                c.channels(),
                c.sample_rate(),
                c.sample_format()
            )
        });
        out.push(DeviceInfo {
            id: id.id().to_string(),
            name,
            is_default: Some(&id) == default_id.as_ref(),
            default_config,
            channels: config.as_ref().map(|c| c.channels()),
            sample_rate: config.as_ref().map(|c| c.sample_rate()),
            sample_format: config.as_ref().map(|c| c.sample_format().to_string()),
        });
    }
    Ok(out)
}

/// Which way a device goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Input,
    Output,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

/// The named device (id or description), or the host's default one.
pub(super) fn find_device(
    host: &cpal::Host,
    wanted: Option<&str>,
    dir: Direction,
) -> Result<cpal::Device> {
    let word = dir.word();
    let Some(wanted) = wanted else {
        let default = match dir {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return default.ok_or_else(|| {
            anyhow!(
                "no default {word} device on the {} host (is there a {}? \
                 `edgevox devices` lists what exists; a device option picks one)",
                host.id().name(),
                if dir == Direction::Input {
                    "microphone"
                } else {
                    "speaker"
                }
            )
        });
    };
    let devices = match dir {
        Direction::Input => host.input_devices(),
        Direction::Output => host.output_devices(),
    }
    .with_context(|| format!("listing {} {word} devices", host.id().name()))?;
    let mut seen = Vec::new();
    for d in devices {
        let id = d.id().map(|i| i.id().to_string()).unwrap_or_default();
        let name = d
            .description()
            .map(|x| x.name().to_string())
            .unwrap_or_default();
        if id == wanted || name == wanted {
            return Ok(d);
        }
        seen.push(id);
    }
    bail!(
        "no {word} device named {wanted:?}; available: {}",
        if seen.is_empty() {
            "none".to_string()
        } else {
            seen.join(", ")
        }
    )
}

/// The negotiated device format.
#[derive(Debug, Clone, Copy)]
pub struct DeviceFormat {
    pub sample_rate: u32,
    pub channels: u16,
    pub sample_format: SampleFormat,
}

/// A running capture: a [`Source`] of 16 kHz mono samples from a device.
pub struct Capture {
    consumer: rtrb::Consumer<f32>,
    format: DeviceFormat,
    overruns: Arc<AtomicU64>,
    reported_overruns: u64,
    last_report: Instant,
    failure: Arc<Mutex<Option<String>>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    resampler: Resampler,
    interleaved: Vec<f32>,
    mono: Vec<f32>,
    ready: Vec<f32>,
    ready_pos: usize,
    device_name: String,
    /// When the first block arrived ([`super::clock::stamp`]; 0 before).
    started: Arc<AtomicU64>,
}

impl Capture {
    /// Opens the device and starts the stream.
    pub fn open(opts: &CaptureOptions) -> Result<Self> {
        let (setup_tx, setup_rx) = mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let overruns = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(Mutex::new(None));
        let wanted = opts.device.clone();
        let buffer_ms = opts.buffer_ms.max(50);
        super::clock::init();
        let started = Arc::new(AtomicU64::new(0));
        let (overruns_cb, failure_cb, started_cb) =
            (overruns.clone(), failure.clone(), started.clone());
        let thread = std::thread::Builder::new()
            .name("edgevox-capture".into())
            .spawn(move || {
                let stream = start_stream(
                    wanted.as_deref(),
                    buffer_ms,
                    overruns_cb,
                    failure_cb,
                    started_cb,
                );
                match stream {
                    Ok((stream, consumer, format, name)) => {
                        let _ = setup_tx.send(Ok((consumer, format, name)));
                        // Keep the stream alive until the Capture is dropped.
                        let _ = stop_rx.recv();
                        drop(stream);
                    }
                    Err(e) => {
                        let _ = setup_tx.send(Err(e));
                    }
                }
            })
            .context("spawning the capture thread")?;
        let (consumer, format, device_name) = setup_rx
            .recv()
            .context("the capture thread ended before the stream started")??;
        info!(
            "capture: {device_name}: {} ch, {} Hz, {}; ring {buffer_ms} ms",
            format.channels, format.sample_rate, format.sample_format
        );
        let resampler = Resampler::to_16k(format.sample_rate)?;
        Ok(Self {
            consumer,
            format,
            overruns,
            reported_overruns: 0,
            last_report: Instant::now() - REPORT_EVERY,
            failure,
            stop: Some(stop_tx),
            thread: Some(thread),
            resampler,
            interleaved: Vec::with_capacity(8192),
            mono: Vec::with_capacity(8192),
            ready: Vec::with_capacity(8192),
            ready_pos: 0,
            device_name,
            started,
        })
    }

    /// When the device delivered its first block, as [`super::clock::stamp`] records it (0
    /// before): the echo canceller lines the speaker's signal up with the microphone by it.
    pub fn started(&self) -> Arc<AtomicU64> {
        self.started.clone()
    }

    pub fn format(&self) -> DeviceFormat {
        self.format
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    fn pull(&mut self) -> Result<bool> {
        let available = self.consumer.slots();
        let channels = self.format.channels as usize;
        let take = (available / channels) * channels;
        if take == 0 {
            return Ok(false);
        }
        take_from_ring(
            &mut self.consumer,
            take,
            &mut self.interleaved,
            "capture ring",
        )?;
        self.mono.clear();
        downmix_into(&self.interleaved, channels, &mut self.mono);
        self.ready.drain(..self.ready_pos);
        self.ready_pos = 0;
        self.resampler.push(&self.mono, &mut self.ready)?;
        Ok(true)
    }
}

impl Source for Capture {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize> {
        loop {
            let n = buf.len().min(self.ready.len() - self.ready_pos);
            if n > 0 {
                buf[..n].copy_from_slice(&self.ready[self.ready_pos..self.ready_pos + n]);
                self.ready_pos += n;
                return Ok(n);
            }
            if let Some(msg) = self.failure.lock().map(|g| g.clone()).unwrap_or(None) {
                bail!("capture from {} stopped: {msg}", self.device_name);
            }
            let lost = self.overruns.load(Ordering::Relaxed);
            if lost > self.reported_overruns && self.last_report.elapsed() >= REPORT_EVERY {
                warn!("capture: the consumer fell behind; {lost} samples dropped so far");
                self.reported_overruns = lost;
                self.last_report = Instant::now();
            }
            if !self.pull()? {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Started = (cpal::Stream, rtrb::Consumer<f32>, DeviceFormat, String);

fn start_stream(
    wanted: Option<&str>,
    buffer_ms: u32,
    overruns: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<String>>>,
    started: Arc<AtomicU64>,
) -> Result<Started> {
    let host = cpal::default_host();
    let device = find_device(&host, wanted, Direction::Input)?;
    let name = device
        .id()
        .map(|i| i.id().to_string())
        .unwrap_or_else(|_| "input device".into());
    let config = device.default_input_config().with_context(|| {
        format!("{name}: cannot query its input format (is it a capture device?)")
    })?;
    let format = DeviceFormat {
        sample_rate: config.sample_rate(),
        channels: config.channels(),
        sample_format: config.sample_format(),
    };
    let capacity = (format.sample_rate as usize * format.channels as usize * buffer_ms as usize
        / 1000)
        .max(1024);
    let (producer, consumer) = rtrb::RingBuffer::new(capacity);
    let stream_config: cpal::StreamConfig = config.into();
    let feed = Feed {
        producer,
        overruns,
        started,
    };
    let err_failure = failure.clone();
    let on_error = move |e: cpal::Error| {
        // Not the audio path: a device error is rare and ends the stream.
        if let Ok(mut f) = err_failure.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
    };
    let stream = match format.sample_format {
        SampleFormat::I8 => build::<i8>(&device, &stream_config, feed, on_error),
        SampleFormat::I16 => build::<i16>(&device, &stream_config, feed, on_error),
        SampleFormat::I32 => build::<i32>(&device, &stream_config, feed, on_error),
        SampleFormat::U8 => build::<u8>(&device, &stream_config, feed, on_error),
        SampleFormat::U16 => build::<u16>(&device, &stream_config, feed, on_error),
        SampleFormat::F32 => build::<f32>(&device, &stream_config, feed, on_error),
        SampleFormat::F64 => build::<f64>(&device, &stream_config, feed, on_error),
        other => bail!("{name}: sample format {other} is not supported"),
    }
    .with_context(|| format!("{name}: opening the input stream"))?;
    stream
        .play()
        .with_context(|| format!("{name}: starting the input stream"))?;
    Ok((stream, consumer, format, name))
}

/// What the input callback writes to: the ring, and its counters.
struct Feed {
    producer: rtrb::Producer<f32>,
    overruns: Arc<AtomicU64>,
    started: Arc<AtomicU64>,
}

fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut feed: Feed,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let stream = device.build_input_stream::<T, _, _>(
        *config,
        move |data: &[T], info: &cpal::InputCallbackInfo| {
            let Feed {
                producer,
                overruns,
                started,
            } = &mut feed;
            let t = info.timestamp();
            let captured_ago = t.callback.duration_since(t.capture).as_nanos() as i64;
            super::clock::stamp_shifted(started, -captured_ago);
            // The real-time path: convert and copy what fits; count the rest.
            let room = producer.slots().min(data.len());
            if let Ok(chunk) = producer.write_chunk_uninit(room) {
                chunk.fill_from_iter(data.iter().map(|s| s.to_sample::<f32>()));
            }
            if room < data.len() {
                overruns.fetch_add((data.len() - room) as u64, Ordering::Relaxed);
            }
        },
        on_error,
        None,
    )?;
    Ok(stream)
}
