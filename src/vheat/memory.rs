//! How much memory a model needs, estimated from its configuration before anything is
//! allocated ([`VHeatConfig::memory_estimate`]), and the limit a request is checked against
//! ([`memory_limit`], settable with `VHEAT_MEMORY_LIMIT`): an absurd configuration, image side
//! or batch is a typed error naming the figure and the limit, not an allocation failure.
//!
//! The estimate counts float32 values: the parameters (four times over in training: the
//! weights, their gradients and AdamW's two moments), the activations (in inference, the input
//! and a few of the largest intermediate maps alive at once; in training, every map a heat
//! block keeps for its backward pass), and the largest single tensor. It is a model of the
//! allocations, not a measurement: it errs on the high side.

use super::config::VHeatConfig;
use crate::error::{Error, Result};

/// The environment variable that sets the memory limit, in bytes with an optional binary
/// suffix: `8G`, `512M`, `1073741824`.
pub const MEMORY_LIMIT_ENV: &str = "VHEAT_MEMORY_LIMIT";

/// The share of physical memory the default limit allows.
const DEFAULT_SHARE_OF_RAM: f64 = 0.75;

/// The default limit where physical memory cannot be read.
const FALLBACK_LIMIT: u64 = 16 << 30;

/// Maps a heat block keeps for its backward pass, in units of its input map, besides
/// 2 × `mlp_ratio` for the MLP's hidden layer (before and after GELU): the two norms' inputs and
/// outputs, the depth-wise convolution, the two halves of the C→2C projection, the transform,
/// its decayed coefficients, the inverse, the SiLU gate and the two residual sums.
const TRAINING_MAPS_PER_BLOCK: f64 = 12.0;

/// Intermediate maps of the largest size alive at once in inference (the block's input, its
/// residual branch, the hidden layer and its activation).
const INFERENCE_LIVE_MAPS: f64 = 4.0;

/// The memory a model needs for one batch, in bytes (see the module docs for what is counted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryEstimate {
    /// Parameters; in training with their gradients and AdamW's two moments.
    pub parameters: f64,
    /// Activations of one batch.
    pub activations: f64,
    /// The largest single tensor.
    pub largest_tensor: f64,
}

impl MemoryEstimate {
    /// Parameters and activations together.
    pub fn total(&self) -> f64 {
        self.parameters + self.activations
    }
}

impl VHeatConfig {
    /// The memory this model needs for a batch of `batch` images of side `side`, for inference
    /// or for training (computed in `f64`: absurd requests give huge numbers, not overflows).
    pub fn memory_estimate(&self, batch: usize, side: usize, training: bool) -> MemoryEstimate {
        let b = batch as f64;
        let side = side as f64;
        let d0 = self.dims.first().copied().unwrap_or(0) as f64;
        let input = b * self.in_chans as f64 * side * side;
        let stem = b * (d0 / 2.0 * (side / 2.0).powi(2) + d0 * (side / 4.0).powi(2));
        let widest = self.mlp_ratio.max(2.0);
        let (mut largest, mut stored) = (input.max(stem), input + 3.0 * stem);
        for (i, (&depth, &d)) in self.depths.iter().zip(&self.dims).enumerate() {
            let s = (side / 4.0 / f64::powi(2.0, i as i32)).max(1.0);
            let map = b * s * s * d as f64;
            largest = largest.max(map * widest);
            stored += depth as f64 * map * (TRAINING_MAPS_PER_BLOCK + 2.0 * self.mlp_ratio);
        }
        let activations = if training {
            // What the backward pass keeps, and the gradient of the largest map in flight.
            stored + 2.0 * largest
        } else {
            input + INFERENCE_LIVE_MAPS * largest
        };
        let parameters = self.parameter_bytes_estimate() / 4.0;
        MemoryEstimate {
            parameters: 4.0 * parameters * if training { 4.0 } else { 1.0 },
            activations: 4.0 * activations,
            largest_tensor: 4.0 * largest,
        }
    }

    /// Checks [`memory_estimate`](Self::memory_estimate) against [`memory_limit`].
    ///
    /// # Errors
    /// [`Error::MemoryLimit`] naming the estimate, its parts and the limit; [`Error::InvalidConfig`]
    /// for a malformed `VHEAT_MEMORY_LIMIT`.
    pub fn check_memory(
        &self,
        batch: usize,
        side: usize,
        training: bool,
    ) -> Result<MemoryEstimate> {
        self.check_memory_within(batch, side, training, memory_limit()?)
    }

    /// Checks [`memory_estimate`](Self::memory_estimate) against `limit` bytes.
    ///
    /// # Errors
    /// [`Error::MemoryLimit`] naming the estimate, its parts and the limit.
    pub fn check_memory_within(
        &self,
        batch: usize,
        side: usize,
        training: bool,
        limit: u64,
    ) -> Result<MemoryEstimate> {
        let e = self.memory_estimate(batch, side, training);
        if e.total() > limit as f64 {
            return Err(Error::MemoryLimit {
                what: format!(
                    "{} a batch of {batch} at {side}x{side} (depths {:?}, dims {:?}, {} classes)",
                    if training { "training on" } else { "running" },
                    self.depths,
                    self.dims,
                    self.num_classes
                ),
                needed: format!(
                    "{} ({} parameters{}, {} activations, largest tensor {})",
                    bytes(e.total()),
                    bytes(e.parameters),
                    if training {
                        " with gradients and optimizer state"
                    } else {
                        ""
                    },
                    bytes(e.activations),
                    bytes(e.largest_tensor)
                ),
                limit: bytes(limit as f64),
            });
        }
        Ok(e)
    }
}

/// A byte count as people read it: `1.5 GiB`.
fn bytes(n: f64) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} bytes")
    } else if v >= 1024.0 {
        format!("{n:.3e} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Parses a byte count: digits with an optional binary suffix `K`, `M`, `G` or `T` (`KiB`,
/// `MB` and the like are read alike), e.g. `8G`.
///
/// # Errors
/// [`Error::InvalidConfig`] naming the text.
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let bad = || {
        Error::InvalidConfig(format!(
            "{MEMORY_LIMIT_ENV}={text:?}: expected a byte count such as 8G, 512M or 1073741824"
        ))
    };
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let shift = match suffix
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    number.checked_mul(1 << shift).ok_or_else(bad)
}

/// The memory limit: `VHEAT_MEMORY_LIMIT` when set, else three quarters of the machine's
/// physical memory (16 GiB where that cannot be read).
///
/// # Errors
/// [`Error::InvalidConfig`] for a malformed `VHEAT_MEMORY_LIMIT`.
pub fn memory_limit() -> Result<u64> {
    if let Ok(text) = std::env::var(MEMORY_LIMIT_ENV) {
        return parse_bytes(&text);
    }
    Ok(physical_memory().map_or(FALLBACK_LIMIT, |total| {
        (total as f64 * DEFAULT_SHARE_OF_RAM) as u64
    }))
}

/// The machine's physical memory in bytes (Linux: `MemTotal` of `/proc/meminfo`).
fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
