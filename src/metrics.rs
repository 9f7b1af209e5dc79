//! Process measurements shared by the benchmarks and the per-turn timelines.

use std::time::Duration;

/// Peak resident set size of this process so far, in bytes (`VmHWM`), when the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    read_status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Current resident set size in bytes (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    read_status_kib("VmRSS:").map(|kib| kib * 1024)
}

fn read_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Milliseconds as a float, the unit every JSON report uses.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// One glibc heap arena for every thread (call first thing in `main`, before any thread
/// starts). By default glibc gives threads arenas of their own, and a block freed in one is
/// reused only there: with the LLM's steps running on either of the pool's workers, each
/// arena kept its own copy of the growing KV cache's freed buffers (measured on the glasses'
/// plan: 447-470 MiB peak instead of 389). The assistant allocates a few buffers per step, so
/// sharing one arena costs nothing measurable.
pub fn one_heap_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_ARENA_MAX: i32 = -8;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only sets an allocator parameter; it takes no pointers.
        unsafe {
            mallopt(M_ARENA_MAX, 1);
        }
    }
}

/// Hands the heap memory freed after loading a model (the parsed protobuf, tract's copies
/// while it optimizes) back to the system: glibc keeps freed blocks in its arenas otherwise.
pub fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes no pointers.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn rss_is_reported_on_linux() {
        let rss = rss_bytes().expect("VmRSS");
        let peak = peak_rss_bytes().expect("VmHWM");
        assert!(rss > 0 && peak >= rss);
    }
}
