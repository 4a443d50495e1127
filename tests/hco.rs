//! Tests of `vheat::hco::HeatConduction` against the reference's `Heat2D` on the
//! `heat2d_op.safetensors` fixture (dim 12, a non-square 9×13 map, batch 2), plus properties of
//! the operator: the inference form, the channels-last entry point, `k = 0`, and conservation of
//! the channel mean by the diffusion.

#[macro_use]
mod common;

use burn::module::Param;
use burn::prelude::*;
use burn::store::{ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::activation::silu;
use common::*;
use vheat::hco::{HeatConduction, HeatConductionConfig};
use vheat::heat::{dct2d, idct2d};

const FIXTURE: &str = "heat2d_op.safetensors";

/// The operator's ten tensors under Burn's names (LayerNorm weight/bias are gamma/beta).
const BURN_KEYS: [&str; 10] = [
    "dwconv.weight",
    "dwconv.bias",
    "linear.weight",
    "linear.bias",
    "out_norm.gamma",
    "out_norm.beta",
    "out_linear.weight",
    "out_linear.bias",
    "to_k.weight",
    "to_k.bias",
];

/// A trainable `HeatConduction(12)` with the fixture's parameters, and the load report.
fn load_op(device: &Device) -> (HeatConduction, ApplyResult) {
    let mut op = HeatConductionConfig::new(12).init(device);
    let mut store = SafetensorsStore::from_file(fixture(FIXTURE))
        .with_from_adapter(PyTorchToBurnAdapter)
        .with_key_remapping(r"^op\.", "")
        .with_key_remapping(r"\.0\.", ".")
        .allow_partial(true);
    let result = op.load_from(&mut store).expect("fixture parameters load");
    (op, result)
}

/// Largest |a - b| over two equally shaped tensors.
fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    values(a)
        .iter()
        .zip(values(b))
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

per_backend! {
fn fixture_parameters_load_completely(d) {
    let (op, result) = load_op(d);
    println!("{result}");
    assert!(result.missing.is_empty(), "missing: {:?}", result.missing);
    assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
    for key in BURN_KEYS {
        assert!(
            result.applied.iter().any(|a| a == key),
            "{key} not applied; applied = {:?}",
            result.applied
        );
    }
    assert_eq!(result.applied.len(), 10, "applied = {:?}", result.applied);
    assert!(!op.is_inference());
    assert_eq!(op.dim(), 12);

    // The adapter transposed the PyTorch [out, in] Linear weight to Burn's [in, out].
    let fx = Tensors::open(FIXTURE);
    let torch_w = fx.get::<2>("op.linear.weight", d);
    assert_eq!(torch_w.dims(), [24, 12]);
    assert_eq!(op.linear.weight.dims(), [12, 24]);
    assert_eq!(values(op.linear.weight.val()), values(torch_w.transpose()));
    // Square Linears load without a shape error either way, so check their orientation too.
    let torch_k = fx.get::<2>("op.to_k.0.weight", d);
    let to_k = op.to_k.as_ref().expect("trainable form");
    assert_eq!(values(to_k.weight.val()), values(torch_k.transpose()));
    let torch_o = fx.get::<2>("op.out_linear.weight", d);
    assert_eq!(
        values(op.out_linear.weight.val()),
        values(torch_o.transpose())
    );
}
}

per_backend! {
/// The operator reproduces the reference's `Heat2D` output.
///
/// Tolerance: the parity bound of tests/common (|a−e| ≤ 1e-4 + 1e-4·|e|). The reference ran in
/// f32 on a CPU (MKL), Burn sums the conv, the four DCT matmuls and the Linears in a different
/// order, and LayerNorm divides by a per-pixel standard deviation that can amplify those
/// rounding differences; the fixtures README puts f32 agreement at about 1e-5.
fn forward_matches_reference(d) {
    let fx = Tensors::open(FIXTURE);
    let (op, _) = load_op(d);
    let input = fx.get::<4>("input", d);
    let fve = fx.get::<3>("freq_embed", d);
    let out = op.forward(input, Some(fve));
    assert_eq!(out.dims(), [2, 12, 9, 13]);
    assert_matches("heat2d_op output", out, &fx, "output");
}
}

per_backend! {
/// The inference form (decay precomputed from the FVE, `to_k` dropped) ignores the FVE argument
/// and gives the same output.
fn inference_form_matches_reference(d) {
    let fx = Tensors::open(FIXTURE);
    let (op, _) = load_op(d);
    let fve = fx.get::<3>("freq_embed", d);
    let fast = op.to_inference(fve.clone());
    assert!(fast.is_inference());
    assert!(fast.to_k.is_none());
    assert_eq!(fast.inference_size(), Some([9, 13]));
    // The stored decay is the trainable form's decay.
    let stored = fast.decay(None).expect("precomputed decay");
    let err = max_diff(stored, op.decay(Some(fve)).unwrap());
    assert!(err <= 1e-7, "precomputed decay differs by {err}");

    let input = fx.get::<4>("input", d);
    assert_matches(
        "heat2d_op inference form",
        fast.forward(input, None),
        &fx,
        "output",
    );
}
}

per_backend! {
/// `forward_channels_last` on an NHWC map is `forward` on the NCHW map, permuted.
fn channels_last_equals_nchw_forward(d) {
    let fx = Tensors::open(FIXTURE);
    let (op, _) = load_op(d);
    let input = fx.get::<4>("input", d);
    let fve = fx.get::<3>("freq_embed", d);
    let nchw = op.forward(input.clone(), Some(fve.clone()));
    let nhwc = op.forward_channels_last(input.permute([0, 2, 3, 1]), Some(fve));
    assert_eq!(nhwc.dims(), [2, 9, 13, 12]);
    let err = max_diff(nhwc.permute([0, 3, 1, 2]), nchw);
    println!("channels-last vs NCHW: max |diff| = {err:.3e}");
    assert!(err <= 1e-6, "channels-last and NCHW differ by {err}");
}
}

per_backend! {
/// The trainable form cannot run without the FVE.
#[should_panic(expected = "frequency-value embedding")]
fn trainable_form_without_fve_panics(d) {
    let fx = Tensors::open(FIXTURE);
    let (op, _) = load_op(d);
    let _ = op.forward(fx.get::<4>("input", d), None);
}
}

per_backend! {
/// The loaded decay is a genuine decay: in (0, 1], exactly 1 at the DC mode of every channel,
/// and below 1 elsewhere for at least some modes (k is not zero).
fn loaded_decay_is_in_unit_interval_with_unit_dc(d) {
    let fx = Tensors::open(FIXTURE);
    let (op, _) = load_op(d);
    let decay = op.decay(Some(fx.get::<3>("freq_embed", d))).unwrap();
    assert_eq!(decay.dims(), [9, 13, 12]);
    let v = values(decay);
    for (i, x) in v.iter().enumerate() {
        assert!(*x > 0.0 && *x <= 1.0, "decay[{i}] = {x}");
    }
    for (c, x) in v[..12].iter().enumerate() {
        assert_eq!(*x, 1.0, "DC decay of channel {c}");
    }
    let damped = v.iter().filter(|x| **x < 0.99).count();
    assert!(damped > v.len() / 4, "only {damped} modes damped: k is ~0");
}
}

per_backend! {
/// With `to_k` zeroed, `k = 0`: the decay is 1 everywhere and the diffusion is the identity, so
/// the operator reduces to `out_linear(out_norm(x) ⊙ silu(z))` with `x, z` from the conv and the
/// first Linear.
fn zero_conductivity_makes_diffusion_identity(d) {
    let fx = Tensors::open(FIXTURE);
    let (mut op, _) = load_op(d);
    let to_k = op.to_k.as_mut().expect("trainable form");
    to_k.weight = Param::from_tensor(Tensor::zeros([12, 12], d));
    to_k.bias = Some(Param::from_tensor(Tensor::zeros([12], d)));

    let fve = fx.get::<3>("freq_embed", d);
    let decay = values(op.decay(Some(fve.clone())).unwrap());
    assert_eq!(decay.len(), 9 * 13 * 12);
    assert!(decay.iter().all(|x| *x == 1.0), "decay with k = 0 is not 1");

    // The operator without the diffusion, built from its own parts.
    let input = fx.get::<4>("input", d);
    let x = op.dwconv.forward(input.clone()).permute([0, 2, 3, 1]);
    let xz = op.linear.forward(x);
    let [x, z]: [Tensor<4>; 2] = xz.chunk(2, 3).try_into().unwrap();
    let expected = op
        .out_linear
        .forward(op.out_norm.forward(x) * silu(z))
        .permute([0, 3, 1, 2]);

    let got = op.forward(input, Some(fve));
    let err = max_diff(got.clone(), expected);
    println!("k = 0 vs no diffusion: max |diff| = {err:.3e}");
    assert!(
        err <= 1e-5,
        "k = 0 output differs from the undiffused operator by {err}"
    );
    // And it differs from the reference output, which was computed with k > 0.
    let (es, ev) = fx.raw("output");
    assert_eq!(got.dims().to_vec(), *es);
    let off = values(got)
        .iter()
        .zip(ev)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(off > 1e-2, "k = 0 did not change the output ({off})");
}
}

per_backend! {
/// The DC mode is never damped (`decay[0, 0] = 1` for any `k ≥ 0`), so one diffusion step keeps
/// every channel's spatial mean: the total heat is conserved.
fn diffusion_conserves_channel_mean(d) {
    let fx = Tensors::open(FIXTURE);
    let (op, _) = load_op(d);
    let decay: Tensor<4> = op
        .decay(Some(fx.get::<3>("freq_embed", d)))
        .unwrap()
        .unsqueeze();

    // A deterministic non-constant field: sin/cos mix with a per-channel offset.
    let (h, w, c) = (9, 13, 12);
    let mut data = Vec::with_capacity(h * w * c);
    for i in 0..h {
        for j in 0..w {
            for k in 0..c {
                let t = (i * 31 + j * 17 + k * 7) as f32;
                data.push((t * 0.37).sin() + 0.5 * (t * 0.11).cos() + 0.1 * k as f32);
            }
        }
    }
    let x = Tensor::<4>::from_data(TensorData::new(data, [1, h, w, c]), d);
    let y = idct2d(dct2d(x.clone()) * decay);

    // The diffusion did something …
    let change = max_diff(y.clone(), x.clone());
    assert!(
        change > 1e-1,
        "diffusion left the field unchanged ({change})"
    );
    // … but not to the per-channel means.
    let mean_x = values(x.mean_dim(1).mean_dim(2));
    let mean_y = values(y.mean_dim(1).mean_dim(2));
    let err = assert_close_tol(
        "per-channel spatial mean after diffusion",
        &mean_y,
        &[c],
        &mean_x,
        &[c],
        1e-5,
        0.0,
    );
    assert!(err <= 1e-5);
}
}
