//! Per-benchmark timings collected through criterion's `iter_custom`, so a bench can print its
//! own summary (medians, winners, fitted exponents) after each group without reading criterion's
//! files. Included by the benches with `#[path]`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Seconds per iteration of every `iter_custom` call, by benchmark key.
#[derive(Default)]
pub struct Recorder {
    calls: RefCell<HashMap<String, Vec<f64>>>,
}

impl Recorder {
    /// Runs `f` `iters` times, records the mean seconds per run under `key` and returns the
    /// total for criterion.
    pub fn time<O>(&self, key: &str, iters: u64, mut f: impl FnMut() -> O) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        let total = start.elapsed();
        self.calls
            .borrow_mut()
            .entry(key.to_string())
            .or_default()
            .push(total.as_secs_f64() / iters.max(1) as f64);
        total
    }

    /// Median seconds per run over the last `samples` calls of `key` (criterion's measurement
    /// samples come after its warm-up calls), or `None` if `key` never ran (filtered out).
    pub fn median(&self, key: &str, samples: usize) -> Option<f64> {
        let calls = self.calls.borrow();
        let all = calls.get(key)?;
        let mut last: Vec<f64> = all[all.len().saturating_sub(samples)..].to_vec();
        last.sort_by(f64::total_cmp);
        let m = last.len();
        Some(if m % 2 == 1 {
            last[m / 2]
        } else {
            0.5 * (last[m / 2 - 1] + last[m / 2])
        })
    }
}
