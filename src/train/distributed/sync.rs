//! [`GradientSync`]: what an [`crate::train::ImageClassifier`] carries in data-parallel
//! training, so that burn-train's own step runs Horovod's: gradients averaged across the ranks
//! after backward (before the global-norm clip), and after the last optimizer step of every
//! epoch the ranks' parameters compared.

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::train::Interrupter;

use super::communicator::Communicator;
use super::packing::{average_gradients, check_same_parameters};
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

    /// Replaces `grads` by their average over the ranks ([`average_gradients`]). After a
    /// failure nothing is exchanged any more (the run is stopping).
    pub fn average<M: Module>(&self, module: &M, grads: &mut GradientsParams) {
        if self.progress().error.is_some() {
            return;
        }
        if let Err(e) = average_gradients(module, grads, self.comm.as_ref(), self.fusion_bytes) {
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

    /// The failure that stopped training, if any (taken: a second call gives `None`).
    pub fn take_error(&self) -> Option<Error> {
        self.progress().error.take()
    }
}
