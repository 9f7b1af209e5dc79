//! A normalized least-mean-squares (NLMS) adaptive FIR filter: the echo canceller's model of
//! the echo path, learnt sample by sample from the speaker's signal and the microphone.

use crate::simd;

/// A normalized least-mean-squares adaptive FIR filter over the far-end (speaker) signal.
pub struct Nlms {
    taps: usize,
    weights: Vec<f32>,
    /// The far-end history: the window is `history[start..start + taps]`, oldest first; the
    /// slack after it is filled sample by sample, then the window moves back to the front.
    history: Vec<f32>,
    start: usize,
    /// Sum of squares of the window.
    power: f32,
    step: f32,
    eps: f32,
}

impl Nlms {
    pub fn new(taps: usize, step: f32) -> Self {
        let taps = taps.max(1);
        Self {
            taps,
            weights: vec![0.0; taps],
            history: vec![0.0; taps + 4096],
            start: 0,
            power: 0.0,
            step,
            // About -50 dBFS of white noise over the window: keeps quiet passages from
            // blowing up the step.
            eps: taps as f32 * 1e-5,
        }
    }

    /// Takes the next speaker sample `x` and microphone sample `d`; returns `d` minus the
    /// estimated echo, and learns from it when `adapt`.
    #[inline]
    pub fn process(&mut self, x: f32, d: f32, adapt: bool) -> f32 {
        if self.start + self.taps == self.history.len() {
            self.history.copy_within(self.start.., 0);
            self.start = 0;
            // Resynchronise the running sum (rounding drift).
            self.power = simd::sum_squares(&self.history[..self.taps]);
        }
        let leaving = self.history[self.start];
        self.history[self.start + self.taps] = x;
        self.start += 1;
        self.power = (self.power + x * x - leaving * leaving).max(0.0);
        let window = &self.history[self.start..self.start + self.taps];
        let e = d - simd::dot(&self.weights, window);
        if adapt {
            let g = self.step * e / (self.power + self.eps);
            simd::axpy(&mut self.weights, g, window);
        }
        e
    }

    /// Mean square of the far end over the window.
    pub fn far_power(&self) -> f32 {
        self.power / self.taps as f32
    }

    pub fn reset(&mut self) {
        self.weights.fill(0.0);
    }

    pub fn taps(&self) -> usize {
        self.taps
    }

    pub fn weights(&self) -> &[f32] {
        &self.weights
    }
}
