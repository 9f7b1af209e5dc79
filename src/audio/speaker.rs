//! The live speaker through cpal, at whatever rate, format and channel count the device takes.
//!
//! cpal's output callback is a [`Renderer`]: it pops mono samples from the playback ring (no
//! allocation, lock or blocking), converts them to the device's format and copies them to every
//! channel; silence when nothing is queued. As with capture, the stream handle lives on a small
//! thread of its own until the [`Speaker`] is dropped.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use log::info;

use super::capture::{DeviceFormat, Direction, find_device};
use super::playback::{self, Player, Renderer};

/// Largest block rendered at once; the callback loops over larger device buffers.
const BLOCK: usize = 1024;

/// A running output stream. Audio goes in through the [`Player`] that [`Speaker::open`]
/// returns.
pub struct Speaker {
    format: DeviceFormat,
    device_name: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Speaker {
    /// Opens `device` (an id or description name; the default output device when `None`)
    /// with a playback ring of `buffer_ms`.
    pub fn open(device: Option<&str>, buffer_ms: u32) -> Result<(Speaker, Player)> {
        let (setup_tx, setup_rx) = mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let wanted = device.map(str::to_string);
        let thread = std::thread::Builder::new()
            .name("edgevox-speaker".into())
            .spawn(move || match start_stream(wanted.as_deref(), buffer_ms) {
                Ok((stream, player, format, name)) => {
                    let _ = setup_tx.send(Ok((player, format, name)));
                    let _ = stop_rx.recv();
                    drop(stream);
                }
                Err(e) => {
                    let _ = setup_tx.send(Err(e));
                }
            })
            .context("spawning the speaker thread")?;
        let (player, format, device_name) = setup_rx
            .recv()
            .context("the speaker thread ended before the stream started")??;
        info!(
            "speaker: {device_name}: {} ch, {} Hz, {}; ring {buffer_ms} ms",
            format.channels, format.sample_rate, format.sample_format
        );
        Ok((
            Speaker {
                format,
                device_name,
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            player,
        ))
    }

    pub fn format(&self) -> DeviceFormat {
        self.format
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Started = (cpal::Stream, Player, DeviceFormat, String);

fn start_stream(wanted: Option<&str>, buffer_ms: u32) -> Result<Started> {
    let host = cpal::default_host();
    let device = find_device(&host, wanted, Direction::Output)?;
    let name = device
        .id()
        .map(|i| i.id().to_string())
        .unwrap_or_else(|_| "output device".into());
    let config = device.default_output_config().with_context(|| {
        format!("{name}: cannot query its output format (is it a playback device?)")
    })?;
    let format = DeviceFormat {
        sample_rate: config.sample_rate(),
        channels: config.channels(),
        sample_format: config.sample_format(),
    };
    let (player, renderer) = playback::channel(format.sample_rate, buffer_ms);
    let shared = player.shared().clone();
    let on_error = move |e: cpal::Error| shared.fail(format!("speaker: {e}"));
    let stream_config: cpal::StreamConfig = config.into();
    let channels = format.channels as usize;
    let stream = match format.sample_format {
        SampleFormat::I8 => build::<i8>(&device, &stream_config, channels, renderer, on_error),
        SampleFormat::I16 => build::<i16>(&device, &stream_config, channels, renderer, on_error),
        SampleFormat::I32 => build::<i32>(&device, &stream_config, channels, renderer, on_error),
        SampleFormat::U8 => build::<u8>(&device, &stream_config, channels, renderer, on_error),
        SampleFormat::U16 => build::<u16>(&device, &stream_config, channels, renderer, on_error),
        SampleFormat::F32 => build::<f32>(&device, &stream_config, channels, renderer, on_error),
        SampleFormat::F64 => build::<f64>(&device, &stream_config, channels, renderer, on_error),
        other => bail!("{name}: sample format {other} is not supported"),
    }
    .with_context(|| format!("{name}: opening the output stream"))?;
    stream
        .play()
        .with_context(|| format!("{name}: starting the output stream"))?;
    Ok((stream, player, format, name))
}

fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    channels: usize,
    mut renderer: Renderer,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    // Allocated here, once; the callback only reuses it.
    let mut mono = vec![0.0f32; BLOCK];
    let stream = device.build_output_stream::<T, _, _>(
        *config,
        move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
            let t = info.timestamp();
            renderer.stamp_start(t.playback.duration_since(t.callback).as_nanos() as i64);
            for frames in data.chunks_mut(BLOCK * channels) {
                let n = frames.len() / channels;
                renderer.render(&mut mono[..n]);
                for (frame, &s) in frames.chunks_exact_mut(channels).zip(&mono[..n]) {
                    frame.fill(T::from_sample(s));
                }
            }
        },
        on_error,
        None,
    )?;
    Ok(stream)
}
