//! [`GradientSync`]: what an [`crate::train::ImageClassifier`] carries in data-parallel
//! training, so that burn-train's own step runs Horovod's: gradients averaged across the ranks
//! after backward (before the global-norm clip), and after the last optimizer step of every
//! epoch the ranks' parameters compared.

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::train::Interrupter;

use super::communicator::Communicator;
use super::packing::{average_gradients_in, check_same_parameters};
use crate::error::Error;

#[derive(Debug, Default)]
struct Progress {
    /// Optimizer steps taken (counting the resumed epochs' too).
    steps: usize,
    /// The first failure; the run stops after it.
    error: Option<Error>,
}

/// The gradient averaging and parameter check of one rank, shared by every clone of the
/// classifier (burn-train clones the model).
///
/// A collective that fails cannot be reported through burn-train's `TrainStep` (which returns
/// no `Result`): the error is kept, burn-train's [`Interrupter`] is asked to stop (on every
/// rank at the same step, since all see the same collective fail), and
/// [`take_error`](Self::take_error) hands it to [`crate::train::fit`] afterwards.
#[derive(Clone)]
pub struct GradientSync {
    comm: Arc<dyn Communicator>,
    fusion_bytes: usize,
    steps_per_epoch: usize,
    progress: Arc<Mutex<Progress>>,
    /// The flat gradient buffer, kept from one step to the next.
    buffer: Arc<Mutex<Vec<f32>>>,
    interrupter: Interrupter,
}

impl std::fmt::Debug for GradientSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradientSync")
            .field("comm", &self.comm)
            .field("fusion_bytes", &self.fusion_bytes)
            .field("steps_per_epoch", &self.steps_per_epoch)
            .finish_non_exhaustive()
    }
}

impl GradientSync {
    /// Averages over `comm` in pieces of at most `fusion_bytes`; compares the parameters every
    /// `steps_per_epoch` optimizer steps, counting from `steps_done`; stops training through
    /// `interrupter` on a failure.
    pub fn new(
        comm: Arc<dyn Communicator>,
        fusion_bytes: usize,
        steps_per_epoch: usize,
        steps_done: usize,
        interrupter: Interrupter,
    ) -> Self {
        Self {
            comm,
            fusion_bytes,
            steps_per_epoch: steps_per_epoch.max(1),
            progress: Arc::new(Mutex::new(Progress {
                steps: steps_done,
                error: None,
            })),
            buffer: Arc::new(Mutex::new(Vec::new())),
            interrupter,
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, error: Error) {
        let message = error.to_string();
        let mut progress = self.progress();
        if progress.error.is_none() {
            progress.error = Some(error);
        }
        self.interrupter.stop(Some(&message));
    }

    /// Replaces `grads` by their average over the ranks ([`super::average_gradients_in`], in
    /// a buffer kept from step to step). After a failure nothing is exchanged any more (the run
    /// is stopping).
    pub fn average<M: Module>(&self, module: &M, grads: &mut GradientsParams) {
        if self.progress().error.is_some() {
            return;
        }
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let averaged = average_gradients_in(
            module,
            grads,
            self.comm.as_ref(),
            self.fusion_bytes,
            &mut buffer,
        );
        drop(buffer);
        if let Err(e) = averaged {
            self.fail(e);
        }
    }

    /// Counts one optimizer step of `module`; after the last of an epoch, compares the ranks'
    /// parameters ([`check_same_parameters`]).
    pub fn after_step<M: Module>(&self, module: &M) {
        let steps = {
            let mut progress = self.progress();
            if progress.error.is_some() {
                return;
            }
            progress.steps += 1;
            progress.steps
        };
        if steps.is_multiple_of(self.steps_per_epoch) {
            let when = format!("after epoch {}", steps / self.steps_per_epoch);
            if let Err(e) = check_same_parameters(module, self.comm.as_ref(), &when) {
                self.fail(e);
            }
        }
    }

    /// Replaces `values` on every rank by their sums over the ranks (exactly: the float64
    /// values are gathered and added in rank order, the same on every rank). Every rank must
    /// call it at the same point. On a failure the run is stopped and `values` keep this rank's
    /// own.
    pub fn sum_across_ranks(&self, values: &mut [f64]) {
        if self.progress().error.is_some() {
            return;
        }
        let mine: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = match self.comm.all_gather_bytes(&mine) {
            Ok(all) => all,
            Err(e) => return self.fail(e),
        };
        if all.iter().any(|b| b.len() != mine.len()) {
            return self.fail(super::communicator::failure(
                self.comm.as_ref(),
                "the ranks sent validation sums of different lengths",
            ));
        }
        for (i, v) in values.iter_mut().enumerate() {
            *v = all
                .iter()
                .map(|b| {
                    let bytes: [u8; 8] = b[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]);
                    f64::from_le_bytes(bytes)
                })
                .sum();
        }
    }

    /// The failure that stopped training, if any (taken: a second call gives `None`).
    pub fn take_error(&self) -> Option<Error> {
        self.progress().error.take()
    }
}
