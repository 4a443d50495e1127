//! [`LocalGroup`]: N ranks as threads of one process, joined by a mutex and a condition
//! variable — the stand-in for MPI in the ordinary tests, and a way to try data-parallel
//! training without a launcher.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::communicator::{failure, Communicator};
use crate::error::Result;

/// What the ranks of one group share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    size: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Rounds completed so far.
    generation: u64,
    /// This round's contributions, by rank.
    slots: Vec<Option<Vec<u8>>>,
    /// The contributions of the last completed round, by rank.
    result: Arc<Vec<Vec<u8>>>,
    /// Ranks whose communicator was dropped.
    departed: usize,
}

/// A group of ranks in one process: [`LocalGroup::connect`] gives one [`LocalCommunicator`] per
/// rank, each to be moved to its own thread. Every collective is an exchange of every rank's
/// bytes; sums are taken in rank order, so every rank gets the same bits.
#[derive(Debug)]
pub struct LocalGroup;

impl LocalGroup {
    /// `size` connected ranks (`size ≥ 1`), in rank order.
    pub fn connect(size: usize) -> Vec<LocalCommunicator> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                slots: vec![None; size],
                ..State::default()
            }),
            changed: Condvar::new(),
            size,
        });
        (0..size)
            .map(|rank| LocalCommunicator {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }
}

/// One rank of a [`LocalGroup`]. Dropping it (a rank that failed or finished) makes every
/// collective the other ranks are waiting in, or start later, return an error.
#[derive(Debug)]
pub struct LocalCommunicator {
    rank: usize,
    shared: Arc<Shared>,
}

impl LocalCommunicator {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every rank's `mine`, by rank, once all have given theirs.
    fn exchange(&self, mine: Vec<u8>) -> Result<Arc<Vec<Vec<u8>>>> {
        let mut state = self.lock();
        if state.departed > 0 {
            return Err(failure(self, "another rank left the group"));
        }
        let generation = state.generation;
        state.slots[self.rank] = Some(mine);
        if state.slots.iter().all(Option::is_some) {
            let all = state.slots.iter_mut().map(|s| s.take().unwrap_or_default());
            state.result = Arc::new(all.collect());
            state.generation += 1;
            self.shared.changed.notify_all();
            return Ok(state.result.clone());
        }
        while state.generation == generation {
            if state.departed > 0 {
                return Err(failure(self, "another rank left the group"));
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        Ok(state.result.clone())
    }
}

impl Drop for LocalCommunicator {
    fn drop(&mut self) {
        let mut state = self.lock();
        state.departed += 1;
        self.shared.changed.notify_all();
    }
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn value_at(bytes: &[u8], i: usize) -> f32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[4 * i..4 * i + 4]);
    f32::from_le_bytes(b)
}

impl Communicator for LocalCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let all = self.exchange(to_bytes(buf))?;
        if all.iter().any(|b| b.len() != 4 * buf.len()) {
            return Err(failure(self, "all-reduce buffers differ in length"));
        }
        for (i, v) in buf.iter_mut().enumerate() {
            *v = all.iter().map(|b| value_at(b, i)).fold(0.0, |s, x| s + x);
        }
        Ok(())
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()> {
        let all = self.exchange(to_bytes(buf))?;
        let from = all
            .get(root)
            .ok_or_else(|| failure(self, format!("no rank {root} to broadcast from")))?;
        if from.len() != 4 * buf.len() {
            return Err(failure(self, "broadcast buffers differ in length"));
        }
        for (i, v) in buf.iter_mut().enumerate() {
            *v = value_at(from, i);
        }
        Ok(())
    }

    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self.exchange(mine.to_vec())?.as_ref().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_ranks_sum_broadcast_and_gather() {
        let mut group = LocalGroup::connect(2);
        let r1 = group.pop().expect("rank 1");
        let r0 = group.pop().expect("rank 0");
        let t = std::thread::spawn(move || {
            let mut a = vec![1.0f32, 2.0, 3.0];
            r1.all_reduce_sum(&mut a).expect("sum");
            let mut b = vec![0.0f32; 2];
            r1.broadcast(&mut b, 0).expect("broadcast");
            let g = r1.all_gather_bytes(b"one").expect("gather");
            (a, b, g)
        });
        let mut a = vec![10.0f32, 20.0, 30.0];
        r0.all_reduce_sum(&mut a).expect("sum");
        let mut b = vec![7.0f32, 8.0];
        r0.broadcast(&mut b, 0).expect("broadcast");
        let g = r0.all_gather_bytes(b"zero!").expect("gather");
        let (a1, b1, g1) = t.join().expect("rank 1 thread");
        assert_eq!(a, vec![11.0, 22.0, 33.0]);
        assert_eq!(a1, a);
        assert_eq!(b1, vec![7.0, 8.0]);
        assert_eq!(g, vec![b"zero!".to_vec(), b"one".to_vec()]);
        assert_eq!(g1, g);
    }

    /// A rank that leaves makes the other's collective fail instead of waiting forever.
    #[test]
    fn a_departed_rank_ends_the_wait_with_an_error() {
        let mut group = LocalGroup::connect(2);
        let r1 = group.pop().expect("rank 1");
        let r0 = group.pop().expect("rank 0");
        let t = std::thread::spawn(move || {
            let mut a = vec![1.0f32];
            r0.all_reduce_sum(&mut a)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(r1);
        let err = t.join().expect("rank 0 thread").expect_err("must fail");
        assert!(err.to_string().contains("left the group"), "{err}");
    }
}
