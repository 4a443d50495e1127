//! Data-parallel training across processes, as Horovod does it: one process per device (rank),
//! each with its own copy of the model, started by an MPI launcher (`mpirun -np N vheat train
//! …`); gradients averaged with a sum all-reduce after every backward pass.
//!
//! | piece | here |
//! |---|---|
//! | the collectives (all-reduce, broadcast, all-gather) | [`Communicator`]: [`MpiCommunicator`] (feature `mpi`), [`LocalGroup`] (threads, for tests) |
//! | gradient fusion, × 1/N | [`average_gradients`], [`DEFAULT_FUSION_BYTES`] |
//! | same start, same weights every epoch | [`broadcast_parameters`], [`check_same_parameters`] |
//! | `DistributedSampler` | [`Shard`], [`ShardedLoader`]; validation: [`ValidationShard`] |
//! | the hook in burn-train's step | [`GradientSync`], carried by [`crate::train::ImageClassifier`] |
//!
//! [`crate::train::fit`] runs data-parallel when [`crate::train::FitOptions::distributed`] is
//! set: burn-train's `Learner` as usual on every rank, with the sharded loader, the averaging
//! in the classifier's `TrainStep` (after backward, before the clip and the optimizer step, so
//! that clip, AdamW and EMA run on identical gradients everywhere), rank 0 alone printing and
//! writing checkpoints.

mod communicator;
mod launcher;
mod local;
#[cfg(feature = "mpi")]
mod mpi;
mod packing;
mod sampler;
pub(crate) mod start;
mod sync;

use std::sync::Arc;

pub use communicator::Communicator;
pub use launcher::{
    backend_for_rank, from_launcher, launcher_world_size, local_rank, local_size,
    share_cores_among_local_ranks, threads_per_rank, DISTRIBUTED_CHOICES,
};
pub use local::{LocalCommunicator, LocalGroup};
#[cfg(feature = "mpi")]
pub use mpi::MpiCommunicator;
pub use packing::{
    all_reduce_fused, average_gradients, average_gradients_in, broadcast_parameters,
    check_same_parameters, parameter_hash, AveragingTimes, DEFAULT_FUSION_BYTES,
};
pub use sampler::{Shard, ShardedLoader, ValidationShard};
pub use sync::GradientSync;

use crate::error::{Error, Result};

/// One rank's membership of a data-parallel job: its communicator, the fusion threshold and
/// what else must be the same on every rank (compared at start with the training options).
#[derive(Clone, Debug)]
pub struct Distributed {
    /// The collectives.
    pub comm: Arc<dyn Communicator>,
    /// Gradients are summed in pieces of at most this many bytes ([`DEFAULT_FUSION_BYTES`]).
    pub fusion_bytes: usize,
    /// Named values that every rank must agree on besides the training options, e.g. the
    /// command line ([`from_launcher`] adds it).
    pub identity: Vec<(String, String)>,
}

impl Distributed {
    /// A member of `comm`'s group with the default fusion threshold.
    pub fn new(comm: Arc<dyn Communicator>) -> Self {
        Self {
            comm,
            fusion_bytes: DEFAULT_FUSION_BYTES,
            identity: Vec::new(),
        }
    }

    /// Sets the fusion threshold in bytes.
    pub fn with_fusion_bytes(mut self, bytes: usize) -> Self {
        self.fusion_bytes = bytes.max(4);
        self
    }

    /// Adds a value every rank must agree on.
    pub fn with_identity(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.identity.push((name.into(), value.into()));
        self
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// Checks that every rank holds the same `entries` (name, value), in order.
    ///
    /// # Errors
    /// [`Error::RanksDiffer`] naming each rank and entry that differ from rank 0's, on every
    /// rank; [`Error::Distributed`] if the exchange fails.
    pub fn check_same(&self, what: &str, entries: &[(String, String)]) -> Result<()> {
        let mine = serde_json::to_vec(entries).map_err(|e| Error::Distributed {
            rank: self.rank(),
            size: self.size(),
            reason: format!("cannot encode the {what}: {e}"),
        })?;
        let all = self.comm.all_gather_bytes(&mine)?;
        let decoded: Vec<Vec<(String, String)>> = all
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap_or_default())
            .collect();
        let mut differences = Vec::new();
        for (rank, theirs) in decoded.iter().enumerate().skip(1) {
            differences.extend(differences_from(&decoded[0], theirs, rank));
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(Error::RanksDiffer {
                what: what.to_string(),
                details: differences.join("; "),
            })
        }
    }
}

/// `rank`'s entries that differ from rank 0's, one line each.
fn differences_from(
    zero: &[(String, String)],
    theirs: &[(String, String)],
    rank: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in zero {
        match theirs.iter().find(|(n, _)| n == name) {
            Some((_, v)) if v == value => {}
            Some((_, v)) => out.push(format!("rank {rank} has {name} = {v}, rank 0 has {value}")),
            None => out.push(format!("rank {rank} has no {name}, rank 0 has {value}")),
        }
    }
    for (name, v) in theirs {
        if !zero.iter().any(|(n, _)| n == name) {
            out.push(format!("rank {rank} has {name} = {v}, rank 0 has none"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named_per_rank_and_entry() {
        let e = |n: &str, v: &str| (n.to_string(), v.to_string());
        let zero = vec![e("seed", "0"), e("data", "/a")];
        let one = vec![e("seed", "1"), e("data", "/a"), e("extra", "x")];
        assert_eq!(
            differences_from(&zero, &one, 1),
            vec![
                "rank 1 has seed = 1, rank 0 has 0".to_string(),
                "rank 1 has extra = x, rank 0 has none".to_string()
            ]
        );
        assert!(differences_from(&zero, &zero, 1).is_empty());
    }

    #[test]
    fn two_ranks_with_different_options_are_refused_on_both() {
        let group = LocalGroup::connect(2);
        let handles: Vec<_> = group
            .into_iter()
            .map(|comm| {
                std::thread::spawn(move || {
                    let seed = comm.rank().to_string();
                    let d = Distributed::new(Arc::new(comm));
                    d.check_same("the options", &[("seed".into(), seed)])
                })
            })
            .collect();
        for h in handles {
            let err = h.join().expect("thread").expect_err("must differ");
            assert!(
                err.to_string()
                    .contains("rank 1 has seed = 1, rank 0 has 0"),
                "{err}"
            );
        }
    }
}
