//! [`ModelEma`]: an exponential moving average of a model's weights, as timm's
//! `ModelEmaV2`/`ModelEmaV3` keep it (`ema = d·ema + (1 − d)·model` for every float
//! parameter after every optimizer step), and [`ema_update`], the walk over two modules'
//! float parameters that does it.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

use crate::error::{Error, Result};
use crate::vheat::VHeat;

/// The averaged copy of a [`VHeat`] and its bookkeeping.
///
/// Its parameters have fresh ids and never require gradients, so an optimizer stepping a
/// module that contains it (e.g. [`super::ImageClassifier`]) never touches them: Burn's
/// optimizers only update parameters that have a gradient, and decoupled weight decay is part
/// of that update. The update counter is a parameter too, so it is saved in Burn records
/// (burn-train checkpoints) and a resumed run continues the warm-up where it stopped; `decay`
/// and `warmup` are constants, set again when the module is built.
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct ModelEma {
    /// The averaged weights.
    pub model: VHeat,
    /// Number of updates done so far, as a one-element float tensor (exact up to 2^24).
    pub updates: Param<Tensor<1>>,
    /// The decay `d` (reference value 0.9999).
    pub decay: f64,
    /// Warm-up of the decay: `d_t = min(d, (1 + t)/(10 + t))` at update `t` (0-based).
    pub warmup: bool,
}

impl ModelEma {
    /// An average started at a copy of `model` (on its device), with decay `decay` and, if
    /// `warmup`, the warm-up of [`ModelEma::decay_at`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `decay` is not in `[0, 1]`.
    pub fn new(model: &VHeat, decay: f64, warmup: bool) -> Result<Self> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(Error::InvalidConfig(format!(
                "EMA decay {decay} is outside [0, 1]"
            )));
        }
        let device = model.devices().first().cloned().unwrap_or_default();
        let copy = model.clone().map(&mut FreshDetached);
        let updates = Param::from_tensor(Tensor::<1>::zeros([1], &device)).set_require_grad(false);
        Ok(Self {
            model: copy,
            updates,
            decay,
            warmup,
        })
    }

    /// The decay used at update `t` (0-based: `t` updates were done before it):
    /// `min(decay, (1 + t)/(10 + t))` with warm-up, `decay` without.
    pub fn decay_at(&self, t: u64) -> f64 {
        if self.warmup {
            self.decay.min((1.0 + t as f64) / (10.0 + t as f64))
        } else {
            self.decay
        }
    }

    /// Number of updates done so far.
    pub fn num_updates(&self) -> u64 {
        self.updates.val().into_scalar::<f32>() as u64
    }

    /// One update towards `model`'s current weights, with the decay of this update
    /// ([`ModelEma::decay_at`], computed on the device: no host round trip).
    pub fn update(self, model: &VHeat) -> Self {
        let t = self.updates.val().detach();
        let d = if self.warmup {
            ((t.clone() + 1.0) / (t.clone() + 10.0)).clamp_max(self.decay)
        } else {
            t.clone().zeros_like() + self.decay
        };
        let averaged = ema_update(self.model, model, d);
        Self {
            model: averaged,
            updates: self.updates.map(|u| u.detach() + 1.0),
            decay: self.decay,
            warmup: self.warmup,
        }
    }
}

/// Gives every float parameter a fresh id and a detached value that requires no gradient.
struct FreshDetached;

impl ModuleMapper for FreshDetached {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = param.val().detach();
        Param::initialized(ParamId::new(), value).set_require_grad(false)
    }
}

/// Collects the detached float parameters of a module, flattened, in visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().detach().flatten(0, D - 1));
    }
}

/// Replaces each float parameter `e` by `d·e + (1 − d)·m`, `m` the next collected one.
struct Blend {
    sources: std::vec::IntoIter<Tensor<1>>,
    decay: Tensor<1>,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let source = self
            .sources
            .next()
            .expect("ema_update: the two modules have different parameters");
        let d: Tensor<D> = self.decay.clone().reshape([1; D]);
        param.map(|e| {
            let e = e.detach();
            let m: Tensor<D> = source.reshape(e.shape()).to_device(&e.device());
            let d = d.to_device(&e.device());
            e * d.clone() + m * (d.neg() + 1.0)
        })
    }
}

/// `ema ← d·ema + (1 − d)·model` for every float parameter, walking both modules in their
/// (identical) visiting order; `decay` is a one-element tensor. Results are detached and keep
/// `ema`'s parameter ids and gradient settings.
///
/// # Panics
/// If the two modules do not have the same parameters (same count and shapes), which cannot
/// happen for an average made by [`ModelEma::new`].
pub fn ema_update<M: Module>(ema: M, model: &M, decay: Tensor<1>) -> M {
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    let mut blend = Blend {
        sources: c.0.into_iter(),
        decay: decay.detach(),
    };
    let out = ema.map(&mut blend);
    assert!(
        blend.sources.next().is_none(),
        "ema_update: the two modules have different parameters"
    );
    out
}
