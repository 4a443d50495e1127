//! A small builder of an ONNX graph: named constants, nodes with fresh output names, and the
//! operator patterns the inference form repeats (a LayerNorm over channels, exact GELU, a
//! convolution, a linear layer), each written once here.

use std::collections::HashSet;

use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, PaddingConfig2d};
use burn::prelude::*;

use super::proto::{data_type, AttributeProto, AttributeType, NodeProto, TensorProto};
use crate::error::{Error, Result};

/// The permutation from NCHW to channels-last NHWC.
pub(crate) const TO_NHWC: [i64; 4] = [0, 2, 3, 1];
/// The permutation from NHWC back to NCHW.
pub(crate) const TO_NCHW: [i64; 4] = [0, 3, 1, 2];

/// An integer attribute.
pub(crate) fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: AttributeType::Int as i32,
        ..Default::default()
    }
}

/// A float attribute.
pub(crate) fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f,
        r#type: AttributeType::Float as i32,
        ..Default::default()
    }
}

/// A list-of-integers attribute.
pub(crate) fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        r#type: AttributeType::Ints as i32,
        ..Default::default()
    }
}

/// The values of a parameter as `f32`, whatever the model's precision (a bf16 or f16 value is
/// exactly representable in `f32`).
pub(crate) fn host_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Unsupported(format!("reading a parameter for ONNX export: {e:?}")))
}

/// Nodes and constants of a graph under construction, with unique value names.
#[derive(Default)]
pub(crate) struct GraphBuilder {
    /// The nodes in the order they were added (a topological order: every input exists first).
    pub nodes: Vec<NodeProto>,
    /// The constant tensors.
    pub initializers: Vec<TensorProto>,
    /// Every value name used so far (inputs, constants, node outputs).
    names: HashSet<String>,
}

impl GraphBuilder {
    /// Marks `name` (a graph input) as taken.
    pub fn reserve(&mut self, name: &str) {
        self.names.insert(name.to_string());
    }

    /// `hint` if unused, otherwise `hint_2`, `hint_3`, …
    fn fresh(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut k = 2;
        while self.names.contains(&name) {
            name = format!("{hint}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// A float32 constant of shape `dims` (row-major `values`) named `name`; a constant already
    /// added under that name is reused (the DCT bases and scalars are shared by every block).
    pub fn constant(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        if self.names.contains(name) {
            return name.to_string();
        }
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        self.names.insert(name.to_string());
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    /// A float32 scalar constant.
    pub fn scalar(&mut self, name: &str, value: f32) -> String {
        self.constant(name, &[], &[value])
    }

    /// A parameter tensor as a constant named `name`, with its own shape.
    pub fn param<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Result<String> {
        let dims = t.dims();
        let values = host_values(t)?;
        Ok(self.constant(name, &dims, &values))
    }

    /// A node `op(inputs)` with one output, named after `hint` (made unique); returns the
    /// output's name.
    pub fn op(
        &mut self,
        hint: &str,
        op: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(hint);
        self.op_into(&out, op, inputs, attribute);
        out
    }

    /// A node `op(inputs)` whose output is exactly `out` (a graph output's name).
    pub fn op_into(
        &mut self,
        out: &str,
        op: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) {
        self.names.insert(out.to_string());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name: format!("{op}:{out}"),
            op_type: op.into(),
            attribute,
        });
    }

    /// `Transpose(x, perm)`.
    pub fn transpose(&mut self, hint: &str, x: &str, perm: [i64; 4]) -> String {
        self.op(hint, "Transpose", &[x], vec![attr_ints("perm", &perm)])
    }

    /// `LayerNormalization` over the last axis (channels of an NHWC map) with the norm's
    /// weight and bias, and the epsilon the model built the norm with (Burn's `LayerNorm`
    /// keeps its own private).
    pub fn layer_norm(
        &mut self,
        path: &str,
        x: &str,
        norm: &LayerNorm,
        epsilon: f64,
    ) -> Result<String> {
        let gamma = self.param(&format!("{path}.weight"), norm.gamma.val())?;
        let beta = match &norm.beta {
            Some(b) => self.param(&format!("{path}.bias"), b.val())?,
            None => {
                let c = norm.gamma.dims()[0];
                self.constant(&format!("{path}.bias"), &[c], &vec![0.0; c])
            }
        };
        Ok(self.op(
            path,
            "LayerNormalization",
            &[x, &gamma, &beta],
            vec![attr_int("axis", -1), attr_float("epsilon", epsilon as f32)],
        ))
    }

    /// Exact GELU, `0.5 · x · (1 + Erf(x / √2))`, as the crate computes it (not the tanh form).
    pub fn gelu(&mut self, path: &str, x: &str) -> String {
        let sqrt2 = self.scalar("const.sqrt2", std::f32::consts::SQRT_2);
        let one = self.scalar("const.one", 1.0);
        let half = self.scalar("const.half", 0.5);
        let scaled = self.op(&format!("{path}.scaled"), "Div", &[x, &sqrt2], vec![]);
        let erf = self.op(&format!("{path}.erf"), "Erf", &[&scaled], vec![]);
        let plus = self.op(&format!("{path}.erf1"), "Add", &[&erf, &one], vec![]);
        let times = self.op(&format!("{path}.xerf1"), "Mul", &[x, &plus], vec![]);
        self.op(path, "Mul", &[&times, &half], vec![])
    }

    /// `x · W + b` on the last axis, `W` given as `[in, out]` (Burn's `Linear` layout).
    pub fn linear(
        &mut self,
        path: &str,
        x: &str,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    ) -> Result<String> {
        let w = self.param(&format!("{path}.weight"), weight)?;
        let y = self.op(&format!("{path}.matmul"), "MatMul", &[x, &w], vec![]);
        match bias {
            Some(b) => {
                let b = self.param(&format!("{path}.bias"), b)?;
                Ok(self.op(path, "Add", &[&y, &b], vec![]))
            }
            None => Ok(y),
        }
    }

    /// `Conv` of an NCHW map with `weight` (`[out, in/groups, kh, kw]`) and optional `bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        path: &str,
        x: &str,
        weight: Tensor<4>,
        bias: Option<Tensor<1>>,
        stride: [usize; 2],
        pads: [usize; 4],
        dilation: [usize; 2],
        groups: usize,
    ) -> Result<String> {
        let [_, _, kh, kw] = weight.dims();
        let w = self.param(&format!("{path}.weight"), weight)?;
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = bias {
            inputs.push(self.param(&format!("{path}.bias"), b)?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let ints = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<_>>();
        Ok(self.op(
            path,
            "Conv",
            &inputs,
            vec![
                attr_ints("kernel_shape", &[kh as i64, kw as i64]),
                attr_ints("strides", &ints(&stride)),
                attr_ints("pads", &ints(&pads)),
                attr_ints("dilations", &ints(&dilation)),
                attr_int("group", groups as i64),
            ],
        ))
    }

    /// A Burn `Conv2d` (the stem's and the downsamplings') on an NCHW map, with its own stride,
    /// padding, dilation and groups.
    pub fn conv2d(&mut self, path: &str, x: &str, conv: &Conv2d) -> Result<String> {
        // ONNX's `pads` are [top, left, bottom, right], Burn's `Explicit` the same order.
        let pads = match conv.padding {
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
            PaddingConfig2d::Same => {
                return Err(Error::Unsupported(format!(
                    "ONNX export of convolution {path} with `Same` padding (vHeat's use explicit padding)"
                )))
            }
        };
        self.conv(
            path,
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            conv.stride,
            pads,
            conv.dilation,
            conv.groups,
        )
    }
}
