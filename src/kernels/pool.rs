//! [`on_pool`]: a whole model call run on a worker of the rayon pool.
//!
//! Every kernel splits its work over the rayon pool. Called from a thread outside the pool
//! (a program's main thread), each parallel loop hands its work to the pool and puts the
//! calling thread to sleep until the pool is done: two cross-thread wake-ups per operation,
//! about a hundred per vHeat-T forward pass and a thousand per training step, each costing
//! tens of microseconds on a virtual machine while the cores wait. Run from a worker, the same
//! loops start on that worker at once, and the other workers take work from it.
//!
//! Measured side by side on the 2-core AMD EPYC (Zen 5, AVX-512), 2026-12-06: the README's
//! main-job network's training step 3,700–4,050 → 4,900–4,950 img/s; vHeat-T 224² batch-8
//! training step 8.5–9.3 → 9.3–9.8 img/s; batch-1 inference +1–8 %.

use std::sync::Mutex;

/// Runs `f` on a worker of the current rayon pool (the global one from outside any pool) when
/// `host` is true (pass [`super::on_host`] of the call's input: whether the kernels run) and
/// the calling thread is not already a worker; otherwise runs it here. Returns what `f`
/// returns.
///
/// The model's entry points use it ([`crate::VHeat::forward`], the training step of
/// `train::ImageClassifier`); wrap a larger piece of work of your own in it to start every
/// operation inside from the pool, too.
///
/// `f` may use any thread-safe state, but should not wait for another thread that needs a rayon
/// worker to make progress: while `f` runs it occupies one.
pub fn on_pool<R: Send>(host: bool, f: impl FnOnce() -> R + Send) -> R {
    if !host || rayon::current_thread_index().is_some() {
        return f();
    }
    // Always the same worker, the pool's first: the C allocator gives each thread its own
    // arena, so a call that ran on whichever worker was free left its freed temporaries in
    // that worker's arena, and alternating workers kept up to twice the memory (peak RSS of a
    // vHeat-T batch-8 training step 2.2–2.6 GiB in some runs against 1.5). The other workers
    // run their empty share of the broadcast and then take work from the first.
    let f = Mutex::new(Some(f));
    let mut results = rayon::broadcast(|ctx| {
        if ctx.index() == 0 {
            let f = f.lock().unwrap_or_else(|e| e.into_inner()).take();
            f.map(|f| f())
        } else {
            None
        }
    });
    results
        .swap_remove(0)
        .expect("the pool's first worker ran the call")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_the_first_worker_only_for_host_calls_from_outside_the_pool() {
        assert_eq!(
            rayon::current_thread_index(),
            None,
            "test threads are not workers"
        );
        assert_eq!(on_pool(true, rayon::current_thread_index), Some(0));
        assert_eq!(on_pool(false, rayon::current_thread_index), None);
        // Nested calls run where they are; the value comes back through every level.
        let nested = on_pool(true, || {
            on_pool(true, || (rayon::current_thread_index(), 7))
        });
        assert_eq!(nested, (Some(0), 7));
        // Inside another pool the call stays on that pool's worker.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let inside = pool.install(|| {
            let here = rayon::current_thread_index();
            (here, on_pool(true, rayon::current_thread_index))
        });
        assert_eq!(inside.0, inside.1);
        assert!(inside.0.is_some());
    }

    #[test]
    fn parallel_work_inside_is_shared_and_a_panic_comes_back_to_the_caller() {
        use rayon::prelude::*;
        let sum: u64 = on_pool(true, || (0..100_000u64).into_par_iter().sum());
        assert_eq!(sum, 99_999 * 100_000 / 2);
        let caught = std::panic::catch_unwind(|| on_pool(true, || panic!("inside the pool")));
        assert!(caught.is_err());
        // The pool still serves calls after a panic.
        assert_eq!(on_pool(true, || 1 + 1), 2);
    }
}
