//! The speaker's volume: a level in percent, set by the volume skill on the thinking thread
//! and applied by the [`super::playback::Player`] as it queues samples (never in the audio
//! callback, which only reads the ring).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Percent steps of "louder" / "quieter".
pub const STEP: i32 = 10;

#[derive(Debug, Clone)]
pub struct Volume(Arc<AtomicU8>);

impl Default for Volume {
    fn default() -> Self {
        Volume(Arc::new(AtomicU8::new(100)))
    }
}

impl Volume {
    pub fn percent(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the level, clamped to 0-100; returns it.
    pub fn set(&self, percent: i32) -> u8 {
        let p = percent.clamp(0, 100) as u8;
        self.0.store(p, Ordering::Relaxed);
        p
    }

    /// Changes the level by `delta` percent, clamped; returns the new level.
    pub fn step(&self, delta: i32) -> u8 {
        self.set(self.percent() as i32 + delta)
    }

    /// The amplitude factor: the level squared (roughly even steps in loudness; 50% is
    /// -12 dB, 10% is -40 dB).
    pub fn gain(&self) -> f32 {
        let p = self.percent() as f32 / 100.0;
        p * p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_clamped_and_shared() {
        let v = Volume::default();
        let w = v.clone();
        assert_eq!(v.percent(), 100);
        assert_eq!(v.step(STEP), 100);
        assert_eq!(v.set(30), 30);
        assert!((w.gain() - 0.09).abs() < 1e-6);
        assert_eq!(w.step(-STEP * 5), 0);
        assert_eq!(w.gain(), 0.0);
        assert_eq!(v.set(250), 100);
    }
}
