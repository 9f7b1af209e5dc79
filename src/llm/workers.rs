//! The LLM's own worker threads for the block products.
//!
//! A decode step runs ~120 small products (50–250 µs each here) with a few µs of other graph
//! nodes between them. Split over rayon, the second half of each product waits for a parked
//! worker to wake up, which takes longer than the half itself: two threads decoded at 1.00× one
//! thread (`edgevox bench llm`, 63.6 vs 63.8 tokens/s on this 2-vCPU host). These workers instead
//! spin on a job word for a short window after each job ([`SPIN`]) and only then park on a
//! condition variable, so during a reply a product starts without a wake-up, and an idle
//! assistant sleeps.
//!
//! The caller claims parts too, so `threads` = 2 means one extra thread, and a part that a
//! descheduled worker has not claimed is run by the caller rather than waited for: on a busy
//! machine the products fall back towards one thread's speed instead of stalling.

use std::cell::RefCell;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// The job's state in one word, so that every decision reads one snapshot:
/// generation (32 bits) | parts (16) | next unclaimed part (16).
fn pack(generation: u64, parts: u64, next: u64) -> u64 {
    (generation << 32) | (parts << 16) | next
}

fn unpack(state: u64) -> (u64, u64, u64) {
    (state >> 32, (state >> 16) & 0xffff, state & 0xffff)
}

struct Shared {
    /// See [`pack`]. A new generation is stored (SeqCst) after `job` is written; any thread
    /// claims a part by a compare-and-swap on `next`, so a part a late or descheduled worker
    /// has not claimed yet is run by the caller instead of waited for.
    state: AtomicU64,
    /// The current job. Written only by the thread holding `Workers::running`, when every
    /// part of the previous job has finished (`done` = parts).
    job: UnsafeCell<Option<Job>>,
    /// Parts of the current job finished.
    done: AtomicUsize,
    /// Workers waiting on `wake` (or about to).
    parked: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
}

impl Shared {
    /// Claims and runs parts of generation `generation` until none is left.
    fn run_parts(&self, generation: u64) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (g, parts, next) = unpack(state);
            if g != generation || next >= parts {
                return;
            }
            match self.state.compare_exchange_weak(
                state,
                pack(g, parts, next + 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: the claim succeeded on this generation, so its job is live:
                    // its caller waits for `done` to count this part before returning, and
                    // `job` is not rewritten before then (see `Shared`'s Sync note).
                    let job =
                        unsafe { (*self.job.get()).expect("a job is set before its generation") };
                    let f = unsafe { &*job };
                    let ok =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(next as usize)));
                    if ok.is_err() {
                        log::error!("an LLM worker's part panicked; aborting");
                        std::process::abort();
                    }
                    self.done.fetch_add(1, Ordering::Release);
                    state = self.state.load(Ordering::Acquire);
                }
                Err(now) => state = now,
            }
        }
    }
}

// SAFETY: `job` is the only non-Sync field. It is written by one thread at a time (the holder
// of `Workers::running`), before the SeqCst store that publishes its generation and only once
// every part of the previous generation has finished; it is read only by a thread that has
// just claimed a part of the current generation (AcqRel CAS, which sees that store), and the
// job's caller does not return before that part is counted in `done`.
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
        ensure!(threads <= 1024, "{threads} LLM threads: at most 1024");
        let shared = Arc::new(Shared {
            state: AtomicU64::new(pack(0, 0, 0)),
            job: UnsafeCell::new(None),
            done: AtomicUsize::new(0),
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
                .spawn(move || worker(&shared))
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

    /// Runs `f(part)` for every part in `0..threads()`, each exactly once, on whichever
    /// thread claims it first (the caller claims parts too, so a part is never left waiting
    /// for a worker that is off its core), and returns when all are done. With several
    /// threads a panic in any part aborts the process (it cannot be carried back safely from
    /// a worker); the parts here are the block kernels, which do not panic on checked inputs.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        let _one_job = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        let (generation, _, _) = unpack(s.state.load(Ordering::Acquire));
        let generation = (generation + 1) & 0xffff_ffff;
        let parts = self.threads as u64;
        // SAFETY: see `Shared`: we hold `running` and every part of the previous job has
        // finished (waited for below), so nobody reads `job` now. The pointer's lifetime is
        // erased; it is only dereferenced before this function returns, because we wait for
        // every claimed part to finish.
        unsafe {
            let job: Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f);
            *s.job.get() = Some(job);
        }
        s.done.store(0, Ordering::Relaxed);
        s.state.store(pack(generation, parts, 0), Ordering::SeqCst);
        if s.parked.load(Ordering::SeqCst) > 0 {
            let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        // Our share, and whatever the workers have not claimed by the time we are free.
        s.run_parts(generation);
        // Past YIELD_AFTER, a worker inside a part is off its core (another stage busy,
        // tests in parallel): `pause` lets it run.
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < self.threads {
            pause(&mut spins);
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        let (generation, _, _) = unpack(s.state.load(Ordering::Acquire));
        s.state
            .store(pack((generation + 1) & 0xffff_ffff, 0, 0), Ordering::SeqCst);
        {
            let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// One turn of a wait: a spin-loop hint for the first [`YIELD_AFTER`] turns, then the core
/// handed to another thread.
fn pause(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if *spins < YIELD_AFTER {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn worker(s: &Shared) {
    // Generation 0 is the one before any job (read here, a job already started would be
    // missed; its parts would still run, on the caller).
    let mut seen = 0;
    let generation = |s: &Shared| unpack(s.state.load(Ordering::Acquire)).0;
    loop {
        // Spin for a new generation, then park.
        let mut spins = 0u32;
        let mut since = None;
        let next = loop {
            let g = generation(s);
            if g != seen {
                break g;
            }
            pause(&mut spins);
            if spins.is_multiple_of(1024) {
                let t0 = *since.get_or_insert_with(Instant::now);
                if t0.elapsed() >= SPIN {
                    let mut g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                    s.parked.fetch_add(1, Ordering::SeqCst);
                    while unpack(s.state.load(Ordering::SeqCst)).0 == seen {
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
        s.run_parts(seen);
    }
}

/// A mutable f32 buffer that the parts of one job write in disjoint ranges.
#[derive(Clone, Copy)]
pub struct SharedMut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: it only hands out ranges through the unsafe `slice`, whose callers promise that no
// two parts take overlapping ranges while the job runs.
unsafe impl Sync for SharedMut {}
unsafe impl Send for SharedMut {}

impl SharedMut {
    pub fn new(buf: &mut [f32]) -> SharedMut {
        SharedMut {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    /// `len` values from `offset`.
    ///
    /// # Safety
    /// The buffer given to [`SharedMut::new`] must outlive the returned slice and not be used
    /// otherwise meanwhile, and no other live slice from this `SharedMut` may overlap it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, offset: usize, len: usize) -> &mut [f32] {
        assert!(offset + len <= self.len, "range outside the shared buffer");
        // SAFETY: in bounds (checked above); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
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
