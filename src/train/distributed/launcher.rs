//! Joining the job an MPI launcher started: whether this process runs under one (`mpirun`,
//! `mpiexec`, `srun`), its rank on its machine (the GPU it takes), and the machine's cores
//! shared among the ranks on it.

use std::sync::Arc;

use super::Distributed;
#[cfg(feature = "mpi")]
use super::MpiCommunicator;
use crate::error::{Error, Result};

/// The world size an MPI launcher announced in the environment (`OMPI_COMM_WORLD_SIZE` of
/// Open MPI, `PMI_SIZE` of MPICH/Hydra and Slurm's PMI), if this process was started by one.
pub fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
}

/// This process's rank among those on its machine (`OMPI_COMM_WORLD_LOCAL_RANK`,
/// `MPI_LOCALRANKID`), 0 without a launcher: the index of the GPU a rank should take.
pub fn local_rank() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(0)
}

/// The backend a rank trains on when the command names `backend`: a GPU backend named without
/// an index (`wgpu`, `cuda`) becomes this rank's GPU on its machine (`wgpu:LOCAL_RANK`, see
/// [`local_rank`]); a CPU backend or an explicit index stays as given.
pub fn backend_for_rank(backend: &str, local_rank: usize) -> String {
    let name = backend.trim();
    match name.to_ascii_lowercase().as_str() {
        "wgpu" | "cuda" => format!("{name}:{local_rank}"),
        _ => name.to_string(),
    }
}

/// The processes a launcher started on this machine (`OMPI_COMM_WORLD_LOCAL_SIZE`,
/// `MPI_LOCALNRANKS`), 1 without a launcher.
pub fn local_size() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// The compute threads one of `local_ranks` ranks on a machine should use: the cores this
/// process may run on (`available_cores`, its affinity mask) when a launcher bound it to fewer
/// than the machine has online (`online_cores`), otherwise its even share of them, at least one.
///
/// Every rank's kernels split their work over a pool of threads. Left at its default (one
/// thread per core) on each of N ranks, N times as many threads as cores compete for them, and
/// a rank that has finished its backward pass and spins in the all-reduce takes cycles from
/// one still computing: Horovod's guidance is the same (`OMP_NUM_THREADS` = cores / ranks).
pub fn threads_per_rank(local_ranks: usize, available_cores: usize, online_cores: usize) -> usize {
    if available_cores < online_cores {
        available_cores.max(1)
    } else {
        (available_cores / local_ranks.max(1)).max(1)
    }
}

/// The CPUs online on this machine (`/sys/devices/system/cpu/online`, a list such as `0-3,8-11`),
/// if the file can be read.
fn online_cores() -> Option<usize> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    list.trim().split(',').try_fold(0usize, |n, part| {
        let count = match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?,
            None => part.parse::<usize>().map(|_| 1).ok()?,
        };
        Some(n + count)
    })
}

/// Sizes this rank's compute thread pool (rayon's global pool, which the kernels and Burn's
/// CPU backend use) with [`threads_per_rank`], unless `RAYON_NUM_THREADS` says otherwise or
/// the pool has already started. Returns the pool's size.
pub fn share_cores_among_local_ranks() -> usize {
    let local = local_size();
    if local > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let online = online_cores().unwrap_or(available);
        let threads = threads_per_rank(local, available, online);
        // An error means the pool already runs (something used it first): it keeps its size.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
    rayon::current_num_threads()
}

/// The values `--distributed` takes.
pub const DISTRIBUTED_CHOICES: [&str; 3] = ["auto", "mpi", "none"];

/// Joins the job a launcher started, as `choice` says: `"mpi"` always (a job of one rank
/// without a launcher), `"none"` never, `"auto"` (or `None`) when the environment shows a
/// launcher ([`launcher_world_size`]) of more than one rank. The command line is added to the
/// [`Distributed::identity`], so ranks started with different options are refused, and the
/// ranks on one machine share its cores ([`share_cores_among_local_ranks`]).
///
/// # Errors
/// [`Error::MpiNotCompiled`] when MPI is asked for (or a launcher of several ranks is
/// detected) in a build without the `mpi` feature; [`Error::InvalidConfig`] for an unknown
/// `choice`; [`Error::Distributed`] if MPI cannot start.
pub fn from_launcher(choice: Option<&str>) -> Result<Option<Distributed>> {
    let wanted = match choice.unwrap_or("auto") {
        "none" => false,
        "mpi" => true,
        "auto" => launcher_world_size().is_some_and(|n| n > 1),
        other => {
            return Err(Error::InvalidConfig(format!(
                "--distributed {other:?}: expected one of {}",
                DISTRIBUTED_CHOICES.join(", ")
            )))
        }
    };
    if !wanted {
        return Ok(None);
    }
    let joined = join_mpi()?;
    share_cores_among_local_ranks();
    let args: Vec<String> = std::env::args().skip(1).collect();
    Ok(Some(
        joined.with_identity("the command line", args.join(" ")),
    ))
}

#[cfg(feature = "mpi")]
fn join_mpi() -> Result<Distributed> {
    Ok(Distributed::new(Arc::new(MpiCommunicator::init()?)))
}

#[cfg(not(feature = "mpi"))]
fn join_mpi() -> Result<Distributed> {
    Err(Error::MpiNotCompiled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rank_takes_its_own_gpu() {
        assert_eq!(backend_for_rank("wgpu", 1), "wgpu:1");
        assert_eq!(backend_for_rank("cuda", 0), "cuda:0");
        assert_eq!(backend_for_rank("WGPU", 3), "WGPU:3");
        // An explicit index and the CPU backends are kept.
        assert_eq!(backend_for_rank("wgpu:2", 1), "wgpu:2");
        assert_eq!(backend_for_rank("flex", 1), "flex");
    }

    #[test]
    fn ranks_share_the_cores_unless_bound() {
        // Unbound (the affinity mask holds every online core): an even share, at least one.
        assert_eq!(threads_per_rank(2, 16, 16), 8);
        assert_eq!(threads_per_rank(2, 2, 2), 1);
        assert_eq!(threads_per_rank(3, 2, 2), 1);
        assert_eq!(threads_per_rank(1, 16, 16), 16);
        // Bound by the launcher (`--bind-to core` / `socket`): the cores it was given.
        assert_eq!(threads_per_rank(2, 1, 2), 1);
        assert_eq!(threads_per_rank(2, 8, 16), 8);
    }

    #[cfg(not(feature = "mpi"))]
    #[test]
    fn mpi_without_the_feature_is_a_typed_error() {
        let err = from_launcher(Some("mpi")).expect_err("not compiled");
        assert!(matches!(err, Error::MpiNotCompiled), "{err}");
        assert!(err.to_string().contains("--features mpi"));
        assert!(from_launcher(Some("none")).expect("off").is_none());
        assert!(from_launcher(Some("bogus")).is_err());
    }
}
