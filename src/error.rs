//! The crate's error type: every user mistake the public API can detect becomes one of these.

use std::path::PathBuf;

/// Everything that can go wrong when a user hands `vheat` a config, a checkpoint, a device name
/// or a tensor through a validating entry point.
///
/// Each variant names the problem precisely enough to fix it without reading the source: the
/// file, the key, the expected and the found shape.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration is internally inconsistent (e.g. `depths` and `dims` of different length).
    #[error("invalid vHeat configuration: {0}")]
    InvalidConfig(String),

    /// A training option (a `vheat train` flag, or a field of
    /// [`TrainingConfig`](crate::train::TrainingConfig), its augmentation or its Mixup) is out
    /// of range or contradicts another. `option` is the flag a user types (`--batch` for
    /// `batch_size`, `--accum` for `grad_accumulation`), or the field's name where no flag
    /// sets it.
    #[error("invalid training option {option}: {reason}")]
    InvalidTrainingOption {
        /// The flag (`--batch`), or the field (`label_smoothing`) where no flag sets it.
        option: String,
        /// What is wrong with its value.
        reason: String,
    },

    /// A training or validation set holds no image, and why.
    #[error("the {split} set is empty: {reason}")]
    EmptyDataset {
        /// `training` or `validation`.
        split: String,
        /// Why it is empty, and what would fill it.
        reason: String,
    },

    /// An image folder is not laid out as `ROOT/CLASS/IMAGE` (or `ROOT/train/CLASS/IMAGE`
    /// beside `ROOT/val/CLASS/IMAGE`): its images lie in nested sub-folders, or it has a
    /// `train/` folder without `val/` (or the reverse).
    #[error(
        "image folder {path} is not laid out as ROOT/CLASS/IMAGE (or ROOT/train/CLASS/IMAGE \
         beside ROOT/val/CLASS/IMAGE): {reason}"
    )]
    FolderLayout {
        /// The folder that was opened.
        path: PathBuf,
        /// What was found instead, naming a folder where it was found.
        reason: String,
    },

    /// A configuration file could not be read or parsed.
    #[error("cannot read vHeat configuration from {path}: {reason}")]
    ConfigFile {
        /// The file that was read.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A tensor handed to a validating entry point has the wrong rank or shape.
    #[error("invalid input for {what}: expected {expected}, found {found}")]
    InvalidInput {
        /// Which entry point or argument.
        what: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },

    /// The input image is smaller than the network can sensibly process.
    #[error(
        "input {height}x{width} is too small: vHeat reduces resolution by {stride} \
         (stem x4, then x2 per downsampling), so each side must be at least {stride} pixels"
    )]
    InputTooSmall {
        /// Input height.
        height: usize,
        /// Input width.
        width: usize,
        /// The network's total stride, which is the smallest side it accepts.
        stride: usize,
    },

    /// A model in the inference form was asked to run at a size its precomputed decay does not fit.
    #[error(
        "stage {stage} was precomputed for a {expected:?} map but the input gives {found:?}; \
         call `to_inference` again with the new input size, or use the trainable form"
    )]
    InferenceSizeMismatch {
        /// The stage whose decay does not fit.
        stage: usize,
        /// `[H, W]` the decay was precomputed for.
        expected: [usize; 2],
        /// `[H, W]` of the feature map that arrived.
        found: [usize; 2],
    },

    /// A model already in the requested form, or without the parts needed to change form.
    #[error("cannot change model form: {0}")]
    Form(String),

    /// A stage selection (`forward_intermediates` indices, output-norm stages) that the model
    /// cannot satisfy: an index out of range, a count of stages it does not have, an empty list,
    /// or a stage without the output norm that was required.
    #[error("invalid stage selection {requested} for a model with {stages} stages: {reason}")]
    StageSelection {
        /// The selection as it was asked for.
        requested: String,
        /// Number of stages of the model.
        stages: usize,
        /// What does not fit.
        reason: String,
    },

    /// A checkpoint file could not be opened or decoded.
    #[error("cannot read checkpoint {path}: {reason}")]
    CheckpointRead {
        /// The checkpoint file.
        path: PathBuf,
        /// The reader's message.
        reason: String,
    },

    /// A checkpoint does not fit the model: missing keys, unused keys or shape mismatches.
    ///
    /// The message lists every offending key; `report` has them in structured form. When the
    /// checkpoint's keys all carry a prefix the model lacks ([`LoadReport::foreign_prefix`]),
    /// the message is one line naming the function or option that loads such a file, and the
    /// key lists are only in `report`.
    ///
    /// [`LoadReport::foreign_prefix`]: crate::load_report::LoadReport::foreign_prefix
    #[error("{}", mismatch_message(.path, .report))]
    CheckpointMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// Everything that did not fit.
        report: Box<crate::load_report::LoadReport>,
    },

    /// A checkpoint holds NaN or infinite values; the load was refused and the model left
    /// unchanged.
    #[error(
        "checkpoint {path} holds non-finite values (NaN or infinity) in {} tensor(s): {}",
        keys.len(),
        keys.join(", ")
    )]
    NonFiniteWeights {
        /// The checkpoint file.
        path: PathBuf,
        /// Every parameter (model naming) with at least one NaN or infinity.
        keys: Vec<String>,
    },

    /// A backend name that this crate does not know.
    #[error("unknown backend {name:?}: expected one of {known}")]
    UnknownBackend {
        /// The name that was asked for.
        name: String,
        /// The names this crate knows.
        known: String,
    },

    /// A backend this crate knows but that this build does not include.
    #[error(
        "backend {name:?} is not compiled into this build: enable the `{feature}` Cargo feature \
         of vheat (compiled here: {compiled})"
    )]
    BackendNotCompiled {
        /// The name that was asked for.
        name: String,
        /// The Cargo feature that provides it.
        feature: String,
        /// The backends this build has.
        compiled: String,
    },

    /// A backend that is compiled in but could not start on this machine (no adapter, no driver).
    #[error("backend {name:?} is compiled in but cannot run here: {reason}")]
    BackendUnavailable {
        /// The name that was asked for.
        name: String,
        /// What the backend reported.
        reason: String,
    },

    /// A checkpoint could not be written.
    #[error("cannot write checkpoint {path}: {reason}")]
    CheckpointWrite {
        /// The destination file.
        path: PathBuf,
        /// The writer's message.
        reason: String,
    },

    /// A checkpoint path whose format (by extension) this crate cannot read or write.
    #[error("unsupported checkpoint format for {path}: {reason}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// Which extension, and what is supported.
        reason: String,
    },

    /// An image folder holds no class sub-folders (or does not exist, or is not a folder).
    #[error(
        "image folder {path} holds no class folders: expected one sub-folder per class, each \
         holding PNG or JPEG images ({reason})"
    )]
    EmptyImageFolder {
        /// The folder that was opened.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// A class sub-folder of an image folder holds no PNG or JPEG image.
    #[error(
        "class folder {path} (class {class:?}) holds no PNG or JPEG images \
         ({ignored} other files ignored)"
    )]
    EmptyClassFolder {
        /// The class name (the sub-folder's name).
        class: String,
        /// The class sub-folder.
        path: PathBuf,
        /// How many files were there that are not PNG or JPEG images.
        ignored: usize,
    },

    /// An image file could not be opened or decoded.
    #[error("cannot read image {path}: {reason}")]
    ImageRead {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },

    /// An image file (e.g. a picture an example draws) could not be written.
    #[error("cannot write image {path}: {reason}")]
    ImageWrite {
        /// The destination file.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },

    /// Training stopped on an error (a data-loading failure, a device failure).
    #[error("training failed: {0}")]
    Training(String),

    /// A name that is not one of the published checkpoints
    /// ([`pretrained::Weights`](crate::pretrained::Weights)).
    #[error("unknown pretrained weights {name:?}: expected one of {known}")]
    UnknownWeights {
        /// The name that was asked for.
        name: String,
        /// Every accepted name.
        known: String,
    },

    /// Offline mode (`VHEAT_OFFLINE=1` or `Cache::with_offline`) and the file is not in the cache.
    #[error(
        "offline mode: {path} is not in the cache and the network may not be used to fetch it \
         from {url} (unset VHEAT_OFFLINE, or put the file there)"
    )]
    NotCached {
        /// Where the cached file would be.
        path: PathBuf,
        /// Where it would be downloaded from.
        url: String,
    },

    /// A download failed before or during the transfer: no network, connection refused, a
    /// broken connection, a timeout. A partial file stays as `NAME.part` for a later resume.
    #[error("cannot download {url}: {reason}")]
    Download {
        /// The URL that was requested.
        url: String,
        /// What the HTTP client reported.
        reason: String,
    },

    /// The server answered a download with an HTTP error status.
    #[error("cannot download {url}: the server answered HTTP {status}")]
    HttpStatus {
        /// The URL that was requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },

    /// A download ended with another size than the server announced.
    #[error("download of {url} has {found} bytes, but the server announced {expected}")]
    SizeMismatch {
        /// The URL that was requested.
        url: String,
        /// The announced size in bytes.
        expected: u64,
        /// The size received.
        found: u64,
    },

    /// A cached file no longer has the size and SHA-256 recorded when it was downloaded; it was
    /// not used.
    #[error(
        "cached file {path} is corrupt: expected {expected}, found {found}; \
         delete it to download it again"
    )]
    ChecksumMismatch {
        /// The cached file.
        path: PathBuf,
        /// The recorded size and SHA-256.
        expected: String,
        /// The file's size and SHA-256 now.
        found: String,
    },

    /// The cache directory or a file in it could not be created, written or read (disk full,
    /// no permission).
    #[error("cache file {path}: {reason}")]
    CacheIo {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's message.
        reason: String,
    },

    /// A mirror URL (`VHEAT_MIRROR`, `--mirror`, `Cache::with_mirror`) that cannot be
    /// downloaded from: not `http://` or `https://`, no host, or with a query or fragment.
    #[error(
        "invalid mirror URL {value:?} ({origin}): {reason}; expected http(s)://HOST[:PORT][/PATH], \
         under which RELEASE/FILE (e.g. vheatcls/vHeat_tiny.pth) is served"
    )]
    InvalidMirror {
        /// Where the value came from (`VHEAT_MIRROR`, `--mirror`, …).
        origin: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No cache directory: `VHEAT_CACHE` is not set and the platform has no user cache folder.
    #[error("no cache directory: set VHEAT_CACHE to a writable folder")]
    NoCacheDir,

    /// A downloaded file is not a checkpoint the model can load; it was deleted and is not
    /// kept in the cache.
    #[error("downloaded file {path} (from {url}) is not a loadable checkpoint and was removed: {reason}")]
    NotACheckpoint {
        /// The file that was downloaded (removed).
        path: PathBuf,
        /// Where it came from.
        url: String,
        /// The loader's message.
        reason: String,
    },

    /// A feature that this build or this version does not provide (yet), named with what would
    /// provide it.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// A training run cannot use its output folder: it is a file, another run holds it, or it
    /// cannot be created or locked.
    #[error("cannot use {path} as the run's output folder: {reason}")]
    RunFolder {
        /// The folder (`--out`).
        path: PathBuf,
        /// Why not (for a lock, which process holds it).
        reason: String,
    },

    /// `--resume` found checkpoints that another run wrote (another model, data, seed or
    /// recipe); nothing was trained or changed.
    #[error(
        "cannot resume from {path}: its checkpoints belong to another run ({differences}); \
         resume with the same settings, or train into another --out"
    )]
    ForeignCheckpoints {
        /// The checkpoint folder.
        path: PathBuf,
        /// What differs, `; `-separated.
        differences: String,
    },

    /// The training loss became NaN or infinite; the run stopped before checkpointing the
    /// epoch, so the last good checkpoint is the newest one kept.
    #[error(
        "training diverged: the loss is {loss} at epoch {epoch}, iteration {iteration} \
         (learning rate {lr:e}); stopped, the checkpoints of earlier epochs are kept \
         (try a smaller --lr)"
    )]
    Diverged {
        /// The epoch, from 1.
        epoch: usize,
        /// The iteration within the epoch, from 1.
        iteration: usize,
        /// The learning rate of that iteration (NaN when it was not reported).
        lr: f64,
        /// The loss value.
        loss: f64,
    },

    /// A request needs more memory than the limit allows (see
    /// [`crate::vheat::MemoryEstimate`]); nothing was allocated.
    #[error(
        "{what} needs about {needed}, above the memory limit of {limit}; a smaller size, \
         batch or model fits, or set VHEAT_MEMORY_LIMIT (e.g. 32G) to allow more"
    )]
    MemoryLimit {
        /// What was asked for.
        what: String,
        /// The estimate and its parts.
        needed: String,
        /// The limit.
        limit: String,
    },

    /// A download was refused before or during the transfer (too large for the checkpoint, or
    /// for the disk); its partial file was removed.
    #[error("download of {url} refused: {reason}; the partial file was removed")]
    DownloadRefused {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },

    /// A command would write over one of its own inputs.
    #[error(
        "refusing to write {path}: it is an input of this command ({what}); choose another output"
    )]
    OutputIsInput {
        /// The output that is also an input.
        path: PathBuf,
        /// Which input it is.
        what: String,
    },

    /// `--distributed mpi` (or a launcher's environment) in a build without MPI.
    #[error(
        "distributed training over MPI is not compiled into this build: rebuild with \
         `cargo build --release --features mpi` (needs an MPI library and libclang, e.g. \
         `apt-get install libopenmpi-dev openmpi-bin libclang-dev`)"
    )]
    MpiNotCompiled,

    /// A collective operation of data-parallel training failed (a rank left, the launcher
    /// ended the job, or the communicator reported an error).
    #[error("distributed training (rank {rank} of {size}): {reason}")]
    Distributed {
        /// This process's rank.
        rank: usize,
        /// The number of ranks.
        size: usize,
        /// What failed.
        reason: String,
    },

    /// Ranks of one data-parallel job disagree: started with different options, or their
    /// parameters drifted apart.
    #[error("ranks differ in {what}: {details}")]
    RanksDiffer {
        /// What was compared (the options, or the parameters after an epoch).
        what: String,
        /// Which ranks and which values differ.
        details: String,
    },
}

/// Shorthand for `Result<T, vheat::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

/// The message of [`Error::CheckpointMismatch`].
fn mismatch_message(path: &std::path::Path, report: &crate::load_report::LoadReport) -> String {
    match &report.foreign_prefix {
        Some(prefix) => format!(
            "checkpoint {} does not match the model: its keys start with {prefix:?}, which the \
             model's keys lack; {} (the {} missing and {} unused keys are in this error's report)",
            path.display(),
            crate::load_report::LoadReport::prefix_remedy(prefix),
            report.missing.len(),
            report.unused.len()
        ),
        None => format!(
            "checkpoint {} does not match the model:\n{report}",
            path.display()
        ),
    }
}
