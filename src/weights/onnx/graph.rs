//! The inference form of a [`VHeat`] as an ONNX graph: stem, heat blocks, downsamplings, and
//! the head (or the four stage maps of the backbone variant).
//!
//! Maps run channels-last (`[N, H, W, C]`) between the operators that normalise or mix channels
//! (LayerNorm, the linear layers, the MLP), as the crate's own forward pass does, and are
//! transposed to NCHW around every convolution and the spectral diffusion. Every operator is
//! standard ONNX (opset 17): no reshape depends on the batch, so its dimension stays symbolic.

use burn::prelude::*;

use super::builder::{attr_int, attr_ints, GraphBuilder, TO_NCHW, TO_NHWC};
use crate::error::{Error, Result};
use crate::hco::HeatConduction;
use crate::heat::dct_basis_host;
use crate::vheat::{Downsample, Head, HeatBlock, Mlp, VHeat, OUTPUT_NORM_EPS, STEM_NORM_EPS};

/// The `[n, n]` orthonormal DCT-II matrix (`transpose`: its inverse) as a shared constant.
fn dct_constant(b: &mut GraphBuilder, n: usize, transpose: bool) -> String {
    let host = dct_basis_host(n);
    let values: Vec<f32> = (0..n * n)
        .map(|i| {
            let (r, c) = (i / n, i % n);
            let v = if transpose { host[c * n + r] } else { host[i] };
            v as f32
        })
        .collect();
    let name = if transpose {
        format!("const.idct{n}")
    } else {
        format!("const.dct{n}")
    };
    b.constant(&name, &[n, n], &values)
}

/// The heat-conduction operator on an NHWC map (inference form: precomputed decay).
///
/// ```text
/// d = DepthwiseConv3x3(x)                                  (NCHW, group = C)
/// u = Conv1x1_x(d),  z = Conv1x1_z(d)                     (the two halves of `linear`)
/// u = D_Hᵀ · ((D_H · u · D_Wᵀ) ⊙ decay) · D_W             (MatMuls on the last two axes)
/// y = Linear_out( LayerNorm(u) ⊙ z · Sigmoid(z) )          (NHWC)
/// ```
fn heat_conduction(
    b: &mut GraphBuilder,
    path: &str,
    x: &str,
    op: &HeatConduction,
) -> Result<String> {
    let c = op.dim();
    let decay = op.k_exp.as_ref().ok_or_else(|| {
        Error::Form(format!(
            "{path} is not in the inference form (no precomputed decay)"
        ))
    })?;
    let [h, w, _] = decay.dims();
    let nchw = b.transpose(&format!("{path}.in_nchw"), x, TO_NCHW);
    let dw = b.conv(
        &format!("{path}.dwconv"),
        &nchw,
        op.dwconv.weight.val(),
        op.dwconv.bias.as_ref().map(|t| t.val()),
        [1, 1],
        [1, 1, 1, 1],
        [1, 1],
        c,
    )?;
    // `linear` is [C, 2C] (in, out): its first C outputs are the field, the next C the gate,
    // each a 1×1 convolution with weight [out, in, 1, 1].
    let weight = op.linear.weight.val();
    let bias = op.linear.bias.as_ref().map(|t| t.val());
    let mut halves = Vec::with_capacity(2);
    for (i, name) in ["x", "z"].into_iter().enumerate() {
        let w_half = weight
            .clone()
            .narrow(1, i * c, c)
            .transpose()
            .reshape([c, c, 1, 1]);
        let b_half = bias.clone().map(|t| t.narrow(0, i * c, c));
        halves.push(b.conv(
            &format!("{path}.linear.{name}"),
            &dw,
            w_half,
            b_half,
            [1, 1],
            [0; 4],
            [1, 1],
            1,
        )?);
    }
    let (u, z) = (&halves[0], &halves[1]);

    let dct_h = dct_constant(b, h, false);
    let idct_h = dct_constant(b, h, true);
    let dct_w_t = dct_constant(b, w, true);
    let dct_w = dct_constant(b, w, false);
    // The decay is stored [H, W, C]; the NCHW map needs it as [C, H, W].
    let decay_chw = b.param(&format!("{path}.decay"), decay.val().permute([2, 0, 1]))?;
    let s = b.op(&format!("{path}.dct_h"), "MatMul", &[&dct_h, u], vec![]);
    let s = b.op(&format!("{path}.dct_hw"), "MatMul", &[&s, &dct_w_t], vec![]);
    let s = b.op(&format!("{path}.decayed"), "Mul", &[&s, &decay_chw], vec![]);
    let s = b.op(&format!("{path}.idct_h"), "MatMul", &[&idct_h, &s], vec![]);
    let s = b.op(&format!("{path}.idct_hw"), "MatMul", &[&s, &dct_w], vec![]);

    let s = b.transpose(&format!("{path}.diffused"), &s, TO_NHWC);
    let s = b.layer_norm(
        &format!("{path}.out_norm"),
        &s,
        &op.out_norm,
        op.out_norm_epsilon(),
    )?;
    let z = b.transpose(&format!("{path}.gate"), z, TO_NHWC);
    let sig = b.op(&format!("{path}.gate_sigmoid"), "Sigmoid", &[&z], vec![]);
    let silu = b.op(&format!("{path}.gate_silu"), "Mul", &[&z, &sig], vec![]);
    let gated = b.op(&format!("{path}.gated"), "Mul", &[&s, &silu], vec![]);
    let out = &op.out_linear;
    b.linear(
        &format!("{path}.out_linear"),
        &gated,
        out.weight.val(),
        out.bias.as_ref().map(|t| t.val()),
    )
}

/// The block's MLP on an NHWC map: `fc2(GELU(fc1(x)))` as two MatMuls.
fn mlp(b: &mut GraphBuilder, path: &str, x: &str, mlp: &Mlp) -> Result<String> {
    let pointwise = |p: &crate::vheat::PointwiseConv| {
        let [o, i, _, _] = p.weight.dims();
        // PyTorch's [out, in, 1, 1] as the [in, out] of a MatMul on channels-last maps.
        p.weight.val().reshape([o, i]).transpose()
    };
    let h = b.linear(
        &format!("{path}.fc1"),
        x,
        pointwise(&mlp.fc1),
        Some(mlp.fc1.bias.val()),
    )?;
    let h = b.gelu(&format!("{path}.act"), &h);
    b.linear(
        &format!("{path}.fc2"),
        &h,
        pointwise(&mlp.fc2),
        Some(mlp.fc2.bias.val()),
    )
}

/// `x + γ ⊙ branch` (`γ` broadcast over the channels, the last axis), or `x + branch`.
fn residual(
    b: &mut GraphBuilder,
    path: &str,
    x: &str,
    branch: &str,
    gamma: Option<Tensor<1>>,
) -> Result<String> {
    let branch = match gamma {
        Some(g) => {
            let g = b.param(&format!("{path}.gamma"), g)?;
            b.op(&format!("{path}.scaled"), "Mul", &[branch, &g], vec![])
        }
        None => branch.to_string(),
    };
    Ok(b.op(path, "Add", &[x, &branch], vec![]))
}

/// One heat block on an NHWC map, pre-norm or post-norm, with its layer scales. Drop path is
/// the identity at inference.
fn heat_block(b: &mut GraphBuilder, path: &str, x: &str, block: &HeatBlock) -> Result<String> {
    let op_path = format!("{path}.op");
    let heat = if block.post_norm {
        let y = heat_conduction(b, &op_path, x, &block.op)?;
        b.layer_norm(
            &format!("{path}.norm1"),
            &y,
            &block.norm1,
            HeatBlock::NORM_EPS,
        )?
    } else {
        let y = b.layer_norm(
            &format!("{path}.norm1"),
            x,
            &block.norm1,
            HeatBlock::NORM_EPS,
        )?;
        heat_conduction(b, &op_path, &y, &block.op)?
    };
    let gamma1 = block.gamma1.as_ref().map(|g| g.val());
    let x = residual(b, &format!("{path}.residual1"), x, &heat, gamma1)?;
    let (Some(m), Some(norm2)) = (&block.mlp, &block.norm2) else {
        return Ok(x);
    };
    let mlp_path = format!("{path}.mlp");
    let y = if block.post_norm {
        let y = mlp(b, &mlp_path, &x, m)?;
        b.layer_norm(&format!("{path}.norm2"), &y, norm2, HeatBlock::NORM_EPS)?
    } else {
        let y = b.layer_norm(&format!("{path}.norm2"), &x, norm2, HeatBlock::NORM_EPS)?;
        mlp(b, &mlp_path, &y, m)?
    };
    let gamma2 = block.gamma2.as_ref().map(|g| g.val());
    residual(b, &format!("{path}.residual2"), &x, &y, gamma2)
}

/// What the graph ends in.
pub(crate) enum Outputs {
    /// The head's logits (pooled features when headless), output `logits`.
    Logits,
    /// Every stage's map (NCHW, through the stage's output norm where the model has one),
    /// outputs `stage0`, `stage1`, …
    StageMaps,
}

/// Adds the whole network, from the graph input `images` (NCHW), to `b`; returns the names of
/// the graph's outputs in order.
pub(crate) fn vheat_graph(
    b: &mut GraphBuilder,
    model: &VHeat,
    images: &str,
    outputs: Outputs,
) -> Result<Vec<String>> {
    let stem = &model.patch_embed;
    let x = b.conv2d("patch_embed.conv1", images, &stem.conv1)?;
    let x = b.transpose("patch_embed.conv1.nhwc", &x, TO_NHWC);
    let x = b.layer_norm("patch_embed.norm1", &x, &stem.norm1, STEM_NORM_EPS)?;
    let x = b.gelu("patch_embed.act", &x);
    let x = b.transpose("patch_embed.conv2.nchw", &x, TO_NCHW);
    let x = b.conv2d("patch_embed.conv2", &x, &stem.conv2)?;
    let x = b.transpose("patch_embed.conv2.nhwc", &x, TO_NHWC);
    let mut x = b.layer_norm("patch_embed.norm2", &x, &stem.norm2, STEM_NORM_EPS)?;

    let mut maps = Vec::new();
    for (i, stage) in model.layers.iter().enumerate() {
        for (j, block) in stage.blocks.iter().enumerate() {
            x = heat_block(b, &format!("layers.{i}.blocks.{j}"), &x, block)?;
        }
        if let Outputs::StageMaps = outputs {
            let y = match model.output_norm(i) {
                Some(norm) => b.layer_norm(&format!("out_norms.{i}"), &x, norm, OUTPUT_NORM_EPS)?,
                None => x.clone(),
            };
            let name = format!("stage{i}");
            b.op_into(&name, "Transpose", &[&y], vec![attr_ints("perm", &TO_NCHW)]);
            maps.push(name);
        }
        if let Some(ds) = &stage.downsample {
            let path = format!("layers.{i}.downsample");
            let y = b.transpose(&format!("{path}.nchw"), &x, TO_NCHW);
            let y = b.conv2d(&format!("{path}.conv"), &y, &ds.conv)?;
            let y = b.transpose(&format!("{path}.nhwc"), &y, TO_NHWC);
            x = b.layer_norm(&format!("{path}.norm"), &y, &ds.norm, Downsample::NORM_EPS)?;
        }
    }
    if let Outputs::StageMaps = outputs {
        return Ok(maps);
    }

    let head = &model.classifier;
    let x = b.layer_norm("classifier.norm", &x, &head.norm, Head::NORM_EPS)?;
    let pooled_name = if head.fc.is_some() {
        "classifier.pool"
    } else {
        "logits"
    };
    let mean_attrs = vec![attr_ints("axes", &[1, 2]), attr_int("keepdims", 0)];
    if head.fc.is_none() {
        b.op_into(pooled_name, "ReduceMean", &[&x], mean_attrs);
        return Ok(vec![pooled_name.to_string()]);
    }
    let pooled = b.op(pooled_name, "ReduceMean", &[&x], mean_attrs);
    let fc = head.fc.as_ref().expect("checked above");
    let w = b.param("classifier.fc.weight", fc.weight.val())?;
    let y = b.op("classifier.fc.matmul", "MatMul", &[&pooled, &w], vec![]);
    match &fc.bias {
        Some(bias) => {
            let bias = b.param("classifier.fc.bias", bias.val())?;
            b.op_into("logits", "Add", &[&y, &bias], vec![]);
        }
        None => b.op_into("logits", "Identity", &[&y], vec![]),
    }
    Ok(vec!["logits".to_string()])
}
