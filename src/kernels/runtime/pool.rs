//! [`on_pool`]: a whole model call run on a worker of the rayon pool.
//!
//! Every kernel splits its work over the rayon pool. Called from a thread outside the pool
//! (a program's main thread), each parallel loop hands its work to the pool and puts the
//! calling thread to sleep until the pool is done: a cross-thread wake-up after every
//! operation, each costing microseconds (more on a virtual machine) while the cores wait. Run
//! from a worker, the same loops start on that worker at once, and the other workers take work
//! from it. A model call is many short operations, so this pays most for small maps and for
//! training steps; for large inference maps it can cost (see [`pays_on_pool`]), and
//! [`pays_on_pool`] then leaves the call where it is.

use burn::prelude::*;

use std::sync::Mutex;

/// Most input pixels (`B·H·W`) for which an inference call runs on the pool
/// ([`pays_on_pool`]): 2¹⁷, between vHeat-T at 224² batch 1 (50 k pixels, which gains on the
/// pool) and 512² batch 1 (262 k, which loses a little).
pub const ON_POOL_MAX_PIXELS: usize = 1 << 17;

/// Whether an inference call on `images` (`[B, C, H, W]`) gains from [`on_pool`]: it takes the
/// host kernels' path ([`crate::kernels::on_host`]) and has at most [`ON_POOL_MAX_PIXELS`] pixels.
///
/// A call with small maps is many short operations, and the hand-overs dominate. With large
/// maps they do not, and a cost shows instead: the C allocator serves a worker thread from an
/// arena of its own, which returns freed memory to the system more eagerly than the main
/// thread's, so outputs of a few MiB are faulted in afresh more often (more page faults, a
/// few per cent less throughput at vHeat-T 768² batch 1). A training step
/// (`train::ImageClassifier::gradients`) runs on the pool whatever its size: its activations
/// live until the backward pass, so it does not pay that cost.
pub fn pays_on_pool(images: &Tensor<4>) -> bool {
    let [b, _, h, w] = images.dims();
    crate::kernels::on_host(images) && b.saturating_mul(h).saturating_mul(w) <= ON_POOL_MAX_PIXELS
}

/// Runs `f` on a worker of the current rayon pool (the global one from outside any pool) when
/// `host` is true (pass [`crate::kernels::on_host`] of the call's input: whether the kernels run) and
/// the calling thread is not already a worker; otherwise runs it here. Returns what `f`
/// returns.
///
/// The model's entry points use it (`VHeat::forward` and the other forward passes
/// where [`pays_on_pool`], the training step of `train::ImageClassifier` always); wrap a
/// larger piece of work of your own in it to start every operation inside from the pool, too.
///
/// `f` may use any thread-safe state, but should not wait for another thread that needs a rayon
/// worker to make progress: while `f` runs it occupies one. Likewise a rayon task of your own
/// must not wait for a thread that is calling this: the call needs the pool's first worker.
pub fn on_pool<R: Send>(host: bool, f: impl FnOnce() -> R + Send) -> R {
    if !host || rayon::current_thread_index().is_some() {
        return f();
    }
    // Always the same worker, the pool's first: the C allocator gives each thread its own
    // arena, so a call that ran on whichever worker was free would leave its freed
    // temporaries in that worker's arena, and alternating workers would keep up to twice the
    // memory. The other workers run their empty share of the broadcast and then take work from
    // the first.
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
    fn inference_calls_go_to_the_pool_up_to_the_pixel_limit_and_only_on_the_host() {
        let flex = Device::flex();
        let input = |dims: [usize; 4]| Tensor::<4>::zeros(dims, &flex);
        assert!(pays_on_pool(&input([1, 3, 224, 224])));
        assert!(
            pays_on_pool(&input([2, 3, 256, 256])),
            "exactly 2^17 pixels"
        );
        assert!(!pays_on_pool(&input([2, 3, 256, 257])));
        assert!(!pays_on_pool(&input([8, 3, 224, 224])));
        let _lock = crate::kernels::isa::tests_lock(); // set_enabled is process-wide
        crate::kernels::set_enabled(false);
        let off = pays_on_pool(&input([1, 3, 32, 32]));
        crate::kernels::set_enabled(true);
        assert!(!off, "Burn's operators, not the kernels: nothing to gain");
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
