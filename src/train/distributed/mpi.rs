//! [`MpiCommunicator`]: the collectives over MPI (Open MPI or MPICH, through the `mpi` crate).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};
use mpi::Threading;

use super::communicator::Communicator;
use crate::error::{Error, Result};

/// `MPI_COMM_WORLD` of a process started by `mpirun`/`mpiexec`/`srun` (or alone: a world of
/// one).
///
/// MPI is initialised at `MPI_THREAD_SERIALIZED` and every call is made under one lock, since
/// burn-train may run the training step on another thread than the one that started it.
/// MPI's default error handler ends the whole job on a communication error, and the launcher
/// ends it when any rank exits with an error, so no rank waits forever for a failed one.
///
/// Dropped after [`Communicator::finish`], it finalises MPI; dropped without (this rank is
/// leaving on an error), it does not — `MPI_Finalize` would wait for the other ranks, which
/// wait for this one — and the process exits, which makes the launcher end the job.
pub struct MpiCommunicator {
    universe: Mutex<Option<Universe>>,
    /// The all-reduce's send buffer, kept between calls: rsmpi has no in-place all-reduce, and
    /// a fresh copy of vHeat-T's gradients would fault in 123 MB of new pages every step.
    send: Mutex<Vec<f32>>,
    rank: usize,
    size: usize,
    finished: AtomicBool,
}

impl std::fmt::Debug for MpiCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiCommunicator")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl MpiCommunicator {
    /// Initialises MPI and joins `MPI_COMM_WORLD`.
    ///
    /// # Errors
    /// [`Error::Distributed`] if MPI was already initialised in this process or cannot give
    /// serialised multi-threaded access.
    pub fn init() -> Result<Self> {
        let fail = |reason: String| Error::Distributed {
            rank: 0,
            size: 0,
            reason,
        };
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| fail("MPI is already initialised in this process".into()))?;
        if matches!(threading, Threading::Single | Threading::Funneled) {
            return Err(fail(format!(
                "the MPI library offers thread level {threading:?}; serialized access from \
                 several threads is needed"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Self {
            universe: Mutex::new(Some(universe)),
            send: Mutex::new(Vec::new()),
            rank,
            size,
            finished: AtomicBool::new(false),
        })
    }

    /// Runs `f` on the world communicator under the lock.
    fn with_world<T>(&self, f: impl FnOnce(&mpi::topology::SimpleCommunicator) -> T) -> Result<T> {
        let guard = self.universe.lock().unwrap_or_else(|p| p.into_inner());
        let universe = guard.as_ref().ok_or_else(|| Error::Distributed {
            rank: self.rank,
            size: self.size,
            reason: "MPI was finalised".into(),
        })?;
        Ok(f(&universe.world()))
    }
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        // The crate's all-reduce takes separate send and receive buffers.
        let mut send = self.send.lock().unwrap_or_else(|p| p.into_inner());
        send.clear();
        send.extend_from_slice(buf);
        self.with_world(|w| w.all_reduce_into(&send[..], buf, SystemOperation::sum()))
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        self.with_world(|w| w.process_at_rank(root as i32).broadcast_into(buf))
    }

    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let n = self.size;
        let len = mine.len() as u64;
        let mut lens = vec![0u64; n];
        self.with_world(|w| w.all_gather_into(&len, &mut lens[..]))?;
        // Every rank's bytes padded to the longest, gathered in one call.
        let width = lens.iter().copied().max().unwrap_or(0) as usize;
        let mut padded = mine.to_vec();
        padded.resize(width, 0);
        let mut all = vec![0u8; width * n];
        self.with_world(|w| w.all_gather_into(&padded[..], &mut all[..]))?;
        Ok((0..n)
            .map(|r| all[r * width..r * width + lens[r] as usize].to_vec())
            .collect())
    }

    fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }
}

impl Drop for MpiCommunicator {
    fn drop(&mut self) {
        let universe = self
            .universe
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(universe) = universe {
            if self.finished.load(Ordering::SeqCst) {
                drop(universe);
            } else {
                std::mem::forget(universe);
            }
        }
    }
}
