//! What [`crate::train::fit`] does first as one rank of a data-parallel job: what the ranks
//! compare, the start-up lines, each rank's seed.

use burn::prelude::*;

use super::Distributed;
use crate::train::TrainingConfig;
use crate::vheat::VHeat;

/// What every rank of a data-parallel job must agree on: each field of the recipe, the model's
/// size, the datasets' sizes, and the caller's identity entries (the command line).
pub(crate) fn options_compared(
    config: &TrainingConfig,
    model: &VHeat,
    train: usize,
    valid: usize,
    identity: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(config) {
        for (k, v) in fields {
            out.push((format!("`{k}`"), v.to_string()));
        }
    }
    out.push((
        "the model's parameters".into(),
        model.num_params().to_string(),
    ));
    out.push(("training images".into(), train.to_string()));
    out.push(("validation images".into(), valid.to_string()));
    out.extend(identity.iter().cloned());
    out
}

/// Prints this rank's start-up line and, on rank 0, the learning-rate scaling.
pub(crate) fn announce(
    d: &Distributed,
    device: &Device,
    config: &TrainingConfig,
    scaled: &TrainingConfig,
) {
    let global = config.batch_size * config.grad_accumulation * d.size();
    let threads = rayon::current_num_threads();
    println!(
        "rank {} of {}: device {device:?}, {threads} compute thread{}, batch {} per rank, \
         global batch {global}",
        d.rank(),
        d.size(),
        if threads == 1 { "" } else { "s" },
        config.batch_size
    );
    if d.rank() == 0 && d.size() > 1 {
        println!(
            "learning rate x{} for the global batch (linear scaling, as the reference's lr x \
             total batch / 512): peak {:e} -> {:e}, warm-up start {:e}, minimum {:e}",
            d.size(),
            config.lr,
            scaled.lr,
            scaled.warmup_lr,
            scaled.min_lr
        );
    }
}

/// The seed of rank `rank`'s random draws: `seed` itself on rank 0 (a single process's), mixed
/// with the rank on the others.
pub(crate) fn rank_seed(seed: u64, rank: usize) -> u64 {
    if rank == 0 {
        seed
    } else {
        seed ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}
