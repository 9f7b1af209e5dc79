//! The stream clock: when each audio stream's first block was played or captured, on one
//! process-wide clock, so the echo canceller can line the speaker's signal up with the
//! microphone ([`super::aec::Align::Stamps`]). Stamping is real-time safe: no allocation, no
//! lock, one atomic store.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Records "now" in `cell` unless it already holds a time (nanoseconds since a process-wide
/// base, never 0). Real-time safe once the base exists: [`super::aec::EchoCanceller::new`] and the
/// device openers create it before any callback runs.
pub fn stamp(cell: &AtomicU64) {
    stamp_shifted(cell, 0);
}

/// [`stamp`] of "now + `shift_ns`": a device callback knows when its block is really played
/// (later) or was really captured (earlier).
pub fn stamp_shifted(cell: &AtomicU64, shift_ns: i64) {
    // Stamps are biased by 1,000 s so that one shifted before the base still fits (and
    // stays clear of 0, "not yet"); only differences between stamps matter.
    const BIAS_NS: i64 = 1_000_000_000_000;
    if cell.load(Ordering::Relaxed) == 0 {
        let now = base().elapsed().as_nanos() as i64 + BIAS_NS;
        cell.store(
            now.saturating_add(shift_ns).max(1) as u64,
            Ordering::Release,
        );
    }
}

/// Creates the base [`stamp`] measures from (call before starting audio streams).
pub fn init() {
    base();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_stamped_once_when_its_first_block_is_heard() {
        let (plain, early) = (AtomicU64::new(0), AtomicU64::new(0));
        stamp_shifted(&early, -5_000_000);
        stamp(&plain);
        let (p, e) = (plain.load(Ordering::Relaxed), early.load(Ordering::Relaxed));
        assert!(p > 0 && e > 0);
        // Captured 5 ms before the callback: stamped (nearly) 5 ms earlier.
        assert!(p > e && p - e >= 5_000_000 && p - e < 50_000_000, "{p} {e}");
        // Later blocks do not move it.
        stamp(&plain);
        assert_eq!(plain.load(Ordering::Relaxed), p);
    }
}
