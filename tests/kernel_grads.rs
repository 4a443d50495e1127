//! The host kernels' forward and backward passes on `Autodiff<Flex>` (the training path)
//! against two references that do not use them: the same formula in Burn's operators in
//! float64 (autodiff on float64 never takes the host path), and Burn's own float32 operator.
//! Values and every input's gradient are compared, for a random upstream gradient, on the
//! instruction family this machine has (AVX-512, AVX2 or portable) and again with the portable
//! code forced, so that CI covers both whatever its CPU. The whole model's training gradients
//! through these kernels are checked against PyTorch in `tests/gradients.rs`.

#[macro_use]
mod common;

use std::sync::Mutex;

use burn::module::{Param, ParamId};
use burn::nn::LayerNormConfig;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Distribution, FloatDType, TensorData};
use vheat::kernels::{
    depthwise_conv3x3_nhwc, gelu, heat_decay, isa, layer_norm_with_epsilon, on_host, residual,
    silu_gate,
};

/// The ISA switch is process-wide: the two tests that flip it run one at a time.
static ISA_SWITCH: Mutex<()> = Mutex::new(());

fn ad() -> Device {
    common::cpu().autodiff()
}

fn host(t: Tensor<4>) -> Vec<f64> {
    t.cast(FloatDType::F64)
        .into_data()
        .try_to_vec()
        .expect("f64 data")
}

/// `max |got − want| / (1 + |want|)`.
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
        .fold(0.0, |m, e| if e.is_nan() { f64::NAN } else { m.max(e) })
}

fn random(shape: [usize; 4], std: f64, seed: u64) -> Tensor<4> {
    let d = common::cpu();
    d.seed(seed);
    Tensor::<4>::random(shape, Distribution::Normal(0.0, std), &d)
}

/// `t` on the autodiff device in `dtype`, as a leaf that wants its gradient.
fn leaf<const D: usize>(t: &Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    Tensor::from_data(
        t.clone().cast(dtype).into_data(),
        (&ad(), DType::from(dtype)),
    )
    .require_grad()
}

/// Runs `f` on float32 leaves (through the kernels) and on float64 leaves (Burn's operators),
/// and on float32 leaves through `burn_f32` (Burn's float32 operator); returns the worst
/// relative error of the outputs and of each input's gradient, against float64 and against
/// Burn's float32.
fn compare<F, G>(inputs: &[Tensor<4>], upstream: &Tensor<4>, kernel: F, burn_op: G) -> (f64, f64)
where
    F: Fn(&[Tensor<4>]) -> Tensor<4>,
    G: Fn(&[Tensor<4>]) -> Tensor<4>,
{
    let run = |dtype: FloatDType, op: &dyn Fn(&[Tensor<4>]) -> Tensor<4>| {
        let leaves: Vec<Tensor<4>> = inputs.iter().map(|t| leaf(t, dtype)).collect();
        let up: Tensor<4> = Tensor::from_data(
            upstream.clone().cast(dtype).into_data(),
            (&ad(), DType::from(dtype)),
        );
        assert_eq!(up.dtype(), DType::from(dtype));
        let out = op(&leaves);
        let grads = (out.clone() * up).sum().backward();
        let mut all = vec![host(out.inner())];
        for l in &leaves {
            all.push(host(l.grad(&grads).expect("every input gets a gradient")));
        }
        all
    };
    assert!(on_host(&leaf(&inputs[0], FloatDType::F32)));
    let got = run(FloatDType::F32, &kernel);
    let want64 = run(FloatDType::F64, &burn_op);
    let want32 = run(FloatDType::F32, &burn_op);
    let worst = |want: &[Vec<f64>]| {
        got.iter()
            .zip(want)
            .map(|(g, w)| rel_err(g, w))
            .fold(0.0f64, f64::max)
    };
    (worst(&want64), worst(&want32))
}

fn check_gelu() {
    let x = random([2, 3, 5, 37], 3.0, 1);
    let up = random([2, 3, 5, 37], 1.0, 2);
    let (e64, e32) = compare(
        &[x],
        &up,
        |t| gelu(t[0].clone()),
        |t| burn::tensor::activation::gelu(t[0].clone()),
    );
    eprintln!("gelu: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}");
    // Float32 rounding of values up to ~10 (6e-8 relative) plus the fitted erfc (a few ulp);
    // Burn's own float32 GELU is within the same distance of float64.
    assert!(e64 < 1e-6 && e32 < 2e-6, "gelu {e64:e} / {e32:e}");
}

fn check_silu_gate() {
    let a = random([2, 4, 3, 33], 2.0, 3);
    let z = random([2, 4, 3, 33], 4.0, 4);
    let up = random([2, 4, 3, 33], 1.0, 5);
    let (e64, e32) = compare(
        &[a, z],
        &up,
        |t| silu_gate(t[0].clone(), t[1].clone()),
        |t| t[0].clone() * burn::tensor::activation::silu(t[1].clone()),
    );
    eprintln!("silu gate: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}");
    // A few float32 roundings of products up to ~50 (relative to 1 + |value|) and the
    // vectorised exp (2 ulp).
    assert!(e64 < 2e-6 && e32 < 4e-6, "silu gate {e64:e} / {e32:e}");
}

/// The spectral decay from the conductivity predictor's raw output, against Burn's
/// `(relu(k) · freq).neg().exp()`: values and the gradient in `k` (`k` on both sides of 0).
fn check_heat_decay() {
    let (h, w, c) = (5, 6, 37);
    let k = random([1, h, w, c], 1.5, 11);
    let up = random([1, h, w, c], 1.0, 12);
    // A frequency grid of the operator's range, 0 (the DC mode) to 2π² at the far corner.
    let freq: Vec<f32> = (0..h * w)
        .map(|i| {
            let (n, m) = ((i / w) as f64, (i % w) as f64);
            let pi = std::f64::consts::PI;
            ((pi * n / h as f64).powi(2) + (pi * m / w as f64).powi(2)) as f32
        })
        .collect();
    let freq_in = |t: &Tensor<4>| -> Tensor<2> {
        Tensor::<1>::from_data(TensorData::new(freq.clone(), [h * w]), &ad())
            .cast(FloatDType::from(t.dtype()))
            .reshape([h, w])
    };
    let (e64, e32) = compare(
        &[k],
        &up,
        |t| heat_decay(t[0].clone().reshape([h, w, c]), freq_in(&t[0])).reshape([1, h, w, c]),
        |t| {
            let k: Tensor<3> = t[0].clone().reshape([h, w, c]);
            let f: Tensor<3> = freq_in(&t[0]).unsqueeze_dim(2);
            (burn::tensor::activation::relu(k) * f)
                .neg()
                .exp()
                .reshape([1, h, w, c])
        },
    );
    eprintln!("heat decay: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}");
    // One product of values up to ~5·20 rounded to float32 (6e-8 relative), the vectorised
    // exp (a few ulp) and, in the gradient, one more product; Burn's float32 exp rounds too.
    assert!(e64 < 2e-6 && e32 < 4e-6, "heat decay {e64:e} / {e32:e}");
}

/// The residual connection with a tracked per-sample scale (layer scale), with a constant one
/// (stochastic depth alone: 0 drops a sample) and without one, against Burn's broadcast
/// product and sum.
fn check_residual() {
    let (b, h, w, c) = (3, 4, 5, 37);
    let x = random([b, h, w, c], 1.0, 21);
    let branch = random([b, h, w, c], 2.0, 22);
    let scale = random([b, 1, 1, c], 1.0, 23);
    let up = random([b, h, w, c], 1.0, 24);
    let (e64, e32) = compare(
        &[x.clone(), branch.clone(), scale],
        &up,
        |t| {
            residual(
                t[0].clone(),
                t[1].clone(),
                Some(t[2].clone().reshape([b, c])),
            )
        },
        |t| t[0].clone() + t[1].clone() * t[2].clone(),
    );
    eprintln!("residual, tracked scale: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}");
    // One product and one sum per value in float32; the scale's gradient sums h·w = 20
    // products per sample and channel in float32, in another order than Burn's.
    assert!(e64 < 2e-6 && e32 < 2e-6, "residual {e64:e} / {e32:e}");

    // Sample 1 dropped, the others kept with probability 0.8: the factors a drop path draws.
    let keep: Vec<f32> = (0..b * c)
        .map(|i| if i / c == 1 { 0.0 } else { 1.25 })
        .collect();
    let constant = |like: &Tensor<4>| -> Tensor<2> {
        Tensor::<1>::from_data(TensorData::new(keep.clone(), [b * c]), &ad())
            .cast(FloatDType::from(like.dtype()))
            .reshape([b, c])
    };
    let (e64, e32) = compare(
        &[x.clone(), branch.clone()],
        &up,
        |t| residual(t[0].clone(), t[1].clone(), Some(constant(&t[0]))),
        |t| t[0].clone() + t[1].clone() * constant(&t[0]).reshape([b, 1, 1, c]),
    );
    eprintln!("residual, constant scale: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}");
    // As above, without the scale's gradient; 1.25 and 0 are exact in float32.
    assert!(
        e64 < 1e-6 && e32 < 1e-6,
        "residual (constant) {e64:e} / {e32:e}"
    );

    let (e64, e32) = compare(
        &[x, branch],
        &up,
        |t| residual(t[0].clone(), t[1].clone(), None),
        |t| t[0].clone() + t[1].clone(),
    );
    eprintln!("residual sum: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}");
    // One float32 sum per value: the same bits as Burn's; the gradients are the upstream one.
    assert!(e64 < 1e-6 && e32 == 0.0, "residual sum {e64:e} / {e32:e}");
}

fn check_layer_norm() {
    for (c, eps) in [(1usize, 1e-5), (7, 1e-6), (16, 1e-5), (33, 0.5), (96, 1e-5)] {
        let x = random([2, 3, 4, c], 2.0, 6 + c as u64) + 0.7;
        let gamma = random([1, 1, 1, c], 1.0, 7);
        let beta = random([1, 1, 1, c], 1.0, 8);
        let up = random([2, 3, 4, c], 1.0, 9);
        let norm_of = |gamma: &Tensor<4>, beta: &Tensor<4>| {
            let mut norm = LayerNormConfig::new(c).with_epsilon(eps).init(&ad());
            // `initialized` keeps the tensors as they are (reshapes of tracked leaves).
            norm.gamma = Param::initialized(ParamId::new(), gamma.clone().reshape([c]));
            norm.beta = Some(Param::initialized(
                ParamId::new(),
                beta.clone().reshape([c]),
            ));
            norm
        };
        // The float64 reference is written out (Burn's LayerNorm module keeps float32 params).
        let (e64, e32) = compare(
            &[x, gamma, beta],
            &up,
            |t| layer_norm_with_epsilon(t[0].clone(), &norm_of(&t[1], &t[2]), eps),
            |t| {
                if t[0].dtype() == DType::F32 {
                    return norm_of(&t[1], &t[2]).forward(t[0].clone());
                }
                let (x, gamma, beta) = (t[0].clone(), t[1].clone(), t[2].clone());
                let mean = x.clone().mean_dim(3);
                let centred = x - mean;
                let var = (centred.clone() * centred.clone()).mean_dim(3);
                centred / (var + eps).sqrt() * gamma + beta
            },
        );
        eprintln!("layer norm C={c} eps={eps}: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}");
        // Normalised values are O(1) and the sums run over C ≤ 96 terms and 24 rows (γ, β
        // gradients): float32 accumulation error ~ √n · 6e-8 relative to the terms' size, and
        // 1/√(σ²+ε) amplifies the input's rounding by up to 1/σ (σ ≥ 0.3 here).
        assert!(
            e64 < 2e-5 && e32 < 4e-5,
            "layer norm C={c}: {e64:e} / {e32:e}"
        );
    }
}

fn check_depthwise() {
    for &(b, h, w, c) in &[(2, 6, 5, 3), (1, 1, 1, 4), (1, 4, 1, 17), (2, 9, 7, 32)] {
        let x = random([b, h, w, c], 1.0, 10);
        let weight = random([c, 1, 3, 3], 1.0, 11);
        let bias = random([1, 1, 1, c], 1.0, 12);
        let up = random([b, h, w, c], 1.0, 13);
        let (e64, e32) = compare(
            &[x, weight, bias],
            &up,
            |t| depthwise_conv3x3_nhwc(t[0].clone(), t[1].clone(), Some(t[2].clone().reshape([c]))),
            |t| {
                conv2d(
                    t[0].clone().permute([0, 3, 1, 2]),
                    t[1].clone(),
                    Some(t[2].clone().reshape([c])),
                    ConvOptions::new([1, 1], [1, 1], [1, 1], c),
                )
                .permute([0, 2, 3, 1])
            },
        );
        eprintln!("depthwise {b}x{h}x{w}x{c}: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}");
        // Nine-term sums for values and the input gradient, B·H·W ≤ 126-term sums for the tap
        // and bias gradients, of O(1) products: float32 accumulation, in another order than
        // Burn's.
        assert!(
            e64 < 1e-5 && e32 < 2e-5,
            "depthwise {b}x{h}x{w}x{c}: {e64:e} / {e32:e}"
        );
    }
}

fn check_linear() {
    for &(rows, k, n) in &[
        (1usize, 1usize, 1usize),
        (13, 7, 5),
        (40, 96, 33),
        (9, 300, 64),
    ] {
        let x = random([1, 1, rows, k], 1.0, 16);
        let w_kn = random([1, 1, k, n], 0.3, 17);
        let bias = random([1, 1, 1, n], 1.0, 18);
        let up = random([1, 1, rows, n], 1.0, 19);
        let burn_op = |t: &[Tensor<4>]| {
            burn::tensor::module::linear(
                t[0].clone(),
                t[1].clone().reshape([k, n]),
                Some(t[2].clone().reshape([n])),
            )
        };
        let (e64, e32) = compare(
            &[x.clone(), w_kn.clone(), bias.clone()],
            &up,
            |t| {
                vheat::kernels::linear(
                    t[0].clone(),
                    t[1].clone().reshape([k, n]),
                    Some(t[2].clone().reshape([n])),
                )
            },
            burn_op,
        );
        // PyTorch's [N, K] layout: the same product with the weight stored transposed.
        let w_nk = w_kn
            .clone()
            .reshape([k, n])
            .transpose()
            .reshape([1, 1, n, k]);
        let (t64, t32) = compare(
            &[x, w_nk, bias],
            &up,
            |t| {
                vheat::kernels::linear_out_in(
                    t[0].clone(),
                    t[1].clone().reshape([n, k]),
                    Some(t[2].clone().reshape([n])),
                )
            },
            |t| {
                burn::tensor::module::linear(
                    t[0].clone(),
                    t[1].clone().reshape([n, k]).transpose(),
                    Some(t[2].clone().reshape([n])),
                )
            },
        );
        eprintln!("linear {rows}x{k}x{n}: vs f64 {e64:.2e} / {t64:.2e}, vs Burn f32 {e32:.2e} / {t32:.2e}");
        // Sums of K ≤ 300 products of O(1)·O(0.3) values (and M ≤ 40 for the weight's
        // gradient): float32 accumulation in another order than Burn's, ~√K · 6e-8 relative to
        // the sum of |terms|, which is up to ~5× the result here.
        let worst = e64.max(t64).max(e32 / 2.0).max(t32 / 2.0);
        assert!(
            worst < 2e-5,
            "linear {rows}x{k}x{n}: {e64:e} {t64:e} {e32:e} {t32:e}"
        );
    }
}

fn check_mix_along() {
    // (before, n, after, m): DCT-like squares, a rectangle (resampling), a partial strip.
    for &(before, n, after, m) in &[
        (3usize, 7usize, 64usize, 7usize),
        (2, 14, 96, 14),
        (1, 5, 40, 9),
        (4, 3, 1, 2),
    ] {
        let x = random([1, before, n, after], 1.0, 20);
        let matrix = random([1, 1, m, n], 0.5, 21);
        let up = random([1, before, m, after], 1.0, 22);
        let (e64, e32) = compare(
            &[x, matrix],
            &up,
            |t| {
                vheat::kernels::mix_along(
                    t[0].clone().reshape([before, n, after]),
                    t[1].clone().reshape([m, n]),
                )
                .reshape([1, before, m, after])
            },
            |t| {
                let a: Tensor<3> = t[1].clone().reshape([1, m, n]);
                a.matmul(t[0].clone().reshape([before, n, after]))
                    .reshape([1, before, m, after])
            },
        );
        eprintln!(
            "mix along {before}x{n}x{after} by {m}x{n}: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}"
        );
        // Sums of n ≤ 14 products for values and the input gradient, before·after ≤ 192 for
        // the matrix gradient, of O(1) terms: float32 accumulation in another order.
        assert!(e64 < 1e-5 && e32 < 2e-5, "mix along: {e64:e} / {e32:e}");
    }
}

/// The bases of `n`, in `dtype`, on the autodiff device (constants: no gradient).
fn basis(n: usize, dtype: FloatDType) -> Tensor<2> {
    let b = vheat::heat::dct_basis(n, &common::cpu());
    Tensor::from_data(b.cast(dtype).into_data(), (&ad(), DType::from(dtype)))
}

fn check_diffuse() {
    // Partial channel panels (16, 40), squares and rectangles, a single pixel.
    for &(b, h, w, c) in &[(2, 7, 5, 16), (1, 14, 14, 64), (3, 4, 9, 40), (1, 1, 1, 1)] {
        let x = random([b, h, w, c], 1.0, 30);
        let decay = random([1, h, w, c], 1.0, 31);
        let up = random([b, h, w, c], 1.0, 32);
        let (e64, e32) = compare(
            &[x, decay],
            &up,
            |t| {
                let dtype = FloatDType::F32;
                vheat::kernels::diffuse(
                    t[0].clone(),
                    t[1].clone().reshape([h, w, c]),
                    basis(h, dtype),
                    basis(w, dtype),
                )
            },
            |t| {
                // IDCT2D(DCT2D(x) ⊙ decay) as plain batched products in the leaves' precision.
                let dtype = FloatDType::from(t[0].dtype());
                let along = |x: Tensor<4>, axis: usize, m: Tensor<2>| {
                    let dims = x.dims();
                    let before: usize = dims[..axis].iter().product();
                    let after: usize = dims[axis + 1..].iter().product();
                    let m: Tensor<3> = m.unsqueeze();
                    m.matmul(x.reshape([before, dims[axis], after]))
                        .reshape(dims)
                };
                let (dh, dw) = (basis(h, dtype), basis(w, dtype));
                let spectrum = along(along(t[0].clone(), 1, dh.clone()), 2, dw.clone());
                let scaled = spectrum * t[1].clone();
                along(along(scaled, 1, dh.transpose()), 2, dw.transpose())
            },
        );
        eprintln!("diffuse {b}x{h}x{w}x{c}: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}");
        // Four chained sums of ≤ 14 products of O(1) values for values and the input gradient,
        // and a further B ≤ 3-term sum for the decay's: float32 accumulation in another order
        // than Burn's.
        assert!(
            e64 < 1e-5 && e32 < 2e-5,
            "diffuse {b}x{h}x{w}x{c}: {e64:e} / {e32:e}"
        );
    }
}

/// The dense 3×3 convolution: values on the plain device (its inference path) and values and
/// gradients under autodiff, against Burn's `conv2d` in float64 and float32.
fn check_conv3x3() {
    for &(b, h, w, c_in, c_out, stride) in &[
        (2, 9, 7, 3, 8, 2),
        (1, 8, 8, 16, 40, 2),
        (1, 5, 6, 4, 33, 1),
        (1, 1, 1, 2, 3, 2),
    ] {
        let x = random([b, h, w, c_in], 1.0, 40);
        let weight = random([c_out, c_in, 3, 3], 0.5, 41);
        let bias: Tensor<1> = random([1, 1, 1, c_out], 1.0, 42).reshape([c_out]);
        assert!(on_host(&x));
        let got = host(vheat::kernels::conv3x3_nhwc(
            x.clone(),
            weight.clone(),
            Some(bias.clone()),
            stride,
        ));
        let burn = |dtype: FloatDType| {
            let options = ConvOptions::new([stride, stride], [1, 1], [1, 1], 1);
            host(
                conv2d(
                    x.clone().cast(dtype).permute([0, 3, 1, 2]),
                    weight.clone().cast(dtype),
                    Some(bias.clone().cast(dtype)),
                    options,
                )
                .permute([0, 2, 3, 1]),
            )
        };
        let (e64, e32) = (
            rel_err(&got, &burn(FloatDType::F64)),
            rel_err(&got, &burn(FloatDType::F32)),
        );
        eprintln!(
            "conv3x3 {b}x{h}x{w}x{c_in}→{c_out} s{stride}: vs f64 {e64:.2e}, vs Burn f32 {e32:.2e}"
        );
        // Sums of 9·C_in ≤ 144 products of O(1)·O(0.5) values: float32 accumulation in another
        // order than Burn's.
        assert!(e64 < 1e-5 && e32 < 2e-5, "conv3x3: {e64:e} / {e32:e}");
        let up = random(
            [b, (h - 1) / stride + 1, (w - 1) / stride + 1, c_out],
            1.0,
            43,
        );
        let (g64, g32) = compare(
            &[x, weight, bias.reshape([1, 1, 1, c_out])],
            &up,
            |t| {
                vheat::kernels::conv3x3_nhwc(
                    t[0].clone(),
                    t[1].clone(),
                    Some(t[2].clone().reshape([c_out])),
                    stride,
                )
            },
            |t| {
                conv2d(
                    t[0].clone().permute([0, 3, 1, 2]),
                    t[1].clone(),
                    Some(t[2].clone().reshape([c_out])),
                    ConvOptions::new([stride, stride], [1, 1], [1, 1], 1),
                )
                .permute([0, 2, 3, 1])
            },
        );
        eprintln!("conv3x3 training: vs f64 {g64:.2e}, vs Burn f32 {g32:.2e}");
        // As above for values; the input gradient sums ≤ 9·C_out ≤ 360 products, the weight's
        // and bias's B·H_out·W_out ≤ 40 (same bound).
        assert!(
            g64 < 2e-5 && g32 < 4e-5,
            "conv3x3 training: {g64:e} / {g32:e}"
        );
    }
}

fn check_all() {
    check_diffuse();
    check_conv3x3();
    check_mix_along();
    check_linear();
    check_gelu();
    check_silu_gate();
    check_heat_decay();
    check_residual();
    check_layer_norm();
    check_depthwise();
}

#[test]
fn kernels_forward_and_backward_on_the_detected_isa() {
    let _one = ISA_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    isa::force_portable(false);
    eprintln!("instruction family: {}", isa::active());
    check_all();
}

/// Runs `check_all` with the kernels capped at `cap`, lifting the cap afterwards even if a
/// check fails.
fn check_all_capped_at(cap: isa::Isa) {
    let _one = ISA_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    isa::force(Some(cap));
    assert_eq!(isa::active(), cap.min(isa::detected()));
    let result = std::panic::catch_unwind(check_all);
    isa::force(None);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn kernels_forward_and_backward_on_the_portable_path() {
    check_all_capped_at(isa::Isa::Portable);
}

/// On an AVX-512 machine the detected family is AVX-512, so the AVX2 code (what an AVX2-only
/// machine runs: its own matrix-product tiles, 256-bit element-wise loops) is checked here.
#[test]
fn kernels_forward_and_backward_on_the_avx2_path() {
    if !isa::runnable().contains(&isa::Isa::Avx2) {
        eprintln!("this CPU has no AVX2 + FMA: the AVX2 path cannot run here");
        return;
    }
    check_all_capped_at(isa::Isa::Avx2);
}

#[test]
fn a_layer_norm_without_bias_or_in_float64_takes_burns_path_and_agrees() {
    let d = ad();
    let x: Tensor<4> = Tensor::from_data(random([1, 2, 3, 8], 1.0, 14).into_data(), &d);
    let plain = LayerNormConfig::new(8).with_bias(false).init(&d);
    let got = layer_norm_with_epsilon(x.clone(), &plain, 1e-5).inner();
    let want = plain.forward(x).inner();
    // The same Burn operator on the same values.
    assert_eq!(host(got), host(want));
}
