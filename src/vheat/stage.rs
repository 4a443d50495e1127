//! [`Stage`]: heat blocks sharing one frequency-value embedding, then an optional downsampling.

use burn::prelude::*;

use super::block::HeatBlock;
use super::downsample::Downsample;
use crate::hco::FrequencyEmbedding;

/// One stage: `depth` heat blocks at one resolution, the stage's frequency-value embedding, and
/// the downsampling to the next stage (absent after the last stage).
#[derive(Module, Debug)]
#[non_exhaustive]
pub struct Stage {
    /// The heat blocks, in order.
    pub blocks: Vec<HeatBlock>,
    /// The stage's FVE (the reference's `freq_embed.{i}`); absent in the inference form.
    pub freq_embed: Option<FrequencyEmbedding>,
    /// `conv3×3 s2 + LayerNorm` to the next stage; absent after the last stage.
    pub downsample: Option<Downsample>,
}

impl Stage {
    /// Channels of this stage.
    pub fn dim(&self) -> usize {
        self.blocks
            .first()
            .map(|b| b.op.dim())
            .or_else(|| self.freq_embed.as_ref().map(|f| f.dims()[2]))
            .unwrap_or(0)
    }

    /// The FVE at an `h × w` map: the stored one, or its bicubic resize when the size differs.
    pub fn fve_at(&self, h: usize, w: usize) -> Option<Tensor<3>> {
        self.freq_embed.as_ref().map(|f| f.resized(h, w))
    }

    /// Runs the blocks on a channels-last map `[B, H, W, C]`.
    pub fn forward_blocks(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, h, w, _] = x.dims();
        let fve = self.fve_at(h, w);
        self.blocks
            .iter()
            .fold(x, |x, block| block.forward(x, fve.clone()))
    }

    /// NCHW in → (the stage's output before downsampling, the next stage's input), both NCHW.
    /// Without a downsampling both are the same map.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let y = self
            .forward_blocks(x.permute([0, 2, 3, 1]))
            .permute([0, 3, 1, 2]);
        match &self.downsample {
            Some(ds) => {
                let next = ds.forward(y.clone());
                (y, next)
            }
            None => (y.clone(), y),
        }
    }
}
