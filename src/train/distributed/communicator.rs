//! [`Communicator`]: the collective operations data-parallel training needs, whatever carries
//! them (MPI between processes, or [`super::LocalGroup`] between threads in the tests).

use crate::error::{Error, Result};

/// The collectives of data-parallel training, Horovod's set: every rank calls the same
/// operations in the same order with buffers of the same length.
///
/// Implementations block until every rank has joined an operation, and return an error (never
/// hang) when a rank leaves the group before joining.
pub trait Communicator: Send + Sync + std::fmt::Debug {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// Replaces `buf` on every rank by the element-wise sum of every rank's `buf`.
    ///
    /// # Errors
    /// [`Error::Distributed`] if the operation could not complete.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;

    /// Replaces `buf` on every rank by rank `root`'s `buf` (of the same length everywhere).
    ///
    /// # Errors
    /// [`Error::Distributed`] if the operation could not complete.
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()>;

    /// Every rank's `mine`, in rank order, on every rank. The byte strings may differ in
    /// length.
    ///
    /// # Errors
    /// [`Error::Distributed`] if the operation could not complete.
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>>;

    /// Says that this rank finished the job normally: the communicator may then shut down
    /// cleanly when dropped. Without it (an error on this rank), the drop leaves the group
    /// without waiting for the others, so that the launcher ends the job instead of every
    /// rank waiting for this one.
    fn finish(&self) {}
}

/// The [`Error::Distributed`] of `comm` with `reason`.
pub(crate) fn failure(comm: &dyn Communicator, reason: impl Into<String>) -> Error {
    Error::Distributed {
        rank: comm.rank(),
        size: comm.size(),
        reason: reason.into(),
    }
}
