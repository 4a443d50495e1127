//! [`HostKernels`] on flex: float32 tensors run the host kernels of `activation`, `layer_norm`
//! and `depthwise`, in parallel on the rayon pool; any other dtype takes the reference
//! formulas in Burn's operators (`super::grad`).

use std::borrow::Cow;
use std::sync::Arc;

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

use super::activation::{
    gelu_backward_slice, gelu_slice, gelu_to_slice, silu_gate_backward_slice, silu_gate_slice,
    silu_gate_to_slice,
};
use super::adamw::{adamw_slice, AdamwStep};
use super::buffer::{copied, filled, gathered, zeroed};
use super::conv::{
    conv3x3, conv3x3_input_grad, pack_weight, pack_weight_for_input_grad, patch_matrix,
};
use super::decay::{decay_backward_rows, decay_rows};
use super::depthwise::{dwconv3x3_backward, dwconv3x3_forward};
use super::diffusion::{diffuse, diffuse_backward, fits};
use super::gemm::{gemm, mix_along, PackedB, MIX_MAX_AXIS};
use super::grad::{
    adamw_step_reference, conv3x3_backward_reference, conv3x3_reference,
    diffuse_backward_reference, diffuse_reference, dwconv3x3_backward_reference,
    dwconv3x3_reference, heat_decay_backward_reference, heat_decay_reference,
    layer_norm_backward_reference, linear_backward_reference, linear_reference,
    mix_along_reference, residual_backward_reference, residual_reference, scale_reference,
    silu_gate_backward_reference, sum_of_squares_reference, HostKernels,
};
use super::layer_norm::{layer_norm_backward, layer_norm_forward};
use super::mlp::{mlp, worth_fusing};
use super::packed_cache::{packed, Orientation};
use super::reduce::{column_sums, sum_of_squares};
use super::residual::{scaled_sum, scaled_sum_backward, sum};
use super::transposed_product::transposed_product;
use super::CHUNK;

fn is_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// The values of float32 `t` in row-major order, borrowed when they already are; a strided
/// view is gathered on the pool (`super::buffer`), not by flex's one-thread copy.
fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
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
fn reusable(t: &FlexTensor) -> bool {
    t.is_contiguous()
        && t.layout().start_offset() == 0
        && t.bytes().len() == t.layout().num_elements() * 4
        && t.is_unique()
}

/// A uniquely owned, contiguous float32 buffer of `t`'s values (reusing `t`'s when it can,
/// else copied on the pool).
fn owned(t: FlexTensor) -> FlexTensor {
    if reusable(&t) {
        return t;
    }
    let copy = match values(&t) {
        Cow::Borrowed(v) => copied(v),
        Cow::Owned(v) => v,
    };
    tensor(copy, t.shape())
}

fn tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// PyTorch's `[C, 1, 3, 3]` weight as `[9][C]` taps.
fn taps_of(weight: &FlexTensor) -> Vec<f32> {
    let w = values(weight);
    let c = w.len() / 9;
    let mut taps = vec![0.0f32; 9 * c];
    for ch in 0..c {
        for t in 0..9 {
            taps[t * c + ch] = w[ch * 9 + t];
        }
    }
    taps
}

/// `(M, K)`: `x` (`[…, K]`) viewed as an `M × K` matrix.
fn rows_and_inner(x: &FlexTensor) -> (usize, usize) {
    let shape = x.shape();
    let k = shape[shape.num_dims() - 1];
    (shape.num_elements() / k.max(1), k)
}

/// `(N, B)`: the weight packed as the forward product's `B` (`K × N`), from the cache of
/// packed weights when this weight buffer was packed before.
fn packed_weight(weight: &FlexTensor, k: usize, out_in: bool) -> (usize, Arc<PackedB>) {
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

/// `[B, H, W, C]` when the diffusion kernel takes these operands: float32, `x` `[B, H, W, C]`,
/// `decay` `[H, W, C]`, `dct_h` `[H, H]`, `dct_w` `[W, W]`, both axes short enough.
fn diffusion_dims(
    x: &FlexTensor,
    decay: &FlexTensor,
    dct_h: &FlexTensor,
    dct_w: &FlexTensor,
) -> Option<[usize; 4]> {
    if !is_f32(&[x, decay, dct_h, dct_w]) || x.shape().num_dims() != 4 {
        return None;
    }
    let dims = dims4(x);
    let [_, h, w, c] = dims;
    let shapes_agree = decay.shape().to_vec() == [h, w, c]
        && dct_h.shape().to_vec() == [h, h]
        && dct_w.shape().to_vec() == [w, w];
    (shapes_agree && fits(dims)).then_some(dims)
}

/// `C` when the decay kernel takes `k` and `freq`: float32, `k` `[H, W, C]` with `C > 0`,
/// `freq` `[H, W]`.
fn decay_channels(k: &FlexTensor, freq: &FlexTensor) -> Option<usize> {
    let (ks, fs) = (k.shape(), freq.shape());
    let fits = is_f32(&[k, freq])
        && ks.num_dims() == 3
        && fs.num_dims() == 2
        && ks[0] == fs[0]
        && ks[1] == fs[1]
        && ks[2] > 0;
    fits.then(|| ks[2])
}

/// Whether the dense 3×3 kernel takes `x` and `weight`: float32, `x` `[B, H, W, C_in]`,
/// `weight` `[C_out, C_in, 3, 3]`, a stride of at least 1.
fn conv3x3_fits(x: &FlexTensor, weight: &FlexTensor, stride: usize) -> bool {
    let (xs, ws) = (x.shape(), weight.shape());
    is_f32(&[x, weight])
        && stride > 0
        && xs.num_dims() == 4
        && ws.num_dims() == 4
        && ws[1] == xs[3]
        && ws[2] == 3
        && ws[3] == 3
}

/// `(dW, db)` of a projection `x·W + b` (`W` stored `[out, in]` when `out_in`, else
/// `[in, out]`) for the output gradient `grad`. dW is [`transposed_product`] (the product Burn
/// uses, without its output copy), computed directly in the stored orientation so that no
/// transposed view reaches the optimiser; db is summed on the pool.
fn weight_grads(x: FlexTensor, grad: &FlexTensor, out_in: bool) -> (FlexTensor, FlexTensor) {
    let (m, k) = rows_and_inner(&x);
    let (_, n) = rows_and_inner(grad);
    let (x, g) = (values(&x), values(grad));
    let db = column_sums(&g, m, n);
    let dw = if out_in {
        tensor(transposed_product(&g, &x, m, n, k), [n, k])
    } else {
        tensor(transposed_product(&x, &g, m, k, n), [k, n])
    };
    (dw, tensor(db, [n]))
}

/// `[B, C]` when `a` and `b` are float32 of one shape `[B, …, C]` and `scale` float32
/// `[B, C]`: the residual kernel's case.
fn residual_rows(a: &FlexTensor, b: &FlexTensor, scale: &FlexTensor) -> Option<[usize; 2]> {
    let shape = a.shape();
    let rank = shape.num_dims();
    let bc = [shape[0], shape[rank - 1]];
    let fits = is_f32(&[a, b, scale])
        && rank >= 2
        && b.shape() == shape
        && scale.shape().num_dims() == 2
        && [scale.shape()[0], scale.shape()[1]] == bc
        && bc[0] > 0
        && bc[1] > 0;
    fits.then_some(bc)
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

impl HostKernels for Flex {
    fn vheat_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&x]) {
            return <Self as burn::backend::ops::ActivationOps<Self>>::gelu(x);
        }
        if !reusable(&x) {
            // The input is kept (autodiff saves it for the backward pass): one pass into a
            // fresh buffer rather than a copy and a pass over it.
            let xv = values(&x);
            let out = filled(xv.len(), |start, out| {
                gelu_to_slice(&xv[start..start + out.len()], out)
            });
            return tensor(out, x.shape());
        }
        let mut x = x;
        let v = x.storage_mut::<f32>();
        v.par_chunks_mut(CHUNK).for_each(gelu_slice);
        x
    }

    fn vheat_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&x, &grad]) {
            return <Self as burn::backend::ops::ActivationOps<Self>>::gelu_backward(x, grad);
        }
        let x_values = values(&x);
        let mut grad = owned(grad);
        let g = grad.storage_mut::<f32>();
        g.par_chunks_mut(CHUNK)
            .zip(x_values.par_chunks(CHUNK))
            .for_each(|(g, x)| gelu_backward_slice(x, g));
        grad
    }

    fn vheat_heat_decay(k: FloatTensor<Self>, freq: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(c) = decay_channels(&k, &freq) else {
            return heat_decay_reference::<Self>(k, freq);
        };
        let (kv, fv) = (values(&k), values(&freq));
        let mut out = zeroed(kv.len());
        let rows = (CHUNK / c).max(1);
        out.par_chunks_mut(rows * c)
            .zip(kv.par_chunks(rows * c))
            .zip(fv.par_chunks(rows))
            .for_each(|((out, k), freq)| decay_rows(k, freq, c, out));
        tensor(out, k.shape())
    }

    fn vheat_heat_decay_backward(
        k: FloatTensor<Self>,
        freq: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let fits =
            decay_channels(&k, &freq).filter(|_| is_f32(&[&grad]) && grad.shape() == k.shape());
        let Some(c) = fits else {
            return heat_decay_backward_reference::<Self>(k, freq, grad);
        };
        let (kv, fv) = (values(&k), values(&freq));
        let mut grad = owned(grad);
        let rows = (CHUNK / c).max(1);
        grad.storage_mut::<f32>()
            .par_chunks_mut(rows * c)
            .zip(kv.par_chunks(rows * c))
            .zip(fv.par_chunks(rows))
            .for_each(|((g, k), freq)| decay_backward_rows(k, freq, c, g));
        grad
    }

    fn vheat_silu_gate(a: FloatTensor<Self>, z: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&a, &z]) || a.shape() != z.shape() {
            let silu = <Self as burn::backend::ops::FloatTensorOps<Self>>::float_mul(
                z.clone(),
                <Self as burn::backend::ops::ActivationOps<Self>>::sigmoid(z),
            );
            return <Self as burn::backend::ops::FloatTensorOps<Self>>::float_mul(a, silu);
        }
        let z_values = values(&z);
        if !reusable(&a) {
            // `a` is kept (saved for the backward pass): one pass into a fresh buffer.
            let av = values(&a);
            let out = filled(av.len(), |start, out| {
                let end = start + out.len();
                silu_gate_to_slice(&av[start..end], &z_values[start..end], out)
            });
            return tensor(out, a.shape());
        }
        let mut a = a;
        let out = a.storage_mut::<f32>();
        out.par_chunks_mut(CHUNK)
            .zip(z_values.par_chunks(CHUNK))
            .for_each(|(a, z)| silu_gate_slice(a, z));
        a
    }

    fn vheat_silu_gate_backward(
        a: FloatTensor<Self>,
        z: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !is_f32(&[&a, &z, &grad]) || a.shape() != z.shape() || a.shape() != grad.shape() {
            return silu_gate_backward_reference::<Self>(a, z, grad);
        }
        let shape = grad.shape();
        let (a, z, g) = (values(&a), values(&z), values(&grad));
        let n = g.len();
        assert!(a.len() == n && z.len() == n, "equal shapes, checked above");
        // Both gradients are written once, by the pass that computes them (no zeroing first).
        let (mut da, mut dz) = (Vec::<f32>::with_capacity(n), Vec::<f32>::with_capacity(n));
        da.spare_capacity_mut()[..n]
            .par_chunks_mut(CHUNK)
            .zip(dz.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .zip(a.par_chunks(CHUNK).zip(z.par_chunks(CHUNK)))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((da, dz), (a, z)), g)| silu_gate_backward_slice(a, z, g, da, dz));
        // SAFETY: the chunks of all five cover `..n` alike (equal lengths, asserted), and the
        // kernel writes every value of its `da` and `dz` chunks.
        unsafe {
            da.set_len(n);
            dz.set_len(n);
        }
        (tensor(da, shape.clone()), tensor(dz, shape))
    }

    fn vheat_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        if !is_f32(&[&x, &gamma, &beta]) {
            return <Self as burn::backend::ops::ModuleOps<Self>>::layer_norm(
                x,
                gamma,
                Some(beta),
                epsilon,
            );
        }
        let shape = x.shape();
        let y = layer_norm_forward(&values(&x), &values(&gamma), &values(&beta), epsilon as f32);
        tensor(y, shape)
    }

    fn vheat_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if !is_f32(&[&x, &gamma, &grad]) {
            return layer_norm_backward_reference::<Self>(x, gamma, grad, epsilon);
        }
        let shape = x.shape();
        let c = gamma.shape()[0];
        let (dx, dgamma, dbeta) =
            layer_norm_backward(&values(&x), &values(&gamma), &values(&grad), epsilon as f32);
        (tensor(dx, shape), tensor(dgamma, [c]), tensor(dbeta, [c]))
    }

    fn vheat_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out_in: bool,
    ) -> FloatTensor<Self> {
        if !is_f32(&[&x, &weight, &bias]) {
            return linear_reference::<Self>(x, weight, bias, out_in);
        }
        let (m, k) = rows_and_inner(&x);
        let (n, packed) = packed_weight(&weight, k, out_in);
        let out = gemm(&values(&x), m, &packed, Some(&values(&bias)));
        let mut dims = x.shape().to_vec();
        *dims.last_mut().expect("rank ≥ 1") = n;
        tensor(out, dims)
    }

    fn vheat_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        out_in: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if !is_f32(&[&x, &weight, &grad]) {
            return linear_backward_reference::<Self>(x, weight, grad, out_in);
        }
        let (m, k) = rows_and_inner(&x);
        let n = weight.shape()[if out_in { 0 } else { 1 }];
        // dx = g · Wᵀ, with Wᵀ (n × k) packed from the weight as it is stored.
        let wt = if out_in {
            packed(&weight, Orientation::AsIs, || {
                PackedB::from_row_major(&values(&weight), n, k)
            })
        } else {
            packed(&weight, Orientation::Transposed, || {
                PackedB::from_transposed(&values(&weight), n, k)
            })
        };
        let dx = gemm(&values(&grad), m, &wt, None);
        let dx = tensor(dx, x.shape());
        let (dw, db) = weight_grads(x, &grad, out_in);
        (dx, dw, db)
    }

    fn vheat_mix_along(x: FloatTensor<Self>, matrix: FloatTensor<Self>) -> FloatTensor<Self> {
        let (xs, ms) = (x.shape(), matrix.shape());
        if !is_f32(&[&x, &matrix]) || xs.num_dims() != 3 || xs[1] != ms[1] || xs[1] > MIX_MAX_AXIS {
            return mix_along_reference::<Self>(x, matrix);
        }
        let [before, n, after] = [xs[0], xs[1], xs[2]];
        let m = ms[0];
        let y = mix_along(&values(&x), [before, n, after], &values(&matrix), m);
        tensor(y, [before, m, after])
    }

    fn vheat_dwconv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if !is_f32(&[&x, &weight, &bias]) {
            return dwconv3x3_reference::<Self>(x, weight, bias);
        }
        let dims = dims4(&x);
        let y = dwconv3x3_forward(&values(&x), &taps_of(&weight), &values(&bias), dims);
        tensor(y, dims)
    }

    fn vheat_dwconv3x3_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if !is_f32(&[&x, &weight, &grad]) {
            return dwconv3x3_backward_reference::<Self>(x, weight, grad);
        }
        let dims = dims4(&x);
        let c = dims[3];
        let (dx, dtaps, dbias) =
            dwconv3x3_backward(&values(&x), &taps_of(&weight), &values(&grad), dims);
        let mut dw = vec![0.0f32; 9 * c];
        for ch in 0..c {
            for t in 0..9 {
                dw[ch * 9 + t] = dtaps[t * c + ch];
            }
        }
        (
            tensor(dx, dims),
            tensor(dw, [c, 1, 3, 3]),
            tensor(dbias, [c]),
        )
    }

    fn vheat_adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamwStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = param.shape();
        let same = [&grad, &moment_1, &moment_2]
            .iter()
            .all(|t| t.shape() == shape);
        if !is_f32(&[&param, &grad, &moment_1, &moment_2]) || !same {
            return adamw_step_reference::<Self>(param, grad, moment_1, moment_2, step);
        }
        let g = values(&grad);
        let (mut p, mut m, mut v) = (owned(param), owned(moment_1), owned(moment_2));
        p.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.storage_mut::<f32>().par_chunks_mut(CHUNK))
            .zip(v.storage_mut::<f32>().par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| adamw_slice(p, g, m, v, &step));
        (p, m, v)
    }

    fn vheat_sum_of_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&x]) {
            return sum_of_squares_reference::<Self>(x);
        }
        tensor(vec![sum_of_squares(&values(&x)) as f32], [1])
    }

    fn vheat_scale(x: FloatTensor<Self>, coef: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&x, &coef]) || coef.shape().num_elements() != 1 {
            return scale_reference::<Self>(x, coef);
        }
        let c = values(&coef)[0];
        let mut x = owned(x);
        x.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .for_each(|chunk| chunk.iter_mut().for_each(|v| *v *= c));
        x
    }

    fn vheat_diffuse(
        x: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match diffusion_dims(&x, &decay, &dct_h, &dct_w) {
            Some(dims) => {
                let (y, _) = diffuse(
                    &values(&x),
                    dims,
                    &values(&decay),
                    &values(&dct_h),
                    &values(&dct_w),
                    false,
                );
                tensor(y, dims)
            }
            None => diffuse_reference::<Self>(x, decay, dct_h, dct_w).0,
        }
    }

    fn vheat_diffuse_keeping_spectrum(
        x: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match diffusion_dims(&x, &decay, &dct_h, &dct_w) {
            Some(dims) => {
                let (y, spectrum) = diffuse(
                    &values(&x),
                    dims,
                    &values(&decay),
                    &values(&dct_h),
                    &values(&dct_w),
                    true,
                );
                let spectrum = spectrum.expect("asked for the spectrum");
                (tensor(y, dims), tensor(spectrum, dims))
            }
            None => diffuse_reference::<Self>(x, decay, dct_h, dct_w),
        }
    }

    fn vheat_diffuse_backward(
        grad: FloatTensor<Self>,
        decay: FloatTensor<Self>,
        dct_h: FloatTensor<Self>,
        dct_w: FloatTensor<Self>,
        spectrum: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let dims = diffusion_dims(&grad, &decay, &dct_h, &dct_w)
            .filter(|_| is_f32(&[&spectrum]) && spectrum.shape() == grad.shape());
        match dims {
            Some(dims) => {
                let [_, h, w, c] = dims;
                let (dx, ddecay) = diffuse_backward(
                    &values(&grad),
                    dims,
                    &values(&decay),
                    &values(&dct_h),
                    &values(&dct_w),
                    &values(&spectrum),
                );
                (tensor(dx, dims), tensor(ddecay, [h, w, c]))
            }
            None => diffuse_backward_reference::<Self>(grad, decay, dct_h, dct_w, spectrum),
        }
    }

    fn vheat_residual(
        x: FloatTensor<Self>,
        branch: FloatTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let Some(bc) = residual_rows(&x, &branch, &scale) else {
            return residual_reference::<Self>(x, branch, scale);
        };
        let out = scaled_sum(&values(&x), &values(&branch), &values(&scale), bc);
        tensor(out, x.shape())
    }

    fn vheat_residual_backward(
        branch: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        want_dscale: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let fits = residual_rows(&grad, &branch, &scale);
        let Some(bc) = fits else {
            return residual_backward_reference::<Self>(branch, scale, grad, want_dscale);
        };
        let (gv, bv, sv) = (values(&grad), values(&branch), values(&scale));
        let (dbranch, dscale) = scaled_sum_backward(&gv, &bv, &sv, bc, want_dscale);
        let dscale = dscale.unwrap_or_else(|| vec![0.0; bc[0] * bc[1]]);
        (tensor(dbranch, grad.shape()), tensor(dscale, scale.shape()))
    }

    fn vheat_residual_sum(x: FloatTensor<Self>, branch: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&x, &branch]) || x.shape() != branch.shape() {
            return <Self as burn::backend::ops::FloatTensorOps<Self>>::float_add(x, branch);
        }
        let out = sum(&values(&x), &values(&branch));
        tensor(out, x.shape())
    }

    fn vheat_conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        let fits = conv3x3_fits(&x, &weight, stride)
            && is_f32(&[&bias])
            && bias.shape().to_vec() == [weight.shape()[0]];
        if !fits {
            return conv3x3_reference::<Self>(x, weight, bias, stride);
        }
        let ws = weight.shape();
        let (c_out, c_in) = (ws[0], ws[1]);
        let packed = packed(&weight, Orientation::Conv3x3, || {
            pack_weight(&values(&weight), c_out, c_in)
        });
        let (y, dims) = conv3x3(
            &values(&x),
            dims4(&x),
            &packed,
            Some(&values(&bias)),
            stride,
        );
        tensor(y, dims)
    }

    fn vheat_mlp(
        x: FloatTensor<Self>,
        fc1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        fc2: FloatTensor<Self>,
        b2: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (m, c) = rows_and_inner(&x);
        let (s1, s2) = (fc1.shape(), fc2.shape());
        let fits = is_f32(&[&x, &fc1, &b1, &fc2, &b2])
            && s1.num_dims() == 2
            && s2.num_dims() == 2
            && s1[1] == c
            && s2[1] == s1[0]
            && b1.shape().to_vec() == [s1[0]]
            && b2.shape().to_vec() == [s2[0]];
        if !fits || !worth_fusing(m, c, rayon::current_num_threads()) {
            let hidden = Self::vheat_gelu(Self::vheat_linear(x, fc1, b1, true));
            return Self::vheat_linear(hidden, fc2, b2, true);
        }
        let (hidden, w1) = packed_weight(&fc1, c, true);
        let (n, w2) = packed_weight(&fc2, hidden, true);
        let y = mlp(&values(&x), m, &w1, &values(&b1), &w2, &values(&b2));
        let mut dims = x.shape().to_vec();
        *dims.last_mut().expect("rank ≥ 1") = n;
        tensor(y, dims)
    }

    fn vheat_conv3x3_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (xs, ws, gs) = (x.shape(), weight.shape(), grad.shape());
        let fits = conv3x3_fits(&x, &weight, stride)
            && is_f32(&[&grad])
            && gs.to_vec()
                == [
                    xs[0],
                    super::conv::output_side(xs[1], stride),
                    super::conv::output_side(xs[2], stride),
                    ws[0],
                ];
        if !fits {
            return conv3x3_backward_reference::<Self>(x, weight, grad, stride);
        }
        let (c_out, c_in) = (ws[0], ws[1]);
        let dims = dims4(&x);
        let g = values(&grad);
        let packed = packed(&weight, Orientation::Conv3x3InputGrad, || {
            pack_weight_for_input_grad(&values(&weight), c_out, c_in)
        });
        let dx = conv3x3_input_grad(&g, dims, &packed, stride);
        // dW = gᵀ·patches ([C_out, (tap, C_in)], the long inner dimension every output pixel)
        // and db = Σ g; then each output channel's row is reordered to (C_in, tap), on the pool.
        let k = 9 * c_in;
        let m = gs.num_elements() / c_out.max(1);
        let patches = patch_matrix(&values(&x), dims, stride);
        let db = column_sums(&g, m, c_out);
        let dw_taps = transposed_product(&g, &patches, m, c_out, k);
        drop(patches);
        let mut dw = zeroed(c_out * k);
        dw.par_chunks_mut(k.max(1))
            .zip(dw_taps.par_chunks(k.max(1)))
            .for_each(|(row, taps)| {
                for t in 0..9 {
                    for ci in 0..c_in {
                        row[ci * 9 + t] = taps[t * c_in + ci];
                    }
                }
            });
        let db = tensor(db, [c_out]);
        (tensor(dx, dims), tensor(dw, [c_out, c_in, 3, 3]), db)
    }
}
