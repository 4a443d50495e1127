//! `pretrained` — the reference's published checkpoints by name ([`Weights`]), and (with the
//! `pretrained` Cargo feature, on by default) their download into a local cache ([`Cache`],
//! [`VHeat::pretrained`](crate::VHeat::pretrained)).
//!
//! The registry is the table of releases in the README of
//! <https://github.com/MzeroMiko/vHeat>: three ImageNet-1k classifiers (release tag
//! `vheatcls`), five Mask R-CNN backbones trained on COCO (`vheatdet`) and two UperNet backbones
//! trained on ADE20K (`vheatseg`). Each entry knows its URL, its [`VHeatConfig`], what the
//! reference reports for it and how to preprocess images for it.
//!
//! ```
//! use vheat::pretrained::Weights;
//!
//! let w: Weights = "tiny".parse().unwrap();
//! assert_eq!(w, Weights::TinyIn1k);
//! assert_eq!(w.file_name(), "vHeat_tiny.pth");
//! assert!("huge".parse::<Weights>().is_err());
//! ```

#[cfg(feature = "pretrained")]
mod bounds;
#[cfg(feature = "pretrained")]
mod download;
#[cfg(feature = "pretrained")]
mod mirror;

#[cfg(feature = "pretrained")]
pub use bounds::{
    download_limit, free_space, DOWNLOAD_SIZE_FACTOR, DOWNLOAD_SLACK, FREE_SPACE_MARGIN,
};
#[cfg(feature = "pretrained")]
pub use download::Cache;
#[cfg(feature = "pretrained")]
pub use mirror::{
    cache_dir_from, mirror_from, offline_from, parse_mirror, CACHE_ENV, MIRROR_ENV, OFFLINE_ENV,
};

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::prelude::*;

#[cfg(feature = "image")]
use crate::data::EvalTransform;
use crate::data::{IMAGENET_MEAN, IMAGENET_STD};
use crate::error::{Error, Result};
use crate::vheat::{VHeat, VHeatConfig};

/// Where the reference's releases are: `{RELEASE_BASE_URL}/{release}/{file_name}`.
pub const RELEASE_BASE_URL: &str = "https://github.com/MzeroMiko/vHeat/releases/download";

/// The task a checkpoint was trained for, which decides how it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// ImageNet-1k classification: the whole model with its 1000-class head, under `"model"`.
    Classification,
    /// COCO detection / instance segmentation (Mask R-CNN, mmdet): only the backbone is
    /// loaded, with its per-stage output norms.
    Detection,
    /// ADE20K semantic segmentation (UperNet, mmseg): only the backbone is loaded, with its
    /// per-stage output norms.
    Segmentation,
}

/// One number the reference's README reports for a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Reported {
    /// What was measured (`"top-1 %"`, `"box AP"`, `"mask AP"`, `"mIoU (SS)"`).
    pub metric: &'static str,
    /// The reported value.
    pub value: f64,
}

/// Evaluation preprocessing of a classifier, in the manner of timm's pretrained configs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// The network's input side in pixels.
    pub input_size: u32,
    /// Fraction of the resized image the centre crop keeps (resize to `input_size / crop_pct`).
    pub crop_pct: f64,
    /// Resampling filter of the resize.
    pub interpolation: &'static str,
    /// Per-channel mean subtracted after scaling to `[0, 1]` (RGB).
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by (RGB).
    pub std: [f32; 3],
}

impl Preprocess {
    /// The reference's ImageNet evaluation: 224², crop 0.875 (resize the shorter side to 256),
    /// bicubic, ImageNet mean and std (`classification/config.py`: `DATA.INTERPOLATION =
    /// 'bicubic'`, `TEST.CROP = True`).
    pub const IMAGENET_224: Preprocess = Preprocess {
        input_size: 224,
        crop_pct: 0.875,
        interpolation: "bicubic",
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };

    /// The crate's transform for this preprocessing (its normalisation is ImageNet's, which is
    /// what every published classifier uses). With the `image` feature.
    #[cfg(feature = "image")]
    pub fn eval_transform(&self) -> EvalTransform {
        EvalTransform::with_crop_pct(self.input_size, self.crop_pct)
    }
}

/// A checkpoint published by the reference (MzeroMiko/vHeat), by name.
///
/// Names for [`FromStr`]: the canonical [`name`](Self::name) (`vheat_tiny`, `vheat_small_det`,
/// `vheat_tiny_det_ms3x`, `vheat_base_seg`, …), the same without `vheat_` or with `-` for `_`,
/// and `t`/`s`/`b` for the classifiers. Case is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weights {
    /// vHeat-T on ImageNet-1k, 224²: 82.2 % top-1 (`vheatcls/vHeat_tiny.pth`).
    TinyIn1k,
    /// vHeat-S on ImageNet-1k, 224²: 83.6 % top-1 (`vheatcls/vHeat_small.pth`).
    SmallIn1k,
    /// vHeat-B on ImageNet-1k, 224²: 83.9 % top-1 (`vheatcls/vHeat_base.pth`).
    BaseIn1k,
    /// vHeat-T backbone of Mask R-CNN 1x on COCO: 45.1 box AP, 41.2 mask AP
    /// (`vheatdet/vHeat_tiny_det.pth`; trained with `img_size=512`).
    TinyCocoMaskRcnn1x,
    /// vHeat-S backbone of Mask R-CNN 1x on COCO: 46.8 box AP, 42.3 mask AP
    /// (`vheatdet/vHeat_small_det.pth`; `img_size=512`).
    SmallCocoMaskRcnn1x,
    /// vHeat-B backbone of Mask R-CNN 1x on COCO: 47.7 box AP, 43.0 mask AP
    /// (`vheatdet/vHeat_base_det.pth`; `img_size=512`).
    BaseCocoMaskRcnn1x,
    /// vHeat-T backbone of Mask R-CNN 3x (multi-scale) on COCO: 47.3 box AP, 42.5 mask AP
    /// (`vheatdet/vHeat_tiny_det_ms3x.pth`; its config sets no `img_size`, so 224).
    TinyCocoMaskRcnn3x,
    /// vHeat-S backbone of Mask R-CNN 3x (multi-scale) on COCO: 48.8 box AP, 43.7 mask AP
    /// (`vheatdet/vHeat_small_det_ms3x.pth`; `img_size=512`).
    SmallCocoMaskRcnn3x,
    /// vHeat-T backbone of UperNet 160k on ADE20K, 512²: 47.0 mIoU single-scale
    /// (`vheatseg/vHeat_tiny_seg.pth`).
    ///
    /// The reference README lists no vHeat-S segmentation checkpoint (its link is `#`), so
    /// there is no `SmallAde20kUperNet`.
    TinyAde20kUperNet,
    /// vHeat-B backbone of UperNet 160k on ADE20K, 512²: 49.6 mIoU single-scale
    /// (`vheatseg/vHeat_base_seg.pth`).
    BaseAde20kUperNet,
}

/// `(variant, canonical name, release tag, file name)`, in [`Weights::all`] order.
const TABLE: [(Weights, &str, &str, &str); 10] = [
    (
        Weights::TinyIn1k,
        "vheat_tiny",
        "vheatcls",
        "vHeat_tiny.pth",
    ),
    (
        Weights::SmallIn1k,
        "vheat_small",
        "vheatcls",
        "vHeat_small.pth",
    ),
    (
        Weights::BaseIn1k,
        "vheat_base",
        "vheatcls",
        "vHeat_base.pth",
    ),
    (
        Weights::TinyCocoMaskRcnn1x,
        "vheat_tiny_det",
        "vheatdet",
        "vHeat_tiny_det.pth",
    ),
    (
        Weights::SmallCocoMaskRcnn1x,
        "vheat_small_det",
        "vheatdet",
        "vHeat_small_det.pth",
    ),
    (
        Weights::BaseCocoMaskRcnn1x,
        "vheat_base_det",
        "vheatdet",
        "vHeat_base_det.pth",
    ),
    (
        Weights::TinyCocoMaskRcnn3x,
        "vheat_tiny_det_ms3x",
        "vheatdet",
        "vHeat_tiny_det_ms3x.pth",
    ),
    (
        Weights::SmallCocoMaskRcnn3x,
        "vheat_small_det_ms3x",
        "vheatdet",
        "vHeat_small_det_ms3x.pth",
    ),
    (
        Weights::TinyAde20kUperNet,
        "vheat_tiny_seg",
        "vheatseg",
        "vHeat_tiny_seg.pth",
    ),
    (
        Weights::BaseAde20kUperNet,
        "vheat_base_seg",
        "vheatseg",
        "vHeat_base_seg.pth",
    ),
];

impl Weights {
    fn row(self) -> &'static (Weights, &'static str, &'static str, &'static str) {
        TABLE
            .iter()
            .find(|row| row.0 == self)
            .expect("every variant has a row")
    }

    /// Every published checkpoint: the classifiers, then detection, then segmentation.
    pub fn all() -> [Weights; 10] {
        TABLE.map(|row| row.0)
    }

    /// The canonical name (`vheat_tiny`, `vheat_base_det`, …), which [`FromStr`] accepts.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The release tag the file is published under (`vheatcls`, `vheatdet`, `vheatseg`).
    pub fn release(self) -> &'static str {
        self.row().2
    }

    /// The published file name (`vHeat_tiny.pth`); also its name in the cache.
    pub fn file_name(self) -> &'static str {
        self.row().3
    }

    /// The download URL under `base_url` (normally [`RELEASE_BASE_URL`]):
    /// `{base_url}/{release}/{file_name}`.
    pub fn url_at(self, base_url: &str) -> String {
        format!(
            "{}/{}/{}",
            base_url.trim_end_matches('/'),
            self.release(),
            self.file_name()
        )
    }

    /// The download URL on GitHub.
    pub fn url(self) -> String {
        self.url_at(RELEASE_BASE_URL)
    }

    /// What the checkpoint was trained for.
    pub fn task(self) -> Task {
        match self.release() {
            "vheatcls" => Task::Classification,
            "vheatdet" => Task::Detection,
            _ => Task::Segmentation,
        }
    }

    /// The configuration the checkpoint loads into.
    ///
    /// Classifiers: [`VHeatConfig::tiny`]/[`small`](VHeatConfig::small)/[`base`](VHeatConfig::base)
    /// (1000 classes, 224²). Dense backbones: the same widths and depths without a head
    /// (`num_classes = 0`) and the `img_size` of the reference's mmdet/mmseg config (512, or 224
    /// for `vheat_tiny_det_ms3x`, whose config sets none), which sizes the frequency embeddings
    /// stored in the checkpoint.
    pub fn config(self) -> VHeatConfig {
        use Weights::*;
        match self {
            TinyIn1k => VHeatConfig::tiny(),
            SmallIn1k => VHeatConfig::small(),
            BaseIn1k => VHeatConfig::base(),
            TinyCocoMaskRcnn1x | TinyAde20kUperNet => {
                VHeatConfig::tiny().with_num_classes(0).with_img_size(512)
            }
            TinyCocoMaskRcnn3x => VHeatConfig::tiny().with_num_classes(0),
            SmallCocoMaskRcnn1x | SmallCocoMaskRcnn3x => {
                VHeatConfig::small().with_num_classes(0).with_img_size(512)
            }
            BaseCocoMaskRcnn1x | BaseAde20kUperNet => {
                VHeatConfig::base().with_num_classes(0).with_img_size(512)
            }
        }
    }

    /// What the reference's README reports for this checkpoint.
    pub fn reported(self) -> &'static [Reported] {
        use Weights::*;
        const TOP1: &str = "ImageNet-1k top-1 %";
        const BOX: &str = "COCO box AP";
        const MASK: &str = "COCO mask AP";
        const MIOU: &str = "ADE20K mIoU (single-scale)";
        match self {
            TinyIn1k => &[Reported {
                metric: TOP1,
                value: 82.2,
            }],
            SmallIn1k => &[Reported {
                metric: TOP1,
                value: 83.6,
            }],
            BaseIn1k => &[Reported {
                metric: TOP1,
                value: 83.9,
            }],
            TinyCocoMaskRcnn1x => &[
                Reported {
                    metric: BOX,
                    value: 45.1,
                },
                Reported {
                    metric: MASK,
                    value: 41.2,
                },
            ],
            SmallCocoMaskRcnn1x => &[
                Reported {
                    metric: BOX,
                    value: 46.8,
                },
                Reported {
                    metric: MASK,
                    value: 42.3,
                },
            ],
            BaseCocoMaskRcnn1x => &[
                Reported {
                    metric: BOX,
                    value: 47.7,
                },
                Reported {
                    metric: MASK,
                    value: 43.0,
                },
            ],
            TinyCocoMaskRcnn3x => &[
                Reported {
                    metric: BOX,
                    value: 47.3,
                },
                Reported {
                    metric: MASK,
                    value: 42.5,
                },
            ],
            SmallCocoMaskRcnn3x => &[
                Reported {
                    metric: BOX,
                    value: 48.8,
                },
                Reported {
                    metric: MASK,
                    value: 43.7,
                },
            ],
            TinyAde20kUperNet => &[Reported {
                metric: MIOU,
                value: 47.0,
            }],
            BaseAde20kUperNet => &[Reported {
                metric: MIOU,
                value: 49.6,
            }],
        }
    }

    /// The evaluation preprocessing of a classifier ([`Preprocess::IMAGENET_224`]); `None` for
    /// the dense backbones, whose mmdet/mmseg pipelines (multi-scale resizes, sliding windows)
    /// are not a single crop.
    pub fn preprocess(self) -> Option<Preprocess> {
        (self.task() == Task::Classification).then_some(Preprocess::IMAGENET_224)
    }

    /// The top-level key of the `.pth` that holds the weights: `"model"` for the classifiers
    /// (the reference's `save_checkpoint` writes `{"model": …}`, plus `"model_ema"` when EMA
    /// was on; the reported accuracy is that of `"model"`), `"state_dict"` for the dense
    /// backbones (mmengine's checkpoint layout, with the backbone under `backbone.`; not
    /// verified against the published files, which this crate's tests do not download — the
    /// loader also tries the other keys).
    pub fn state_dict_key(self) -> &'static str {
        match self.task() {
            Task::Classification => "model",
            _ => "state_dict",
        }
    }

    /// Loads the checkpoint at `path` (this entry's file, e.g. from the cache) onto `device`:
    /// strictly with [`VHeat::load_pytorch`] for a classifier, as a backbone with
    /// [`VHeat::load_backbone`] for the dense checkpoints.
    pub fn load_file(self, path: impl AsRef<Path>, device: &Device) -> Result<VHeat> {
        load_file(self.task(), path.as_ref(), &self.config(), device)
    }

    fn accepted_names(self) -> Vec<String> {
        let name = self.name();
        let short = &name["vheat_".len()..];
        let mut names = vec![
            name.to_string(),
            short.to_string(),
            name.replace('_', "-"),
            short.replace('_', "-"),
        ];
        if self.task() == Task::Classification {
            names.push(short[..1].to_string());
        }
        names.sort();
        names.dedup();
        names
    }
}

/// Loads a checkpoint file of `task` into a model of `config`.
pub(crate) fn load_file(
    task: Task,
    path: &Path,
    config: &VHeatConfig,
    device: &Device,
) -> Result<VHeat> {
    match task {
        Task::Classification => VHeat::load_pytorch(path, config, device),
        Task::Detection | Task::Segmentation => {
            VHeat::load_backbone(path, config, device).map(|(model, _)| model)
        }
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Weights {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Weights::all()
            .into_iter()
            .find(|w| w.accepted_names().contains(&wanted))
            .ok_or_else(|| Error::UnknownWeights {
                name: s.to_string(),
                known: Weights::all().map(Weights::name).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for w in Weights::all() {
            assert_eq!(w.name().parse::<Weights>().unwrap(), w);
            for n in w.accepted_names() {
                assert!(seen.insert(n.clone()), "{n} names two checkpoints");
            }
        }
    }

    #[test]
    fn urls_follow_the_reference_readme() {
        // Copied from the README of MzeroMiko/vHeat.
        assert_eq!(
            Weights::TinyIn1k.url(),
            "https://github.com/MzeroMiko/vHeat/releases/download/vheatcls/vHeat_tiny.pth"
        );
        assert_eq!(
            Weights::SmallCocoMaskRcnn3x.url(),
            "https://github.com/MzeroMiko/vHeat/releases/download/vheatdet/vHeat_small_det_ms3x.pth"
        );
        assert_eq!(
            Weights::BaseAde20kUperNet.url_at("http://127.0.0.1:1/"),
            "http://127.0.0.1:1/vheatseg/vHeat_base_seg.pth"
        );
    }
}
