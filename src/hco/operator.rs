//! [`HeatConduction`]: one heat-conduction operator (the reference's `Heat2D`).

use crate::init::reference_linear as linear;
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::heat::{diffuse, frequency_sq};
use crate::kernels::{
    depthwise_conv3x3_nhwc, heat_decay, layer_norm_with_epsilon, linear as linear_kernel, silu_gate,
};

/// Builds a [`HeatConduction`] operator.
#[derive(Config, Debug)]
pub struct HeatConductionConfig {
    /// Channels in and out (the reference's `hidden_dim`).
    pub dim: usize,
    /// LayerNorm epsilon of `out_norm`; PyTorch's default, as in the reference.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
}

impl HeatConductionConfig {
    /// Creates the operator in its trainable form (with `to_k`) on `device`.
    pub fn init(&self, device: &Device) -> HeatConduction {
        let c = self.dim;
        HeatConduction {
            dwconv: Conv2dConfig::new([c, c], [3, 3])
                .with_groups(c)
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            linear: linear(c, 2 * c, device),
            out_norm: LayerNormConfig::new(c)
                .with_epsilon(self.norm_eps)
                .init(device),
            out_norm_eps: self.norm_eps,
            out_linear: linear(c, c, device),
            to_k: Some(linear(c, c, device)),
            k_exp: None,
        }
    }
}

/// The heat-conduction operator: depthwise conv → Linear(C→2C) → split `x`, `z` →
/// `IDCT2D(DCT2D(x) ⊙ decay^k)` → LayerNorm → `⊙ SiLU(z)` → Linear(C→C).
///
/// Field names are the reference's, so checkpoints map one to one. It exists in two forms:
/// - **trainable**: `to_k` is present and `k = ReLU(to_k(FVE))` is predicted on every call from
///   the frequency-value embedding passed to [`forward`](Self::forward);
/// - **inference**: `k_exp` holds `decay^k` precomputed for one map size (the reference's
///   `infer_mode`), `to_k` is gone and the FVE argument is ignored.
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct HeatConduction {
    /// Depthwise 3×3 convolution (stride 1, padding 1), `[C, 1, 3, 3]`. The forward pass uses
    /// its weight and bias through [`crate::kernels::depthwise_conv3x3_nhwc`] on the
    /// channels-last map, so its stride/padding settings are those, whatever the module says.
    pub dwconv: Conv2d,
    /// Linear C → 2C producing the field `x` and the gate `z`.
    pub linear: Linear,
    /// LayerNorm over channels after the diffusion.
    pub out_norm: LayerNorm,
    /// `out_norm`'s epsilon (the config's `norm_eps`), which the LayerNorm kernel needs and
    /// Burn's `LayerNorm` keeps private.
    out_norm_eps: f64,
    /// Output projection C → C.
    pub out_linear: Linear,
    /// Conductivity predictor `k = ReLU(to_k(FVE))` (trainable form only).
    pub to_k: Option<Linear>,
    /// Precomputed decay `exp(-(ωₙ²+ωₘ²))^k`, `[H, W, C]` (inference form only).
    pub k_exp: Option<Param<Tensor<3>>>,
}

impl HeatConduction {
    /// The epsilon of `out_norm` (what an exporter writes beside its weights).
    pub fn out_norm_epsilon(&self) -> f64 {
        self.out_norm_eps
    }

    /// Channels in and out.
    pub fn dim(&self) -> usize {
        self.out_linear.weight.dims()[1]
    }

    /// True in the inference form (precomputed decay, no `to_k`).
    pub fn is_inference(&self) -> bool {
        self.k_exp.is_some()
    }

    /// `[H, W]` the inference form was precomputed for, or `None` in the trainable form.
    pub fn inference_size(&self) -> Option<[usize; 2]> {
        self.k_exp.as_ref().map(|k| {
            let [h, w, _] = k.dims();
            [h, w]
        })
    }

    /// The conductivity `k = ReLU(to_k(fve))`, `[H, W, C]`, from an FVE of the map's size.
    ///
    /// Returns `None` in the inference form, which no longer has `to_k`.
    pub fn conductivity(&self, fve: Tensor<3>) -> Option<Tensor<3>> {
        self.conductivity_raw(fve).map(relu)
    }

    /// `to_k(fve)` before its ReLU, through the host product where it applies.
    fn conductivity_raw(&self, fve: Tensor<3>) -> Option<Tensor<3>> {
        let to_k = self.to_k.as_ref()?;
        Some(linear_kernel(
            fve,
            to_k.weight.val(),
            to_k.bias.as_ref().map(|b| b.val()),
        ))
    }

    /// The spectral decay `exp(-(ωₙ²+ωₘ²))^k` (`[H, W, C]`) for an `[H, W, C]` FVE.
    ///
    /// Computed as `exp(-(ωₙ²+ωₘ²)·k)`, which is the same number as the reference's
    /// `decay_map ** k` and has the exact gradient `-(ωₙ²+ωₘ²)·decay^k` in `k`.
    /// In the inference form it returns the precomputed decay and ignores `fve`.
    pub fn decay(&self, fve: Option<Tensor<3>>) -> Option<Tensor<3>> {
        if let Some(k_exp) = &self.k_exp {
            return Some(k_exp.val());
        }
        let fve = fve?;
        let [h, w, _] = fve.dims();
        let k = self.conductivity_raw(fve)?;
        let mut freq: Tensor<2> = frequency_sq(h, w, &k.device());
        if freq.dtype() != k.dtype() {
            // The cached grid is f32; a reduced-precision model gets it in its own precision.
            freq = freq.cast(burn::tensor::FloatDType::from(k.dtype()));
        }
        Some(heat_decay(k, freq))
    }

    /// Runs the operator on a channels-last map `[B, H, W, C]` → `[B, H, W, C]`.
    ///
    /// `fve` is the `[H, W, C]` frequency-value embedding at this map's size (trainable form);
    /// the inference form ignores it.
    ///
    /// # Panics
    /// In the trainable form when `fve` is `None`, and when the FVE or the precomputed decay is
    /// not `[H, W, C]`. [`crate::VHeat::try_forward`] validates these before running.
    pub fn forward_channels_last(&self, x: Tensor<4>, fve: Option<Tensor<3>>) -> Tensor<4> {
        let [_, h, w, c] = x.dims();
        let x = depthwise_conv3x3_nhwc(
            x,
            self.dwconv.weight.val(),
            self.dwconv.bias.as_ref().map(|b| b.val()),
        );
        // `linear` (C → 2C) as two products, one per half: each output is contiguous (no copy of
        // a strided half before the DCT), and on the CPU two [C, C] products ran faster than one
        // [C, 2C] (vHeat-T, batch 8: 5.6–6.0 against 4.9–5.4 img/s, interleaved).
        let weight = self.linear.weight.val();
        let bias = self.linear.bias.as_ref().map(|b| b.val());
        let half = |i: usize| {
            crate::kernels::linear(
                x.clone(),
                weight.clone().narrow(1, i * c, c),
                bias.clone().map(|b| b.narrow(0, i * c, c)),
            )
        };
        let (x, z) = (half(0), half(1));

        let decay = self
            .decay(fve)
            .expect("HeatConduction in the trainable form needs the frequency-value embedding");
        debug_assert_eq!(decay.dims(), [h, w, c]);
        let x = diffuse(x, decay);

        let x = silu_gate(
            layer_norm_with_epsilon(x, &self.out_norm, self.out_norm_eps),
            z,
        );
        let out = &self.out_linear;
        crate::kernels::linear(x, out.weight.val(), out.bias.as_ref().map(|b| b.val()))
    }

    /// Runs the operator on an NCHW map `[B, C, H, W]` → `[B, C, H, W]`, like the reference.
    ///
    /// See [`forward_channels_last`](Self::forward_channels_last) for `fve`.
    pub fn forward(&self, x: Tensor<4>, fve: Option<Tensor<3>>) -> Tensor<4> {
        self.forward_channels_last(x.permute([0, 2, 3, 1]), fve)
            .permute([0, 3, 1, 2])
    }

    /// The inference form: `decay^k` precomputed from `fve` (`[H, W, C]`, at the map size the
    /// model will run at), `to_k` dropped. Returns the operator unchanged if it is already in
    /// the inference form.
    pub fn to_inference(&self, fve: Tensor<3>) -> HeatConduction {
        let mut op = self.clone();
        if op.k_exp.is_none() {
            if let Some(decay) = self.decay(Some(fve)) {
                op.k_exp = Some(Param::from_tensor(decay.detach()).set_require_grad(false));
                op.to_k = None;
            }
        }
        op
    }

    /// The trainable form again: the given `to_k` is put back and the precomputed decay dropped.
    pub fn to_trainable(&self, to_k: Linear) -> HeatConduction {
        let mut op = self.clone();
        op.to_k = Some(to_k);
        op.k_exp = None;
        op
    }
}
