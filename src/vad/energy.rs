//! Energy detector: loudness above an adaptive noise floor, mapped to a probability.

use anyhow::Result;

use super::SpeechDetector;

/// Tracks the noise floor as a slow follower of quiet windows and scores each window by how
/// far its level (dBFS) rises above it.
#[derive(Debug, Clone)]
pub struct Energy {
    floor_db: f32,
    /// dB above the floor that scores 0.5.
    pub margin_db: f32,
    /// Absolute level under which nothing is speech.
    pub min_db: f32,
}

impl Default for Energy {
    fn default() -> Self {
        Self {
            floor_db: -60.0,
            margin_db: 12.0,
            min_db: -50.0,
        }
    }
}

impl SpeechDetector for Energy {
    fn probability(&mut self, window: &[f32]) -> Result<f32> {
        let power = crate::simd::sum_squares(window) / window.len().max(1) as f32;
        let db = 10.0 * (power + 1e-10).log10();
        // The floor falls fast and rises slowly, so speech does not drag it up.
        let rate = if db < self.floor_db { 0.3 } else { 0.01 };
        self.floor_db += rate * (db - self.floor_db);
        self.floor_db = self.floor_db.clamp(-90.0, -20.0);
        if db < self.min_db {
            return Ok(0.0);
        }
        let x = (db - self.floor_db - self.margin_db) / 3.0;
        Ok(1.0 / (1.0 + (-x).exp()))
    }

    fn reset(&mut self) {
        *self = Self {
            margin_db: self.margin_db,
            min_db: self.min_db,
            ..Self::default()
        };
    }

    fn name(&self) -> &'static str {
        "energy"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_scores_high_and_silence_low() {
        let mut e = Energy::default();
        let quiet: Vec<f32> = (0..512).map(|i| ((i * 7919) % 13) as f32 * 1e-5).collect();
        for _ in 0..30 {
            assert!(e.probability(&quiet).unwrap() < 0.1);
        }
        let tone: Vec<f32> = (0..512).map(|i| (i as f32 * 0.1).sin() * 0.3).collect();
        assert!(e.probability(&tone).unwrap() > 0.9);
        assert_eq!(e.probability(&[0.0; 512]).unwrap(), 0.0);
    }
}
