//! Reading and making the flex backend's float32 tensors for the host kernels: their values
//! as a slice (gathered on the pool when strided), whether a buffer may be overwritten in
//! place, and a tensor from a fresh vector.

use std::borrow::Cow;

use burn::backend::flex::FlexTensor;
use burn::backend::TensorMetadata;
use burn::tensor::{DType, TensorData};

use super::runtime::buffer::{copied, gathered};

/// Whether every tensor of `tensors` is float32 (the host kernels' case).
pub(crate) fn is_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// The values of float32 `t` in row-major order, borrowed when they already are; a strided
/// view is gathered on the pool (`super::buffer`), not by flex's one-thread copy.
pub(crate) fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(v) => Cow::Borrowed(v),
        None => {
            let layout = t.layout();
            Cow::Owned(gathered(
                t.storage::<f32>(),
                layout.start_offset(),
                &layout.shape().to_vec(),
                layout.strides(),
            ))
        }
    }
}

/// Whether `t`'s buffer is its own, exactly its values in order: an element-wise kernel may
/// then overwrite it in place.
pub(crate) fn reusable(t: &FlexTensor) -> bool {
    t.is_contiguous()
        && t.layout().start_offset() == 0
        && t.bytes().len() == t.layout().num_elements() * 4
        && t.is_unique()
}

/// A uniquely owned, contiguous float32 buffer of `t`'s values (reusing `t`'s when it can,
/// else copied on the pool).
pub(crate) fn owned(t: FlexTensor) -> FlexTensor {
    if reusable(&t) {
        return t;
    }
    let copy = match values(&t) {
        Cow::Borrowed(v) => copied(v),
        Cow::Owned(v) => v,
    };
    tensor(copy, t.shape())
}

/// A tensor of `shape` holding `values`.
pub(crate) fn tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// `(M, K)`: `x` (`[…, K]`) viewed as an `M × K` matrix.
pub(crate) fn rows_and_inner(x: &FlexTensor) -> (usize, usize) {
    let shape = x.shape();
    let k = shape[shape.num_dims() - 1];
    (shape.num_elements() / k.max(1), k)
}

/// The four dimensions of a rank-4 tensor.
pub(crate) fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}
