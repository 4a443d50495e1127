//! Gradient averaging as Horovod does it: every gradient packed into one flat buffer, summed
//! across ranks in fused pieces of at most a threshold, scaled by 1/N and unpacked; and the
//! two other things that keep the ranks' copies of a model identical: the broadcast of rank
//! 0's parameters and a hash of the parameters to compare.

use std::time::{Duration, Instant};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use sha2::{Digest, Sha256};

use super::communicator::{failure, Communicator};
use crate::error::Result;

/// Horovod's default fusion threshold: gradients are summed in pieces of at most this many
/// bytes (`HOROVOD_FUSION_THRESHOLD`, 128 MiB).
pub const DEFAULT_FUSION_BYTES: usize = 128 * 1024 * 1024;

/// One packed gradient: where it goes back to, and this rank's gradient values (kept, so that
/// the average is written into memory the gradient already had instead of a fresh allocation:
/// for vHeat-T that would be 123 MB of new pages every step).
struct Slot {
    id: ParamId,
    dims: Vec<usize>,
    device: Device,
    data: Option<TensorData>,
}

/// Takes every float parameter's gradient out of `grads`, in visiting order, into `flat` (a
/// parameter without a gradient on this rank contributes zeros), and appends one presence flag
/// per parameter (1 when this rank had a gradient) after all of them.
struct Pack<'a> {
    grads: &'a mut GradientsParams,
    flat: Vec<f32>,
    flags: Vec<f32>,
    slots: Vec<Slot>,
}

impl ModuleVisitor for Pack<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let dims = param.shape().to_vec();
        let len: usize = dims.iter().product();
        match self.grads.remove::<D>(param.id) {
            Some(g) => {
                let device = g.device();
                let data = g.into_data().convert::<f32>();
                match data.as_slice::<f32>() {
                    Ok(values) => self.flat.extend_from_slice(values),
                    Err(_) => self.flat.extend(data.iter::<f32>()),
                }
                self.flags.push(1.0);
                self.slots.push(Slot {
                    id: param.id,
                    dims,
                    device,
                    data: Some(data),
                });
            }
            None => {
                self.flat.resize(self.flat.len() + len, 0.0);
                self.flags.push(0.0);
                self.slots.push(Slot {
                    id: param.id,
                    dims,
                    device: param.val().device(),
                    data: None,
                });
            }
        }
    }
}

/// Registers, for every parameter that had a gradient on at least one rank, its piece of the
/// summed buffer times `1/N` as its gradient.
fn unpack(grads: &mut GradientsParams, flat: &[f32], flags: &[f32], slots: Vec<Slot>, n: usize) {
    let scale = 1.0 / n as f32;
    let mut at = 0;
    for (mut slot, flag) in slots.into_iter().zip(flags) {
        let len: usize = slot.dims.iter().product();
        let piece = &flat[at..at + len];
        at += len;
        if *flag == 0.0 {
            continue;
        }
        let mut data = match slot.data.take() {
            Some(data) => data,
            None => TensorData::new(vec![0.0f32; len], slot.dims.clone()),
        };
        match data.as_mut_slice::<f32>() {
            Ok(values) if values.len() == len => {
                for (v, sum) in values.iter_mut().zip(piece) {
                    *v = sum * scale;
                }
            }
            _ => {
                let values: Vec<f32> = piece.iter().map(|v| v * scale).collect();
                data = TensorData::new(values, slot.dims.clone());
            }
        }
        register(grads, slot, data);
    }
}

/// `grads[slot.id] = data` (of the slot's shape; dispatched on its rank).
fn register(grads: &mut GradientsParams, slot: Slot, data: TensorData) {
    macro_rules! put {
        ($($d:literal)*) => {
            match slot.dims.len() {
                $($d => {
                    let t = Tensor::<$d>::from_data(data, &slot.device);
                    grads.register::<$d>(slot.id, t);
                })*
                _ => unreachable!("parameters of rank 1 to 6 only"),
            }
        };
    }
    put!(1 2 3 4 5 6)
}

/// Sums `flat` across the ranks of `comm` in pieces of at most `fusion_bytes` bytes (one piece
/// when it fits: Horovod's fused buffer; consecutive pieces above it).
pub fn all_reduce_fused(
    comm: &dyn Communicator,
    flat: &mut [f32],
    fusion_bytes: usize,
) -> Result<()> {
    let piece = (fusion_bytes / 4).max(1);
    for chunk in flat.chunks_mut(piece) {
        comm.all_reduce_sum(chunk)?;
    }
    Ok(())
}

/// Replaces every gradient of `module`'s parameters in `grads` by its average over the ranks of
/// `comm`: packed into one flat buffer in the module's visiting order (identical on every
/// rank), summed with [`all_reduce_fused`], scaled by `1/N`, unpacked. A parameter with a
/// gradient on some ranks only gets the average with zeros for the others; one with a
/// gradient on no rank stays without. With one rank nothing changes.
///
/// # Errors
/// [`crate::Error::Distributed`] if the sum fails; `grads` is then left without the gradients
/// that were packed.
pub fn average_gradients<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    comm: &dyn Communicator,
    fusion_bytes: usize,
) -> Result<()> {
    average_gradients_in(module, grads, comm, fusion_bytes, &mut Vec::new()).map(drop)
}

/// Where the time of one [`average_gradients_in`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AveragingTimes {
    /// Copying the gradients into the flat buffer.
    pub pack: Duration,
    /// The sum all-reduce (including any wait for a rank that is still computing).
    pub all_reduce: Duration,
    /// Scaling by `1/N` and registering the averages as gradients.
    pub unpack: Duration,
}

impl AveragingTimes {
    /// The three together.
    pub fn total(&self) -> Duration {
        self.pack + self.all_reduce + self.unpack
    }
}

/// [`average_gradients`] packing into `buffer`, which keeps its memory from one call to the
/// next: a training step reuses the pages of the last one's buffer instead of faulting in a
/// fresh one the size of the model's gradients (123 MB for vHeat-T). Returns where the time
/// went.
///
/// # Errors
/// As [`average_gradients`].
pub fn average_gradients_in<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    comm: &dyn Communicator,
    fusion_bytes: usize,
    buffer: &mut Vec<f32>,
) -> Result<AveragingTimes> {
    let n = comm.size();
    if n == 1 {
        return Ok(AveragingTimes::default());
    }
    let start = Instant::now();
    let mut count = CountValues::default();
    module.visit(&mut count);
    buffer.clear();
    buffer.reserve(count.values + count.params);
    let mut pack = Pack {
        grads,
        flat: std::mem::take(buffer),
        flags: Vec::with_capacity(count.params),
        slots: Vec::with_capacity(count.params),
    };
    module.visit(&mut pack);
    let Pack {
        grads,
        flat,
        flags,
        slots,
    } = pack;
    *buffer = flat;
    let values = buffer.len();
    buffer.extend_from_slice(&flags);
    let packed = Instant::now();
    all_reduce_fused(comm, buffer, fusion_bytes)?;
    let reduced = Instant::now();
    let (flat, flags) = buffer.split_at(values);
    unpack(grads, flat, flags, slots, n);
    Ok(AveragingTimes {
        pack: packed - start,
        all_reduce: reduced - packed,
        unpack: reduced.elapsed(),
    })
}

/// Counts the float parameters and their values.
#[derive(Default)]
struct CountValues {
    params: usize,
    values: usize,
}

impl ModuleVisitor for CountValues {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.params += 1;
        self.values += param.shape().num_elements();
    }
}

/// Collects every float parameter's values, flattened, in visiting order.
struct Flatten(Vec<f32>);

impl ModuleVisitor for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data().convert::<f32>();
        self.0.extend(data.iter::<f32>());
    }
}

/// Writes consecutive pieces of a flat buffer into the float parameters, in visiting order.
struct Fill<'a> {
    flat: &'a [f32],
    at: usize,
}

impl ModuleMapper for Fill<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims = param.shape().to_vec();
        let len: usize = dims.iter().product();
        let piece = self.flat[self.at..self.at + len].to_vec();
        self.at += len;
        param.map(|t| {
            let device = t.device();
            let dtype = t.dtype();
            Tensor::<D>::from_data(TensorData::new(piece, dims).convert_dtype(dtype), &device)
        })
    }
}

/// `module` with every float parameter replaced by rank `root`'s (ids, devices and gradient
/// settings kept), so that all ranks start from the same weights.
///
/// # Errors
/// [`crate::Error::Distributed`] if the broadcast fails or the ranks' models differ in size.
pub fn broadcast_parameters<M: Module>(
    module: M,
    comm: &dyn Communicator,
    root: usize,
) -> Result<M> {
    if comm.size() == 1 {
        return Ok(module);
    }
    let mut flat = Flatten(Vec::new());
    module.visit(&mut flat);
    let mut flat = flat.0;
    let sizes = comm.all_gather_bytes(&(flat.len() as u64).to_le_bytes())?;
    if sizes
        .iter()
        .any(|s| s.as_slice() != (flat.len() as u64).to_le_bytes())
    {
        return Err(failure(
            comm,
            "the ranks' models have different numbers of parameters",
        ));
    }
    comm.broadcast(&mut flat, root)?;
    let mut fill = Fill { flat: &flat, at: 0 };
    Ok(module.map(&mut fill))
}

/// SHA-256 of every float parameter's shape and float32 bits, in visiting order.
pub fn parameter_hash<M: Module>(module: &M) -> [u8; 32] {
    struct Hash(Sha256);
    impl ModuleVisitor for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data().convert::<f32>();
            for d in data.shape().iter() {
                self.0.update((*d as u64).to_le_bytes());
            }
            for v in data.iter::<f32>() {
                self.0.update(v.to_bits().to_le_bytes());
            }
        }
    }
    let mut h = Hash(Sha256::new());
    module.visit(&mut h);
    h.0.finalize().into()
}

/// Compares `module`'s [`parameter_hash`] across the ranks of `comm`.
///
/// # Errors
/// [`crate::Error::RanksDiffer`] naming the ranks whose parameters differ from rank 0's (on
/// every rank, so that all stop together); [`crate::Error::Distributed`] if the exchange fails.
pub fn check_same_parameters<M: Module>(
    module: &M,
    comm: &dyn Communicator,
    when: &str,
) -> Result<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    let all = comm.all_gather_bytes(&parameter_hash(module))?;
    let differ: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(_, h)| **h != all[0])
        .map(|(r, _)| r.to_string())
        .collect();
    if differ.is_empty() {
        return Ok(());
    }
    Err(crate::Error::RanksDiffer {
        what: format!("the parameters {when}"),
        details: format!(
            "rank(s) {} hold other weights than rank 0 (SHA-256 of the float32 parameters)",
            differ.join(", ")
        ),
    })
}
