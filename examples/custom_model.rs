//! Your own model from vHeat's layers: a patchify stem of your choice, `--depth` heat blocks of
//! width `--width` sharing one frequency-value embedding of `--fve`×`--fve` frequencies, and a
//! pooling head — trained for a few steps on the built-in synthetic data with burn-train.
//!
//! ```text
//! cargo run --release --example custom_model
//! cargo run --release --example custom_model -- --width 48 --depth 3 --fve 6 --size 48 --steps 40
//! ```
//!
//! Everything vHeat-specific comes from the crate: [`HeatBlockConfig`] (the heat-conduction
//! operator and an MLP in residual branches), [`FrequencyEmbeddingConfig`] (resized
//! bicubically when the map differs from the FVE), and the training pieces of [`vheat::train`]
//! (AdamW with the reference's decay groups, warm-up and cosine, label smoothing, the progress
//! printer). The stem, the head and the model struct are ordinary Burn code.

use std::process::ExitCode;

use burn::data::dataloader::DataLoaderBuilder;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{
    ClassificationOutput, ExecutionStrategy, InferenceStep, Learner, SupervisedTraining,
    TrainOutput, TrainStep,
};
use vheat::data::{ImageBatch, ImageBatcher, ShapesConfig, SyntheticShapes};
use vheat::hco::{FrequencyEmbedding, FrequencyEmbeddingConfig};
use vheat::train::{adamw_for, smoothed_cross_entropy, ProgressPrinter, WarmupCosineLr};
use vheat::{HeatBlock, HeatBlockConfig};

/// A single-resolution heat network: patchify → heat blocks → norm → mean pool → Linear.
#[derive(Module, Debug)]
struct TinyHeatNet {
    /// 3 → width, 4×4 kernel, stride 4: non-overlapping patches.
    stem: Conv2d,
    /// One FVE shared by all blocks, `[fve, fve, width]`.
    fve: FrequencyEmbedding,
    blocks: Vec<HeatBlock>,
    norm: LayerNorm,
    head: Linear,
}

impl TinyHeatNet {
    fn new(width: usize, depth: usize, fve: usize, classes: usize, device: &Device) -> Self {
        Self {
            stem: Conv2dConfig::new([3, width], [4, 4])
                .with_stride([4, 4])
                .init(device),
            fve: FrequencyEmbeddingConfig::new(fve, fve, width).init(device),
            blocks: (0..depth)
                .map(|_| {
                    HeatBlockConfig::new(width)
                        .with_drop_path(0.05)
                        .with_mlp_ratio(2.0)
                        .init(device)
                })
                .collect(),
            norm: LayerNormConfig::new(width).init(device),
            head: LinearConfig::new(width, classes).init(device),
        }
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        // Blocks run on channels-last maps [B, H, W, C].
        let x = self.stem.forward(images).permute([0, 2, 3, 1]);
        let [_, h, w, _] = x.dims();
        // The FVE is trained at `fve`×`fve`; any other map size gets a bicubic resize.
        let fve = self.fve.resized(h, w);
        let x = self
            .blocks
            .iter()
            .fold(x, |x, block| block.forward(x, Some(fve.clone())));
        let pooled: Tensor<4> = self.norm.forward(x).mean_dim(1).mean_dim(2);
        self.head.forward(pooled.flatten(1, 3))
    }

    fn output(&self, batch: ImageBatch, smoothing: f64) -> ClassificationOutput {
        let logits = self.forward(batch.images);
        let loss = smoothed_cross_entropy(logits.clone(), batch.targets.clone(), smoothing);
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for TinyHeatNet {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<ClassificationOutput> {
        let out = self.output(batch, 0.1);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for TinyHeatNet {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.output(batch, 0.0)
    }
}

/// Trains a small network built from the crate's heat-conduction layers.
#[derive(Debug, clap::Parser)]
struct CustomArgs {
    /// Channel width of the heat blocks.
    #[arg(long, value_name = "C", default_value_t = 32)]
    width: usize,
    /// Number of heat blocks.
    #[arg(long, value_name = "N", default_value_t = 2)]
    depth: usize,
    /// Side of the learnable frequency-value embedding.
    #[arg(long, value_name = "S", default_value_t = 8)]
    fve: usize,
    /// Input image side.
    #[arg(long, value_name = "S", default_value_t = 32)]
    size: usize,
    /// Optimizer steps.
    #[arg(long, value_name = "N", default_value_t = 200)]
    steps: usize,
    /// Backend: flex, ndarray, wgpu or cuda (as compiled in).
    #[arg(long, value_name = "NAME", default_value = "flex")]
    backend: String,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let CustomArgs {
        width,
        depth,
        fve,
        size,
        steps,
        backend,
    } = clap::Parser::parse();
    let device = vheat::device_from_name(&backend)?;
    vheat::probe_device(&device)?;
    let batch = 32;
    let classes = SyntheticShapes::num_classes();

    device.seed(3);
    let model = TinyHeatNet::new(width, depth, fve, classes, &device.clone().autodiff());
    println!(
        "TinyHeatNet: width {width}, {depth} heat blocks, FVE {fve}x{fve} (maps are {0}x{0}), \
         {1} parameters",
        size / 4,
        model.num_params()
    );
    let train = SyntheticShapes::new(ShapesConfig::new(size, steps * batch, 11))?;
    let valid = SyntheticShapes::new(ShapesConfig::new(size, 256, 12))?;
    let loader = |shuffle: bool| {
        let b = DataLoaderBuilder::new(ImageBatcher)
            .batch_size(batch)
            .set_device(device.clone());
        if shuffle {
            b.shuffle(0)
        } else {
            b
        }
    };
    let optim = adamw_for(&model, 0.05, false);
    let schedule = WarmupCosineLr::new(2e-3, 1e-4, 1e-5, steps / 5, steps);
    let learner = Learner::new(model, optim, schedule);
    let result = SupervisedTraining::new(
        "artifacts/custom_model",
        loader(true).build(train),
        loader(false).build(valid),
    )
    .metrics((LossMetric::new(), AccuracyMetric::new()))
    .with_training_strategy(ExecutionStrategy::single(device.clone().autodiff()).into())
    .renderer(Box::new(ProgressPrinter::new(
        std::time::Duration::from_secs(2),
    )))
    .num_epochs(1)
    .launch(learner);
    if let Some(e) = result.error {
        return Err(format!("training failed: {e}").into());
    }
    println!("trained {steps} steps; the model is an ordinary Burn module you can save or extend");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
