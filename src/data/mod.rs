//! `data` — images in, batches out: the built-in procedural dataset, a user's image folder,
//! the training and evaluation transforms, and image reading and writing.
//!
//! - [`SyntheticShapes`]: shapes, counts and stripes drawn on the fly (no download), the
//!   dataset of the crate's main example;
//! - [`ImageFolder`]: one sub-folder per class, split into training and validation, read as
//!   a [`FolderDataset`];
//! - [`EvalTransform`] (timm's and the reference's evaluation preprocessing, bit-exact with
//!   Pillow's bicubic resize) and [`TrainTransform`] (random resized crop and flip);
//! - [`AugmentPolicy`], [`AugmentConfig`] and [`Augment`]: the training augmentation as a
//!   policy the user picks (`none`, `light`, timm's `reference` recipe);
//! - [`ImageItem`], [`ImageBatch`] and [`ImageBatcher`] for Burn's data loaders;
//! - [`MixupConfig`] and [`MixupBatcher`]: timm's batch-level Mixup/CutMix with soft targets;
//! - [`load_rgb`], [`save_png`], [`heat_map`]: image files and pictures;
//! - [`imagenet_classes`]: the 1000 ImageNet-1k class names, for the reference checkpoints.
//!
//! Without default features only [`SplitMix64`], the ImageNet normalisation
//! ([`normalize_rgb`], [`IMAGENET_MEAN`], [`IMAGENET_STD`]) and [`imagenet_classes`] are here;
//! the `image` feature adds the image files and transforms, the `train` feature the datasets,
//! batchers and augmentation.
//!
//! ```
//! # #[cfg(feature = "train")] {
//! use burn::data::dataset::Dataset;
//! use vheat::data::{ShapesConfig, SyntheticShapes};
//!
//! let shapes = SyntheticShapes::new(ShapesConfig::new(32, 100, 7)).unwrap();
//! let item = shapes.get(3).unwrap();
//! assert_eq!(item.shape, [3, 32, 32]);
//! assert_eq!(SyntheticShapes::class_names()[item.label], "triangle");
//! # }
//! ```

// Always: the random source and the ImageNet normalisation on plain pixels.
mod normalize;
mod rng;
// With the `image` feature: image files, pictures and the preprocessing transforms.
#[cfg(feature = "image")]
mod io;
#[cfg(feature = "image")]
mod transform;
// With the `train` feature: the datasets, the batchers and the augmentation.
#[cfg(feature = "train")]
mod augment;
#[cfg(feature = "train")]
mod batch;
#[cfg(feature = "train")]
mod digits;
#[cfg(feature = "train")]
mod folder;
#[cfg(feature = "train")]
mod mix;
#[cfg(feature = "train")]
mod synthetic;

#[cfg(feature = "train")]
pub use augment::{
    rotate, warp_affine, Augment, AugmentConfig, AugmentPolicy, EraseMode, LightWarp, RandAugment,
    RandOp, RandomErasing, Resample, IMAGENET_FILL, MAX_MAGNITUDE, RAND_INCREASING_OPS,
};
#[cfg(feature = "train")]
pub use batch::{ImageBatch, ImageBatcher, ImageItem};
#[cfg(feature = "train")]
pub use digits::{Digits, DIGITS_VAL_EVERY};
#[cfg(feature = "train")]
pub use folder::{FolderDataset, ImageFolder, Sample, Transform};
#[cfg(feature = "image")]
pub use io::{
    has_image_extension, heat_colour, heat_map, hstack, image_dimensions, load_rgb, save_png,
    vstack, IMAGE_EXTENSIONS,
};
#[cfg(feature = "train")]
pub use mix::{cutmix_box, mixup_target, CutBox, MixDraw, MixupBatcher, MixupConfig};
pub use normalize::{normalize_rgb, IMAGENET_MEAN, IMAGENET_STD};
pub use rng::SplitMix64;
#[cfg(feature = "train")]
pub use synthetic::{ShapesConfig, SyntheticShapes, MAX_SYNTHETIC_IMAGES, SHAPE_CLASSES};
#[cfg(feature = "image")]
pub use transform::{
    normalize_rgb8, resize_bicubic_pil, short_side_size, EvalTransform, TrainTransform,
};

/// The 1000 ImageNet-1k class names in the order of the reference's classifier outputs (the
/// standard class-index order), e.g. `imagenet_classes()[281] == "tabby"`.
///
/// The list is the widely used one from `pytorch/hub`'s `imagenet_classes.txt` (one name per
/// line; WordNet synonyms shortened to the first).
pub fn imagenet_classes() -> Vec<&'static str> {
    include_str!("imagenet_classes.txt").lines().collect()
}
