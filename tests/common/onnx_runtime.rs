//! Running an exported ONNX file in tract (a second, pure-Rust runtime) and keeping an input
//! and the crate's logits beside a file for `scripts/check_onnx.py` (ONNX Runtime).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use tract_onnx::prelude::{
    tvec, Framework, InferenceModelExt, IntoRunnable, TValue, Tensor as TractTensor,
    TypedSimplePlan,
};

/// The ONNX file at `path`, loaded, optimised and ready to run (its batch stays symbolic).
pub fn tract_plan(path: &Path) -> Arc<TypedSimplePlan> {
    tract_onnx::onnx()
        .model_for_path(path)
        .unwrap_or_else(|e| panic!("tract cannot load {}: {e:?}", path.display()))
        .into_optimized()
        .unwrap_or_else(|e| panic!("tract cannot optimise {}: {e:?}", path.display()))
        .into_runnable()
        .unwrap()
}

/// Runs `plan` on `x`; returns every output's shape and values.
pub fn run_plan(plan: &Arc<TypedSimplePlan>, x: &Tensor<4>) -> Vec<(Vec<usize>, Vec<f32>)> {
    let values: Vec<f32> = x.clone().into_data().convert::<f32>().try_to_vec().unwrap();
    let input = TractTensor::from_shape(&x.dims(), &values).unwrap();
    let outputs = plan.run(tvec!(TValue::from(input))).unwrap();
    outputs
        .iter()
        .map(|o| {
            let view = o.to_plain_array_view::<f32>().unwrap();
            (view.shape().to_vec(), view.iter().copied().collect())
        })
        .collect()
}

/// Loads the ONNX file at `path` in tract and runs it once on `x`.
pub fn run_tract(path: &Path, x: &Tensor<4>) -> Vec<(Vec<usize>, Vec<f32>)> {
    run_plan(&tract_plan(path), x)
}

/// Writes `input` and `logits` as a float32 safetensors file at `path`, the format
/// `scripts/check_onnx.py` reads beside each `NAME.onnx` (`NAME.io.safetensors`).
pub fn write_io(path: &Path, input: Tensor<4>, logits: Tensor<2>) {
    let le = |v: Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let host = |d: TensorData| le(d.convert::<f32>().try_to_vec::<f32>().unwrap());
    let owned = [
        ("input", input.dims().to_vec(), host(input.into_data())),
        ("logits", logits.dims().to_vec(), host(logits.into_data())),
    ];
    let views: Vec<(&str, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (*name, view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}
