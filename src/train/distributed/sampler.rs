//! The training data of one rank, as PyTorch's `DistributedSampler` chooses it: one seeded
//! permutation of the whole set per epoch, the same on every rank; rank `r` of `N` takes the
//! positions `r, r + N, r + 2N, …`; the permutation is first padded by wrapping around to a
//! multiple of `N`, so that every rank gets the same number of samples (and of batches) and no
//! rank waits for a batch another never computes.
//!
//! Validation is split without padding ([`ValidationShard`]): rank `r` takes `r, r + N, …` of
//! the set in order, each image is seen once, and the ranks' sums of loss and correct
//! predictions add up to the whole set's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use burn::data::dataloader::{DataLoader, DataLoaderIterator};
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;

use crate::data::{ImageItem, SplitMix64};

/// Which samples one rank takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Size of the whole dataset.
    pub len: usize,
    /// This rank.
    pub rank: usize,
    /// The number of ranks.
    pub size: usize,
    /// Seed of the per-epoch permutations (the same on every rank).
    pub seed: u64,
}

impl Shard {
    /// Samples per rank and epoch: `⌈len / size⌉`.
    pub fn per_rank(&self) -> usize {
        self.len.div_ceil(self.size.max(1))
    }

    /// The permutation of `0..len` of `epoch` (1-based, as burn-train counts), the same on
    /// every rank.
    pub fn permutation(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        SplitMix64::for_item(self.seed ^ 0x5348_4152_4421_u64, epoch as u64).shuffle(&mut order);
        order
    }

    /// This rank's dataset indices in `epoch`, in order: position `rank + k·size` of the
    /// epoch's permutation padded by wrapping to `per_rank() · size` (PyTorch's
    /// `DistributedSampler` with `drop_last = False`).
    pub fn indices(&self, epoch: usize) -> Vec<usize> {
        if self.len == 0 {
            return Vec::new();
        }
        let order = self.permutation(epoch);
        (0..self.per_rank())
            .map(|k| order[(self.rank + k * self.size) % self.len])
            .collect()
    }
}

/// A dataset seen through this epoch's list of indices.
struct EpochView<D> {
    inner: D,
    order: Arc<RwLock<Vec<usize>>>,
}

impl<D: Dataset<ImageItem>> Dataset<ImageItem> for EpochView<D> {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        let at = self.order.read().unwrap_or_else(|p| p.into_inner())[index];
        self.inner.get(at)
    }

    fn len(&self) -> usize {
        self.order.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A data loader over one rank's [`Shard`]: every time burn-train starts an epoch (calls
/// `iter`), the next epoch's indices are drawn and the wrapped loader (built by the caller over
/// the view, without shuffling) runs over them.
pub struct ShardedLoader<O> {
    inner: Arc<dyn DataLoader<O>>,
    order: Arc<RwLock<Vec<usize>>>,
    epoch: Arc<AtomicUsize>,
    shard: Shard,
}

impl<O> ShardedLoader<O> {
    /// Wraps `dataset` for `shard`, starting after epoch `done` (the resumed epoch, or 0);
    /// `build` makes the loader over the view it is given (batch size, batcher, workers, device;
    /// no shuffle: the order is the shard's).
    pub fn new<D, F>(dataset: D, shard: Shard, done: usize, build: F) -> Self
    where
        D: Dataset<ImageItem> + 'static,
        F: FnOnce(Box<dyn Dataset<ImageItem>>) -> Arc<dyn DataLoader<O>>,
    {
        let order = Arc::new(RwLock::new(shard.indices(done.max(1))));
        let view = EpochView {
            inner: dataset,
            order: order.clone(),
        };
        Self {
            inner: build(Box::new(view)),
            order,
            epoch: Arc::new(AtomicUsize::new(done)),
            shard,
        }
    }

    fn with_inner(&self, inner: Arc<dyn DataLoader<O>>) -> Self {
        Self {
            inner,
            order: self.order.clone(),
            epoch: self.epoch.clone(),
            shard: self.shard,
        }
    }
}

impl<O: 'static> DataLoader<O> for ShardedLoader<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        *self.order.write().unwrap_or_else(|p| p.into_inner()) = self.shard.indices(epoch);
        self.inner.iter()
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.with_inner(self.inner.to_device(device)))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.with_inner(self.inner.slice(start, end)))
    }
}

/// Rank `rank` of `size`'s part of a validation set: the samples `rank, rank + size, …` in
/// order, without padding (the parts partition the set; a rank may have one sample fewer).
pub struct ValidationShard<D> {
    inner: D,
    rank: usize,
    size: usize,
}

impl<D: Dataset<ImageItem>> ValidationShard<D> {
    /// Rank `rank` of `size`'s part of `inner`.
    pub fn new(inner: D, rank: usize, size: usize) -> Self {
        Self {
            inner,
            rank,
            size: size.max(1),
        }
    }
}

impl<D: Dataset<ImageItem>> Dataset<ImageItem> for ValidationShard<D> {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        // An index past this part's end lands past the set's end: `inner` refuses it.
        self.inner.get(self.rank + index * self.size)
    }

    fn len(&self) -> usize {
        self.inner
            .len()
            .saturating_sub(self.rank)
            .div_ceil(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two ranks of an odd-sized set: each gets ⌈n/2⌉ indices, together they cover every
    /// sample, and the one extra is the permutation's first (PyTorch's wrap padding).
    #[test]
    fn two_ranks_cover_the_set_with_wrap_padding() {
        let n = 11;
        let shard = |rank| Shard {
            len: n,
            rank,
            size: 2,
            seed: 7,
        };
        for epoch in 1..4 {
            let (a, b) = (shard(0).indices(epoch), shard(1).indices(epoch));
            assert_eq!((a.len(), b.len()), (6, 6));
            let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
            let order = shard(0).permutation(epoch);
            // rank 0 has positions 0,2,…,10; rank 1 has 1,3,…,9 and then 11 % 11 = 0.
            assert_eq!(a, (0..6).map(|k| order[2 * k]).collect::<Vec<_>>());
            assert_eq!(b[5], order[0]);
            // One process with twice the batch sees, in each batch of 2b, exactly the samples
            // of the two ranks' batches of b.
            let one = Shard {
                size: 1,
                rank: 0,
                ..shard(0)
            }
            .indices(epoch);
            assert_eq!(one, order);
            for k in 0..5 {
                let mut pair = vec![a[k], b[k]];
                pair.sort_unstable();
                let mut two = one[2 * k..2 * k + 2].to_vec();
                two.sort_unstable();
                assert_eq!(pair, two);
            }
        }
        assert_ne!(shard(0).permutation(1), shard(0).permutation(2));
    }

    #[test]
    fn fewer_samples_than_ranks_still_give_every_rank_one() {
        for rank in 0..4 {
            let s = Shard {
                len: 3,
                rank,
                size: 4,
                seed: 0,
            };
            assert_eq!(s.indices(1).len(), 1);
        }
        let empty = Shard {
            len: 0,
            rank: 0,
            size: 2,
            seed: 0,
        };
        assert!(empty.indices(1).is_empty());
    }

    #[test]
    fn validation_shards_partition_the_set_in_order() {
        let set: Vec<ImageItem> = (0..11)
            .map(|i| ImageItem::new(vec![i as f32], [1, 1, 1], i))
            .collect();
        let parts: Vec<Vec<usize>> = (0..3)
            .map(|rank| {
                let shard = ValidationShard::new(InMemory(set.clone()), rank, 3);
                (0..shard.len())
                    .map(|i| shard.get(i).expect("in range").label)
                    .collect()
            })
            .collect();
        assert_eq!(parts[0], vec![0, 3, 6, 9]);
        assert_eq!(parts[1], vec![1, 4, 7, 10]);
        assert_eq!(parts[2], vec![2, 5, 8]);
        let shard = ValidationShard::new(InMemory(set), 2, 3);
        assert!(shard.get(3).is_err());
    }

    struct InMemory(Vec<ImageItem>);

    impl Dataset<ImageItem> for InMemory {
        fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
            self.0
                .get(index)
                .cloned()
                .ok_or_else(|| DatasetError::new(std::io::Error::other("past the end")))
        }

        fn len(&self) -> usize {
            self.0.len()
        }
    }
}
