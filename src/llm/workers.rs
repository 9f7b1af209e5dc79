//! The LLM's own worker threads for the block products.
//!
//! A decode step runs ~120 small products (50–250 µs each here) with a few µs of other graph
//! nodes between them. Split over rayon, the second half of each product waits for a parked
//! worker to wake up, which takes longer than the half itself: two threads decoded at 1.00× one
//! thread (`edgevox bench llm`, 63.6 vs 63.8 tokens/s on this 2-vCPU host). These workers instead
//! spin on a generation counter for a short window after each job ([`SPIN`]) and only then
//! park on a condition variable, so during a reply they answer within a few hundred
//! nanoseconds, and an idle assistant sleeps.
//!
//! The caller does part 0 of every job itself, so `threads` = 2 means one extra thread.

use std::cell::RefCell;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

/// How long an idle worker spins before it parks: longer than the gaps between a step's
/// products and between tokens, short enough that a finished reply stops burning a core at once.
pub const SPIN: Duration = Duration::from_millis(2);

/// Spins (a few µs) before a waiting thread starts yielding its core.
const YIELD_AFTER: u32 = 4096;

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped (Release) after `job` is written; workers start part `id` when it changes.
    generation: AtomicUsize,
    /// The current job. Written only by the thread holding `Workers::running`, while no
    /// worker is inside a job (`pending` is 0).
    job: UnsafeCell<Option<Job>>,
    /// Worker parts of the current job not yet finished.
    pending: AtomicUsize,
    /// Workers waiting on `wake` (or about to).
    parked: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

// SAFETY: `job` is the only non-Sync field. It is written by one thread at a time (the holder
// of `Workers::running`) strictly before the Release bump of `generation`, and read by workers
// only after an Acquire load that observed that bump and before they decrement `pending`; the
// writer waits for `pending` to reach 0 (Acquire) before it writes again.
unsafe impl Sync for Shared {}
// SAFETY: as above; the job pointer is only dereferenced under that protocol, and what it
// points to is `Sync`.
unsafe impl Send for Shared {}

/// A fixed set of threads that run one job's parts at a time (see the module comment).
pub struct Workers {
    shared: Arc<Shared>,
    threads: usize,
    running: Mutex<()>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads)
            .finish()
    }
}

impl Workers {
    /// `threads` parts per job: the caller plus `threads - 1` spawned workers.
    pub fn new(threads: usize) -> Result<Arc<Workers>> {
        ensure!(threads >= 1, "the LLM needs at least 1 thread, not 0");
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut handles = Vec::with_capacity(threads - 1);
        for id in 1..threads {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("edgevox-llm-{id}"))
                .spawn(move || worker(&shared, id))
                .context("starting an LLM worker thread")?;
            handles.push(handle);
        }
        Ok(Arc::new(Workers {
            shared,
            threads,
            running: Mutex::new(()),
            handles,
        }))
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(part)` for every part in `0..threads()`, part 0 on the calling thread, and
    /// returns when all are done. A panic in a worker's part aborts the process (it cannot be
    /// carried back safely); the parts here are the block kernels, which do not panic on
    /// checked inputs.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        let _one_job = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: see `Shared`: we hold `running` and `pending` is 0 (the previous job was
        // waited for below), so no worker reads `job` now. The pointer's lifetime is erased;
        // it is only dereferenced before this function returns, because we wait for every
        // worker to finish its part.
        unsafe {
            let job: Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f);
            *s.job.get() = Some(job);
        }
        s.pending.store(self.threads - 1, Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.parked.load(Ordering::SeqCst) > 0 {
            let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        f(0);
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            spins = spins.saturating_add(1);
            if spins < YIELD_AFTER {
                std::hint::spin_loop();
            } else {
                // More threads than free cores (another stage busy, tests in parallel):
                // let the worker we wait for run.
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        {
            let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(s: &Shared, id: usize) {
    // Generation 0 is the one before any job (read here, a job already started would be
    // missed, and its caller would wait forever).
    let mut seen = 0;
    loop {
        // Spin for a new generation, then park.
        let mut spins = 0u32;
        let mut since = None;
        let next = loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            spins = spins.wrapping_add(1);
            if spins < YIELD_AFTER {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            if spins.is_multiple_of(1024) {
                let t0 = *since.get_or_insert_with(Instant::now);
                if t0.elapsed() >= SPIN {
                    let mut g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                    s.parked.fetch_add(1, Ordering::SeqCst);
                    while s.generation.load(Ordering::SeqCst) == seen {
                        g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                    s.parked.fetch_sub(1, Ordering::SeqCst);
                    drop(g);
                    since = None;
                }
            }
        };
        seen = next;
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: the Acquire load above saw the bump that followed the write of `job`, and
        // the caller of `run` keeps `f` alive until `pending` reaches 0, which we only
        // decrement after the call.
        let job = unsafe { (*s.job.get()).expect("a job is set before its generation") };
        let f = unsafe { &*job };
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(id)));
        if ok.is_err() {
            log::error!("an LLM worker's part panicked; aborting");
            std::process::abort();
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Workers>>> = const { RefCell::new(None) };
}

/// Runs `f` with `workers` as the pool that block products on this thread split over.
pub fn enter<R>(workers: &Arc<Workers>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<Workers>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.borrow_mut().replace(workers.clone()));
    let _restore = Restore(prev);
    f()
}

/// The pool entered on this thread, if any.
pub fn current() -> Option<Arc<Workers>> {
    CURRENT.with(|c| c.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_part_runs_once_per_job_across_many_jobs_and_after_parking() {
        let w = Workers::new(3).unwrap();
        let counts: Vec<AtomicU64> = (0..3).map(|_| AtomicU64::new(0)).collect();
        for round in 0..2000 {
            w.run(&|part| {
                counts[part].fetch_add(1, Ordering::Relaxed);
            });
            if round == 1000 {
                // Long enough for the workers to park; the next job must wake them.
                std::thread::sleep(SPIN * 3);
            }
        }
        for c in &counts {
            assert_eq!(c.load(Ordering::Relaxed), 2000);
        }
    }

    #[test]
    fn the_job_sees_the_callers_data_and_its_writes_are_visible_after() {
        let w = Workers::new(2).unwrap();
        let mut out = vec![0u64; 64];
        for k in 1..50u64 {
            let cells: Vec<AtomicU64> = (0..64).map(|_| AtomicU64::new(0)).collect();
            w.run(&|part| {
                for (i, c) in cells.iter().enumerate().skip(part * 32).take(32) {
                    c.store(k * i as u64, Ordering::Relaxed);
                }
            });
            for (o, c) in out.iter_mut().zip(&cells) {
                *o = c.load(Ordering::Relaxed);
            }
            assert!(out.iter().enumerate().all(|(i, &v)| v == k * i as u64));
        }
    }

    #[test]
    fn enter_sets_and_restores_the_current_pool() {
        assert!(current().is_none());
        let w = Workers::new(2).unwrap();
        enter(&w, || {
            assert_eq!(current().unwrap().threads(), 2);
        });
        assert!(current().is_none());
        assert!(Workers::new(0).is_err());
    }
}
