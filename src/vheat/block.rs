//! [`HeatBlock`]: the heat-conduction operator and an MLP, each in a residual branch.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::drop_path::DropPath;
use super::mlp::Mlp;
use crate::hco::{HeatConduction, HeatConductionConfig};
use crate::kernels::{layer_norm_with_epsilon, residual};

/// LayerNorm epsilon of the block's norms (PyTorch's default, as in the reference).
const NORM_EPS: f64 = 1e-5;

/// Builds a [`HeatBlock`].
#[derive(Config, Debug)]
pub struct HeatBlockConfig {
    /// Channels.
    pub dim: usize,
    /// Post-norm (`x + γ·norm(f(x))`, vHeat-S/B) instead of pre-norm (`x + γ·f(norm(x))`, vHeat-T).
    #[config(default = false)]
    pub post_norm: bool,
    /// Initial layer-scale value `γ`; `None` for no layer scale.
    #[config(default = "None")]
    pub layer_scale: Option<f64>,
    /// Stochastic-depth probability of both branches.
    #[config(default = 0.0)]
    pub drop_path: f64,
    /// MLP hidden width as a multiple of `dim`; `0` removes the MLP branch.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
}

impl HeatBlockConfig {
    /// Creates the block on `device`.
    pub fn init(&self, device: &Device) -> HeatBlock {
        let dim = self.dim;
        let norm = || {
            LayerNormConfig::new(dim)
                .with_epsilon(NORM_EPS)
                .init(device)
        };
        let hidden = (dim as f64 * self.mlp_ratio) as usize;
        let has_mlp = self.mlp_ratio > 0.0 && hidden > 0;
        let gamma = || {
            self.layer_scale
                .map(|s| Param::from_tensor(Tensor::<1>::ones([dim], device) * s))
        };
        HeatBlock {
            norm1: norm(),
            op: HeatConductionConfig::new(dim).init(device),
            norm2: has_mlp.then(norm),
            mlp: has_mlp.then(|| Mlp::new(dim, hidden, device)),
            gamma1: gamma(),
            gamma2: if has_mlp { gamma() } else { None },
            drop_path: DropPath::new(self.drop_path),
            post_norm: self.post_norm,
        }
    }
}

/// One vHeat block on a channels-last map `[B, H, W, C]`:
///
/// ```text
/// pre-norm:  x ← x + DropPath(γ₁ · HCO(norm1(x)));   x ← x + DropPath(γ₂ · MLP(norm2(x)))
/// post-norm: x ← x + DropPath(γ₁ · norm1(HCO(x)));   x ← x + DropPath(γ₂ · norm2(MLP(x)))
/// ```
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct HeatBlock {
    /// Norm of the operator branch (eps 1e-5).
    pub norm1: LayerNorm,
    /// The heat-conduction operator.
    pub op: HeatConduction,
    /// Norm of the MLP branch (absent without MLP).
    pub norm2: Option<LayerNorm>,
    /// The channel MLP (absent when `mlp_ratio` is 0).
    pub mlp: Option<Mlp>,
    /// Layer scale of the operator branch, `[C]`.
    pub gamma1: Option<Param<Tensor<1>>>,
    /// Layer scale of the MLP branch, `[C]`.
    pub gamma2: Option<Param<Tensor<1>>>,
    /// Stochastic depth shared by both branches.
    pub drop_path: DropPath,
    /// Post-norm (true) or pre-norm (false).
    pub post_norm: bool,
}

/// The per-sample, per-channel factor of a branch `[B, C]`: layer scale `γ` times the
/// stochastic-depth factor, either or both; `None` when there is neither.
fn branch_scale(
    gamma: &Option<Param<Tensor<1>>>,
    drop: Option<Tensor<1>>,
    [batch, c]: [usize; 2],
) -> Option<Tensor<2>> {
    match (gamma.as_ref().map(|g| g.val()), drop) {
        (None, None) => None,
        (Some(g), None) => Some(g.unsqueeze_dim::<2>(0).expand([batch, c])),
        (None, Some(d)) => Some(d.unsqueeze_dim::<2>(1).expand([batch, c])),
        (Some(g), Some(d)) => Some(d.unsqueeze_dim::<2>(1) * g.unsqueeze_dim(0)),
    }
}

impl HeatBlock {
    /// The epsilon of this layer's LayerNorms (what an exporter writes beside their weights).
    pub const NORM_EPS: f64 = NORM_EPS;

    /// Runs the block on a channels-last map; `fve` is the stage's FVE at this map's size
    /// (ignored in the inference form).
    pub fn forward(&self, x: Tensor<4>, fve: Option<Tensor<3>>) -> Tensor<4> {
        let heat = if self.post_norm {
            layer_norm_with_epsilon(
                self.op.forward_channels_last(x.clone(), fve),
                &self.norm1,
                NORM_EPS,
            )
        } else {
            self.op.forward_channels_last(
                layer_norm_with_epsilon(x.clone(), &self.norm1, NORM_EPS),
                fve,
            )
        };
        let [batch, _, _, c] = x.dims();
        let device = x.device();
        // Layer scale and stochastic depth fold into one [B, C] factor of the residual sum.
        let scale1 = branch_scale(
            &self.gamma1,
            self.drop_path.sample_scale(batch, &device),
            [batch, c],
        );
        let x = residual(x, heat, scale1);
        match (&self.mlp, &self.norm2) {
            (Some(mlp), Some(norm2)) => {
                let y = if self.post_norm {
                    layer_norm_with_epsilon(mlp.forward(x.clone()), norm2, NORM_EPS)
                } else {
                    mlp.forward(layer_norm_with_epsilon(x.clone(), norm2, NORM_EPS))
                };
                let drop = self.drop_path.sample_scale(batch, &device);
                residual(x, y, branch_scale(&self.gamma2, drop, [batch, c]))
            }
            _ => x,
        }
    }
}
