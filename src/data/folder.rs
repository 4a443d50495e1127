//! A user's image folder as a classification dataset: one sub-folder per class.
//!
//! ```text
//! DIR/cat/001.jpg  DIR/cat/002.png  …
//! DIR/dog/a.jpeg   …
//! ```
//!
//! or, already split, `DIR/train/<class>/…` and `DIR/val/<class>/…` (ImageNet's layout).
//! Classes are the sub-folder names in sorted order (as torchvision's `ImageFolder` does).
//! [`ImageFolder::open`] checks every image's header up front, so an unreadable file is
//! reported before training starts, not in the middle of an epoch.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::data::dataset::{Dataset, DatasetError};

use super::augment::{Augment, AugmentConfig};
use super::batch::ImageItem;
use super::io::{has_image_extension, image_dimensions, load_rgb};
use super::rng::SplitMix64;
use super::transform::{EvalTransform, TrainTransform};
use crate::error::{Error, Result};

/// One image file and its class index.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// Its class index (position of its folder in [`ImageFolder::classes`]).
    pub label: usize,
}

/// The images of a folder with one sub-folder per class.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageFolder {
    /// The folder that was opened.
    pub root: PathBuf,
    /// The class names (sub-folder names), sorted.
    pub classes: Vec<String>,
    /// Every image, class by class, each class's files sorted by name.
    pub samples: Vec<Sample>,
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// How many levels below a class folder the search for misplaced images goes (only to name
/// one in an error).
const NESTED_SEARCH_DEPTH: usize = 3;

/// The first (sorted) visible sub-folder of `dir`.
fn first_sub_folder(dir: &Path) -> Option<PathBuf> {
    sorted_entries(dir)
        .ok()?
        .into_iter()
        .find(|p| p.is_dir() && !is_hidden(p))
}

/// The first (depth-first, sorted) visible folder below `dir`, at most `depth` levels down,
/// that holds a PNG or JPEG file directly.
fn nested_image_folder(dir: &Path, depth: usize) -> Option<PathBuf> {
    if depth == 0 {
        return None;
    }
    let subs = sorted_entries(dir).ok()?;
    for sub in subs.into_iter().filter(|p| p.is_dir() && !is_hidden(p)) {
        let holds_images = sorted_entries(&sub).ok().is_some_and(|files| {
            files
                .iter()
                .any(|f| f.is_file() && !is_hidden(f) && has_image_extension(f))
        });
        if holds_images {
            return Some(sub);
        }
        if let Some(found) = nested_image_folder(&sub, depth - 1) {
            return Some(found);
        }
    }
    None
}

impl ImageFolder {
    /// Lists the classes and images of `root` and checks that every image's header decodes.
    ///
    /// Hidden entries (names starting with `.`) are skipped, and so are files that are not
    /// PNG or JPEG by their extension; files with such an extension must be readable images.
    ///
    /// # Errors
    /// - [`Error::EmptyImageFolder`] if `root` does not exist, is not a folder, or holds no
    ///   class sub-folder (saying when its images lie directly in it);
    /// - [`Error::FolderLayout`] if a class sub-folder's images lie only in nested folders
    ///   (naming one);
    /// - [`Error::EmptyClassFolder`] if a class sub-folder holds no PNG or JPEG image;
    /// - [`Error::ImageRead`] naming the first image that cannot be read.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::scan(root.as_ref(), true)
    }

    /// Lists the classes and images of `root` as [`open`](Self::open) does, without reading
    /// any image: for a caller that decodes them all next ([`decoded`](Self::decoded)).
    ///
    /// # Errors
    /// As [`open`](Self::open), except that images are not read.
    pub fn list(root: impl AsRef<Path>) -> Result<Self> {
        Self::scan(root.as_ref(), false)
    }

    /// Decodes every image once, in parallel (rayon), and keeps those that decode whole. With
    /// `skip`, the others are dropped and returned (each an [`Error::ImageRead`] naming the
    /// file); without, the first is the error, with the number of others in its reason.
    ///
    /// # Errors
    /// [`Error::ImageRead`] naming an image that does not decode (without `skip`).
    pub fn decoded(self, skip: bool) -> Result<(Self, Vec<Error>)> {
        self.decoded_with(skip, &|| {})
    }

    /// [`decoded`](Self::decoded), calling `tick` once per image read (from the decoding
    /// threads): what a progress bar counts.
    ///
    /// # Errors
    /// As [`decoded`](Self::decoded).
    pub fn decoded_with(
        mut self,
        skip: bool,
        tick: &(dyn Fn() + Sync),
    ) -> Result<(Self, Vec<Error>)> {
        use rayon::prelude::*;
        let failures: Vec<Option<Error>> = self
            .samples
            .par_iter()
            .map(|s| {
                let failure = load_rgb(&s.path).err();
                tick();
                failure
            })
            .collect();
        let mut bad = Vec::new();
        let mut kept = Vec::with_capacity(self.samples.len());
        for (sample, failure) in self.samples.drain(..).zip(failures) {
            match failure {
                None => kept.push(sample),
                Some(e) => bad.push(e),
            }
        }
        if !skip && !bad.is_empty() {
            let others = bad.len() - 1;
            let first = bad.swap_remove(0);
            return Err(match first {
                Error::ImageRead { path, reason } if others > 0 => Error::ImageRead {
                    path,
                    reason: format!(
                        "{reason} (and {others} other images do not decode; \
                         --skip-bad-images leaves them out)"
                    ),
                },
                e => e,
            });
        }
        self.samples = kept;
        Ok((self, bad))
    }

    fn scan(root: &Path, check_headers: bool) -> Result<Self> {
        let root = root.to_path_buf();
        let empty = |reason: String| Error::EmptyImageFolder {
            path: root.clone(),
            reason,
        };
        if !root.exists() {
            return Err(empty("it does not exist".into()));
        }
        if !root.is_dir() {
            return Err(empty("it is a file, not a folder".into()));
        }
        let entries = sorted_entries(&root).map_err(|e| empty(e.to_string()))?;
        let class_dirs: Vec<PathBuf> = entries
            .into_iter()
            .filter(|p| p.is_dir() && !is_hidden(p))
            .collect();
        if class_dirs.is_empty() {
            let images = sorted_entries(&root)
                .map_err(|e| empty(e.to_string()))?
                .into_iter()
                .filter(|p| p.is_file() && !is_hidden(p) && has_image_extension(p))
                .count();
            return Err(empty(if images > 0 {
                format!(
                    "it has no sub-folders: its {images} images lie directly in it, where the \
                     class folders should be (ROOT/CLASS/IMAGE)"
                )
            } else {
                "it has no sub-folders and no images".into()
            }));
        }
        let mut classes = Vec::with_capacity(class_dirs.len());
        let mut samples = Vec::new();
        for (label, dir) in class_dirs.iter().enumerate() {
            let class = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let files = sorted_entries(dir).map_err(|e| Error::ImageRead {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            let mut ignored = 0;
            let mut count = 0;
            for file in files {
                if is_hidden(&file) || !file.is_file() {
                    continue;
                }
                if !has_image_extension(&file) {
                    ignored += 1;
                    continue;
                }
                if check_headers {
                    image_dimensions(&file)?;
                }
                samples.push(Sample { path: file, label });
                count += 1;
            }
            if count == 0 {
                if let Some(nested) = nested_image_folder(dir, NESTED_SEARCH_DEPTH) {
                    return Err(Error::FolderLayout {
                        path: root.clone(),
                        reason: format!(
                            "class folder {} holds no image itself, but its sub-folder {} \
                             does: images in nested sub-folders are not read",
                            dir.display(),
                            nested.display()
                        ),
                    });
                }
                return Err(Error::EmptyClassFolder {
                    class,
                    path: dir.clone(),
                    ignored,
                });
            }
            classes.push(class);
        }
        Ok(Self {
            root,
            classes,
            samples,
        })
    }

    /// Opens a dataset for training and validation: `root/train` and `root/val` when both
    /// exist (their class lists must agree), otherwise `root` split class by class, keeping a
    /// fraction `val_fraction` of each class (at least one image of every class with two or
    /// more) for validation. The split is a shuffle seeded by `seed`.
    ///
    /// # Errors
    /// Those of [`open`](Self::open); [`Error::FolderLayout`] for a `root/train` holding class
    /// folders without `root/val` (or the reverse) and for train/val folders whose classes
    /// differ; [`Error::InvalidTrainingOption`] for a `val_fraction` outside `(0, 1)`.
    pub fn open_split(
        root: impl AsRef<Path>,
        val_fraction: f64,
        seed: u64,
    ) -> Result<(ImageFolder, ImageFolder)> {
        Self::split_by(root.as_ref(), val_fraction, seed, true)
    }

    /// [`open_split`](Self::open_split) with [`list`](Self::list): no image is read (for a
    /// caller that decodes them all next with [`decoded`](Self::decoded)).
    ///
    /// # Errors
    /// As [`open_split`](Self::open_split), except that images are not read.
    pub fn list_split(
        root: impl AsRef<Path>,
        val_fraction: f64,
        seed: u64,
    ) -> Result<(ImageFolder, ImageFolder)> {
        Self::split_by(root.as_ref(), val_fraction, seed, false)
    }

    fn split_by(
        root: &Path,
        val_fraction: f64,
        seed: u64,
        check_headers: bool,
    ) -> Result<(ImageFolder, ImageFolder)> {
        let (train_dir, val_dir) = (root.join("train"), root.join("val"));
        // One of the two split folders without the other, holding class folders: a layout
        // half-followed, not a class named `train` or `val`.
        for (present, missing) in [(&train_dir, &val_dir), (&val_dir, &train_dir)] {
            if present.is_dir() && !missing.is_dir() {
                if let Some(class) = first_sub_folder(present) {
                    return Err(Error::FolderLayout {
                        path: root.to_path_buf(),
                        reason: format!(
                            "it has {} (with class folders such as {}) but no {}; give both, \
                             or put the class folders directly in {}",
                            present.display(),
                            class.display(),
                            missing.display(),
                            root.display()
                        ),
                    });
                }
            }
        }
        if train_dir.is_dir() && val_dir.is_dir() {
            let train = Self::scan(&train_dir, check_headers)?;
            let val = Self::scan(&val_dir, check_headers)?;
            if train.classes != val.classes {
                return Err(Error::FolderLayout {
                    path: root.to_path_buf(),
                    reason: format!(
                        "{} and {} hold different classes: {:?} vs {:?}",
                        train_dir.display(),
                        val_dir.display(),
                        train.classes,
                        val.classes
                    ),
                });
            }
            return Ok((train, val));
        }
        Self::scan(root, check_headers)?.split(val_fraction, seed)
    }

    /// Splits the images class by class: a fraction `val_fraction` of each class (rounded,
    /// at least one when the class has two or more images) goes to the second folder.
    ///
    /// # Errors
    /// [`Error::InvalidTrainingOption`] for a `val_fraction` outside `(0, 1)`, named by the
    /// flag that sets it (`--val-fraction`).
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<(ImageFolder, ImageFolder)> {
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            return Err(Error::InvalidTrainingOption {
                option: "--val-fraction".into(),
                reason: format!("validation fraction {val_fraction} is outside (0, 1)"),
            });
        }
        let mut rng = SplitMix64::new(seed);
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for label in 0..self.classes.len() {
            let mut of_class: Vec<&Sample> =
                self.samples.iter().filter(|s| s.label == label).collect();
            rng.shuffle(&mut of_class);
            let n = of_class.len();
            let n_val = if n >= 2 {
                ((n as f64 * val_fraction).round() as usize).clamp(1, n - 1)
            } else {
                0
            };
            val.extend(of_class[..n_val].iter().map(|s| (*s).clone()));
            train.extend(of_class[n_val..].iter().map(|s| (*s).clone()));
        }
        let sort = |v: &mut Vec<Sample>| v.sort_by(|a, b| a.path.cmp(&b.path));
        sort(&mut train);
        sort(&mut val);
        let part = |samples| ImageFolder {
            root: self.root.clone(),
            classes: self.classes.clone(),
            samples,
        };
        Ok((part(train), part(val)))
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when there are no images (never for a folder made by [`open`](Self::open)).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The images as a training dataset: decoded on demand, augmented by `transform`.
    pub fn train_dataset(&self, transform: TrainTransform, seed: u64) -> FolderDataset {
        self.dataset(Stage::Fixed(Transform::Train(transform)), seed)
    }

    /// The images as a training dataset augmented by the policy `augment` (see
    /// [`AugmentConfig`]) to `size × size`: decoded on demand, a new random draw every read.
    ///
    /// # Errors
    /// [`Error::InvalidTrainingOption`] for an invalid `augment` (see
    /// [`AugmentConfig::validate`]), [`Error::InvalidConfig`] for `size == 0` (nothing is
    /// built).
    pub fn augmented_dataset(
        &self,
        augment: &AugmentConfig,
        size: u32,
        seed: u64,
    ) -> Result<FolderDataset> {
        let augment = Augment::new(augment.clone(), size)?;
        Ok(self.dataset(Stage::Augment(Arc::new(augment)), seed))
    }

    fn dataset(&self, stage: Stage, seed: u64) -> FolderDataset {
        FolderDataset {
            samples: self.samples.clone(),
            stage,
            seed,
            draws: Arc::new(AtomicU64::new(0)),
            skip_unreadable: false,
            skipped: Arc::new(AtomicUsize::new(0)),
            reported: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The images as an evaluation dataset: decoded on demand, resized and centre-cropped by
    /// `transform`.
    pub fn eval_dataset(&self, transform: EvalTransform) -> FolderDataset {
        self.dataset(Stage::Fixed(Transform::Eval(transform)), 0)
    }
}

/// How a [`FolderDataset`] turns a decoded image into the network's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Random resized crop and flip (a new draw every time an image is read).
    Train(TrainTransform),
    /// Deterministic resize and centre crop.
    Eval(EvalTransform),
}

/// The per-image processing of a [`FolderDataset`].
#[derive(Debug, Clone)]
enum Stage {
    /// One of the fixed transforms.
    Fixed(Transform),
    /// An augmentation policy.
    Augment(Arc<Augment>),
}

/// Image files decoded and transformed when read, for Burn's data loaders.
///
/// By default a file that fails to decode (e.g. truncated after [`ImageFolder::open`] checked
/// its header) gives a [`DatasetError`] wrapping [`Error::ImageRead`], which stops training
/// with that message. With [`skip_unreadable`](Self::skip_unreadable) such a file is reported
/// once on stderr, counted ([`skipped`](Self::skipped)) and replaced by the next readable image.
#[derive(Debug, Clone)]
pub struct FolderDataset {
    samples: Vec<Sample>,
    stage: Stage,
    seed: u64,
    /// How many images were read so far: mixed into the augmentation's random stream so that
    /// every epoch sees new crops.
    draws: Arc<AtomicU64>,
    /// Replace an unreadable image by the next readable one instead of failing.
    skip_unreadable: bool,
    /// How many reads met an unreadable image (shared by clones).
    skipped: Arc<AtomicUsize>,
    /// The unreadable files already reported on stderr.
    reported: Arc<Mutex<HashSet<PathBuf>>>,
}

impl FolderDataset {
    /// Reads, decodes and transforms image `index`.
    ///
    /// With [`skip_unreadable`](Self::skip_unreadable) on, an unreadable file is replaced by
    /// the next readable one (wrapping around); the error comes back only if none is readable.
    ///
    /// # Errors
    /// [`Error::ImageRead`] naming the file; [`Error::InvalidInput`] for an index past the end.
    pub fn load(&self, index: usize) -> Result<ImageItem> {
        let n = self.samples.len();
        if index >= n {
            return Err(Error::InvalidInput {
                what: "image folder index".into(),
                expected: format!("an index below {n}"),
                found: index.to_string(),
            });
        }
        let mut first_error = None;
        for step in 0..n {
            let at = (index + step) % n;
            match self.load_one(at) {
                Ok(item) => return Ok(item),
                Err(e @ Error::ImageRead { .. }) if self.skip_unreadable => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    let path = &self.samples[at].path;
                    let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
                    if reported.insert(path.clone()) {
                        eprintln!("warning: skipping unreadable image during training: {e}");
                    }
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_error.unwrap_or_else(|| Error::InvalidInput {
            what: "image folder".into(),
            expected: "at least one readable image".into(),
            found: "none".into(),
        }))
    }

    fn load_one(&self, index: usize) -> Result<ImageItem> {
        let sample = &self.samples[index];
        let img = load_rgb(&sample.path)?;
        let rng = || {
            let draw = self.draws.fetch_add(1, Ordering::Relaxed);
            SplitMix64::for_item(self.seed ^ draw.rotate_left(32), index as u64)
        };
        let (pixels, size) = match &self.stage {
            Stage::Fixed(Transform::Train(t)) => (t.apply(&img, &mut rng()), t.size as usize),
            Stage::Fixed(Transform::Eval(t)) => (t.apply(&img), t.size as usize),
            Stage::Augment(a) => (a.apply(&img, &mut rng()), a.size() as usize),
        };
        Ok(ImageItem {
            pixels,
            shape: [3, size, size],
            label: sample.label,
        })
    }

    /// Turns skipping of unreadable images on or off (default off: an unreadable image is an
    /// error). Clones made afterwards share the [`skipped`](Self::skipped) counter.
    pub fn skip_unreadable(mut self, skip: bool) -> Self {
        self.skip_unreadable = skip;
        self
    }

    /// How many reads met an unreadable image and skipped it (shared by all clones).
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The shared counter behind [`skipped`](Self::skipped), for a trainer to poll.
    pub fn skipped_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.skipped)
    }

    /// The augmentation of a dataset made by [`ImageFolder::augmented_dataset`].
    pub fn augment(&self) -> Option<&Augment> {
        match &self.stage {
            Stage::Augment(a) => Some(a),
            Stage::Fixed(_) => None,
        }
    }

    /// The samples, in order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

impl Dataset<ImageItem> for FolderDataset {
    fn get(&self, index: usize) -> std::result::Result<ImageItem, DatasetError> {
        self.load(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.samples.len()
    }
}
