//! Weights packed once: the panels [`PackedB`] builds from a weight tensor, kept for as long as
//! that exact buffer lives, so that inference (and every backward pass of one training step)
//! packs each weight once instead of on every product.
//!
//! An entry holds a `Weak` reference to the weight's shared buffer (flex tensors share their
//! bytes through an `Arc`) together with its layout. A lookup hits only when the buffer is
//! still alive and is the same allocation, viewed the same way. The `Weak` is also what makes
//! this exact: while it exists, `Arc::get_mut` refuses the buffer, so flex never writes into
//! it in place (it copies, or moves the bytes away, which the `Weak` then no longer reaches).
//! Entries whose buffer has been freed are dropped on every insertion; at most
//! [`CAPACITY`] are kept (the oldest go first).

use std::sync::{Arc, Mutex, Weak};

use burn::backend::flex::FlexTensor;
use burn::backend::TensorMetadata;
use burn::tensor::Bytes;

use super::PackedB;
use crate::kernels::flex::values;

/// Most entries kept: more than the projections of the largest configuration (vHeat-B has
/// 4·20 blocks × 4 projections), in both orientations.
const CAPACITY: usize = 1024;

/// How a weight tensor becomes the product's right operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Orientation {
    /// The tensor is `B` (`k × n`, row-major).
    AsIs,
    /// The tensor is `Bᵀ` (`n × k`, row-major).
    Transposed,
    /// The tensor is a 3×3 convolution's `[C_out, C_in, 3, 3]` weight (see `ops/conv3x3.rs`).
    Conv3x3,
    /// The same weight as the input gradient's right operand (`ops/conv3x3.rs`).
    Conv3x3InputGrad,
}

struct Entry {
    buffer: Weak<Bytes>,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<isize>,
    orientation: Orientation,
    packed: Arc<PackedB>,
}

impl Entry {
    fn matches(&self, weight: &FlexTensor, data: &Arc<Bytes>, orientation: Orientation) -> bool {
        let layout = weight.layout();
        self.orientation == orientation
            && self.offset == layout.start_offset()
            && self.strides == layout.strides()
            && self.shape == weight.shape().to_vec()
            && self
                .buffer
                .upgrade()
                .is_some_and(|live| Arc::ptr_eq(&live, data))
    }
}

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The packed form of `weight` in `orientation`, from the cache or built by `pack` (which
/// must pack exactly this tensor that way).
pub(crate) fn packed(
    weight: &FlexTensor,
    orientation: Orientation,
    pack: impl FnOnce() -> PackedB,
) -> Arc<PackedB> {
    let data = weight.data_arc();
    {
        let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.iter().find(|e| e.matches(weight, &data, orientation)) {
            return hit.packed.clone();
        }
    }
    let packed = Arc::new(pack());
    let layout = weight.layout();
    let entry = Entry {
        buffer: Arc::downgrade(&data),
        offset: layout.start_offset(),
        shape: weight.shape().to_vec(),
        strides: layout.strides().to_vec(),
        orientation,
        packed: packed.clone(),
    };
    drop(data);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache.retain(|e| e.buffer.strong_count() > 0);
    if cache.len() >= CAPACITY {
        cache.remove(0);
    }
    cache.push(entry);
    packed
}

/// `(N, B)`: a projection's weight packed as the forward product's `B` (`K × N`): `weight` is
/// `[N, K]` when `out_in` (PyTorch's layout), else `[K, N]`; from the cache when this weight
/// buffer was packed before.
pub(crate) fn packed_weight(weight: &FlexTensor, k: usize, out_in: bool) -> (usize, Arc<PackedB>) {
    let ws = weight.shape();
    if out_in {
        let n = ws[0];
        let pack = || PackedB::from_transposed(&values(weight), k, n);
        (n, packed(weight, Orientation::Transposed, pack))
    } else {
        let n = ws[1];
        let pack = || PackedB::from_row_major(&values(weight), k, n);
        (n, packed(weight, Orientation::AsIs, pack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use std::cell::Cell;

    fn pack_counted(t: &FlexTensor, count: &Cell<usize>) -> Arc<PackedB> {
        packed(t, Orientation::AsIs, || {
            count.set(count.get() + 1);
            let v = t.as_slice::<f32>().expect("contiguous").to_vec();
            PackedB::from_row_major(&v, 2, 3)
        })
    }

    #[test]
    fn packs_once_per_live_buffer_and_never_serves_changed_values() {
        let count = Cell::new(0);
        let t = FlexTensor::from_data(TensorData::new(vec![1.0f32, 2., 3., 4., 5., 6.], [2, 3]));
        let first = pack_counted(&t, &count);
        let again = pack_counted(&t.clone(), &count);
        assert_eq!(count.get(), 1, "a clone shares the buffer: one packing");
        assert!(Arc::ptr_eq(&first, &again));
        // Another orientation of the same buffer is another entry.
        let _ = packed(&t, Orientation::Transposed, || {
            PackedB::from_transposed(&[0.0; 6], 3, 2)
        });
        // Writing through the only strong owner cannot touch the cached bytes: the Weak makes
        // flex's copy-on-write move them, and the next lookup packs the new values.
        let mut u = t;
        u.storage_mut::<f32>()[0] = 100.0;
        let changed = pack_counted(&u, &count);
        assert_eq!(count.get(), 2, "changed values are packed again");
        assert!(!Arc::ptr_eq(&first, &changed));
        // A fresh tensor with equal shape is a different buffer.
        let w = FlexTensor::from_data(TensorData::new(vec![0.5f32; 6], [2, 3]));
        let _ = pack_counted(&w, &count);
        assert_eq!(count.get(), 3);
    }
}
