//! Exporting the inference form of a [`VHeat`] as an ONNX model ([`VHeat::save_onnx`]), for
//! ONNX Runtime, TensorRT, OpenVINO, tract and the other runtimes that read ONNX.
//!
//! The file holds the network at one input size, as [`VHeat::to_inference`] computes it:
//! each block's decay `exp(-(ωₙ²+ωₘ²)·k)` with `k = ReLU(to_k(FVE))` is a constant, the DCT and
//! its inverse are constant matrices applied by `MatMul`, GELU is the exact
//! `0.5·x·(1 + Erf(x/√2))`, the norms are `LayerNormalization`, the depthwise convolution is a
//! `Conv` with `group = C`. Opset 17, IR version 8 (what ONNX Runtime, TensorRT ≥ 8.6 and tract
//! read); input `images` `[N, C, H, W]` with a symbolic batch `N`; output `logits` `[N, classes]`,
//! or with [`OnnxOptions::features`] the stage maps `stage0` … `stage3` (NCHW, through the
//! output norms of a dense-prediction backbone).
//!
//! The protobuf messages are declared in [`proto`] with `prost` (see there why).

mod builder;
mod graph;
pub mod proto;

use std::path::Path;

use prost::Message;

use self::builder::GraphBuilder;
use self::graph::{vheat_graph, Outputs};
use self::proto::{
    data_type, Dimension, DimensionValue, GraphProto, ModelProto, OperatorSetIdProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use crate::error::{Error, Result};
use crate::vheat::VHeat;

/// The ONNX operator set the graph uses: the first with `LayerNormalization`.
pub const ONNX_OPSET: i64 = 17;
/// The ONNX IR version written: the one that goes with opset 17.
pub const ONNX_IR_VERSION: i64 = 8;
/// Name of the graph's input.
pub const ONNX_INPUT: &str = "images";
/// Name of the classifier graph's output.
pub const ONNX_OUTPUT: &str = "logits";

/// A protobuf message may not reach 2 GiB; a larger model would need ONNX's external data.
const PROTOBUF_LIMIT: usize = (1 << 31) - 1;

/// What [`VHeat::save_onnx`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Input height in pixels (the inference form is computed for this size).
    pub height: usize,
    /// Input width in pixels.
    pub width: usize,
    /// The backbone variant: the stage maps as outputs instead of the logits.
    pub features: bool,
    /// Training-mode export, the counterpart of `torch.onnx.export(training=TRAINING)` (drop
    /// path active, the trainable `k`): not supported, and an error when set; the export is
    /// always the inference form.
    pub training: bool,
}

impl OnnxOptions {
    /// The classifier at `height × width`.
    pub fn new(height: usize, width: usize) -> Self {
        Self {
            height,
            width,
            features: false,
            training: false,
        }
    }

    /// The classifier at `size × size`.
    pub fn square(size: usize) -> Self {
        Self::new(size, size)
    }

    /// The backbone variant (stage maps as outputs) when `features` is true.
    pub fn with_features(mut self, features: bool) -> Self {
        self.features = features;
        self
    }

    /// Asks for a training-mode export (refused by [`VHeat::save_onnx`]).
    pub fn with_training(mut self, training: bool) -> Self {
        self.training = training;
        self
    }
}

/// A tensor value description with a symbolic batch and fixed other axes.
fn value_info(name: &str, rest: &[usize]) -> ValueInfoProto {
    let mut dim = vec![Dimension {
        value: Some(DimensionValue::DimParam("N".into())),
    }];
    dim.extend(rest.iter().map(|&d| Dimension {
        value: Some(DimensionValue::DimValue(d as i64)),
    }));
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

impl VHeat {
    /// The ONNX model of the inference form at `options`' size, as encoded protobuf bytes (what
    /// [`save_onnx`](Self::save_onnx) writes).
    ///
    /// A trainable model is converted with [`to_inference`](Self::to_inference); a model
    /// already in the inference form is exported as it is, at its own size.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for [`OnnxOptions::training`]; [`Error::InputTooSmall`] for a
    /// size below [`min_input_size`](Self::min_input_size); [`Error::InferenceSizeMismatch`]
    /// for an inference-form model asked for another size; [`Error::Unsupported`] for a model
    /// above protobuf's 2 GiB.
    pub fn to_onnx_bytes(&self, options: &OnnxOptions) -> Result<Vec<u8>> {
        if options.training {
            return Err(Error::Unsupported(
                "ONNX export in training mode: the export is the inference form (precomputed \
                 decay, drop path off); train with this crate and export the result"
                    .into(),
            ));
        }
        let (h, w) = (options.height, options.width);
        let model = if self.is_inference() {
            self.check_input(&[1, self.in_chans(), h, w])?;
            self.clone()
        } else {
            self.to_inference(h, w)?
        };
        let mut b = GraphBuilder::default();
        b.reserve(ONNX_INPUT);
        let (outputs, infos) = if options.features {
            let names = vheat_graph(&mut b, &model, ONNX_INPUT, Outputs::StageMaps)?;
            let infos = names
                .iter()
                .zip(model.dims())
                .zip(model.stage_sizes(h, w))
                .map(|((name, c), [sh, sw])| value_info(name, &[c, sh, sw]))
                .collect();
            (names, infos)
        } else {
            let names = vheat_graph(&mut b, &model, ONNX_INPUT, Outputs::Logits)?;
            let width = model.classifier.num_outputs();
            (names.clone(), vec![value_info(&names[0], &[width])])
        };
        debug_assert_eq!(outputs.len(), infos.len());
        let proto = ModelProto {
            ir_version: ONNX_IR_VERSION,
            producer_name: "vheat".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: format!(
                "vHeat inference form at {h}x{w} ({})",
                if options.features {
                    "stage maps"
                } else {
                    "classifier"
                }
            ),
            graph: Some(GraphProto {
                node: b.nodes,
                name: "vheat".into(),
                initializer: b.initializers,
                input: vec![value_info(ONNX_INPUT, &[model.in_chans(), h, w])],
                output: infos,
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: ONNX_OPSET,
            }],
        };
        let len = proto.encoded_len();
        if len > PROTOBUF_LIMIT {
            return Err(Error::Unsupported(format!(
                "ONNX export at {h}x{w}: the model would take {len} bytes, above protobuf's \
                 2 GiB limit (external data is not written)"
            )));
        }
        Ok(proto.encode_to_vec())
    }

    /// Saves the inference form at `options`' size as an ONNX model (opset 17, IR version 8)
    /// at `path`; an existing file is replaced. See the [module docs](crate::weights::onnx).
    ///
    /// The file is written beside `path` under a temporary name and renamed onto `path` once
    /// complete, so a failed save never leaves a file under `path`.
    ///
    /// # Errors
    /// Those of [`to_onnx_bytes`](Self::to_onnx_bytes) (nothing is written then), and
    /// [`Error::CheckpointWrite`] naming `path` when the file cannot be written.
    pub fn save_onnx(&self, path: impl AsRef<Path>, options: &OnnxOptions) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_onnx_bytes(options)?;
        super::export::write_atomically(path, &bytes)
    }
}
