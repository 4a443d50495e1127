//! [`fit`]: trains a [`VHeat`] with burn-train's `Learner` on one or several devices.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{ExecutionStrategy, Interrupter, Learner, MultiDeviceOptim, SupervisedTraining};

use super::checkpointer::{resumable_checkpoint, AtomicFileCheckpointer};
use super::classifier::ImageClassifier;
use super::config::TrainingConfig;
use super::distributed::start::{announce, options_compared, rank_seed};
use super::distributed::{
    broadcast_parameters, Distributed, GradientSync, Shard, ShardedLoader, ValidationShard,
};
use super::ema_metric::{EmaAccuracyMetric, EmaLossMetric};
use super::evaluate::evaluate_accuracy;
use super::optim::adamw_for;
use super::progress::{EpochRecord, ProgressPrinter};
use super::run::{prepare_checkpoints, RunIdentity, RunLock};
use super::schedule::WarmupCosineLr;
use crate::data::{ImageBatch, ImageBatcher, ImageItem, MixupBatcher};
use crate::error::{Error, Result};
use crate::vheat::VHeat;

/// Where and how [`fit`] runs.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Folder of the run: burn-train's logs and the per-epoch checkpoints
    /// (`checkpoint/{model,optim,scheduler}-EPOCH.bpk`) go here.
    pub artifact_dir: PathBuf,
    /// The devices: one for ordinary training, several for data-parallel training (Burn's
    /// multi-device strategy: each device computes the gradients of its share of the batches,
    /// the first device sums them and steps the optimizer).
    pub devices: Vec<Device>,
    /// Continue from the newest complete checkpoint in `artifact_dir`, if there is one.
    pub resume: bool,
    /// How often the progress line is printed.
    pub progress_interval: Duration,
    /// The lock on `artifact_dir` when the caller holds it (to keep it past [`fit`], e.g. while
    /// it saves the final model); `None`: [`fit`] takes it for its own duration.
    pub run_lock: Option<Arc<RunLock>>,
    /// What the data is, for the run's identity ([`RunIdentity`]); `None`: the dataset sizes.
    pub data_identity: Option<String>,
    /// Data-parallel training across processes (see [`super::distributed`]): this process's
    /// rank of the job. `None`: this process trains alone.
    pub distributed: Option<Distributed>,
}

impl FitOptions {
    /// One device, artefacts in `artifact_dir`, no resume, progress every 2 s.
    pub fn new(artifact_dir: impl Into<PathBuf>, device: Device) -> Self {
        Self {
            artifact_dir: artifact_dir.into(),
            devices: vec![device],
            resume: false,
            progress_interval: Duration::from_secs(2),
            run_lock: None,
            data_identity: None,
            distributed: None,
        }
    }

    /// Trains under a lock on the artefact folder that the caller already holds.
    pub fn with_run_lock(mut self, lock: Arc<RunLock>) -> Self {
        self.run_lock = Some(lock);
        self
    }

    /// Describes the data for the run's identity: a resumed run must name the same.
    pub fn with_data_identity(mut self, data: impl Into<String>) -> Self {
        self.data_identity = Some(data.into());
        self
    }

    /// Trains as one rank of a data-parallel job (`None`: alone). `batch_size` stays per
    /// rank; the learning rates follow the global batch ([`TrainingConfig::for_ranks`]).
    pub fn with_distributed(mut self, distributed: Option<Distributed>) -> Self {
        self.distributed = distributed;
        self
    }

    /// Whether this process writes the run's files (checkpoints, the final model): alone, or
    /// as rank 0 of a data-parallel job.
    pub fn writes_artifacts(&self) -> bool {
        self.distributed.as_ref().is_none_or(|d| d.rank() == 0)
    }

    /// Trains on these devices (data parallel when more than one).
    pub fn with_devices(mut self, devices: Vec<Device>) -> Self {
        self.devices = devices;
        self
    }

    /// Resumes from the newest checkpoint of the artefact folder.
    pub fn with_resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Sets the progress interval.
    pub fn with_progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }
}

/// What [`fit`] returns.
#[derive(Debug)]
pub struct FitReport {
    /// The trained model (weights of the last epoch), without autodiff, in evaluation mode.
    pub model: VHeat,
    /// The metrics of every epoch that ran (this run only, when resuming).
    pub epochs: Vec<EpochRecord>,
    /// The epoch training resumed after (0 for a fresh run).
    pub resumed_from: usize,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// The model EMA after the last epoch (when [`TrainingConfig::ema_decay`] is set), without
    /// autodiff, in evaluation mode.
    pub ema: Option<VHeat>,
    /// The EMA's validation accuracy after the last epoch, in percent: the last epoch's
    /// [`EpochRecord::ema_valid_accuracy`] (burn-train's metric), or, when this run trained no
    /// epoch (a resume of a finished run), measured once with [`evaluate_accuracy`].
    pub ema_accuracy: Option<f64>,
}

/// One of the two models a run with an EMA ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelChoice {
    /// The trained weights ([`FitReport::model`]).
    Raw,
    /// Their moving average ([`FitReport::ema`]).
    Ema,
}

impl FitReport {
    /// The validation accuracy of the last epoch, in percent.
    pub fn final_accuracy(&self) -> Option<f64> {
        self.epochs.last().and_then(|e| e.valid_accuracy)
    }

    /// The epoch of this run whose validation accuracy was highest (the earliest on a tie),
    /// with that accuracy in percent; `None` when nothing was validated.
    pub fn best_epoch(&self) -> Option<(f64, usize)> {
        best_of(&self.epochs, |e| e.valid_accuracy)
    }

    /// As [`best_epoch`](Self::best_epoch), for the model EMA's validation accuracy.
    pub fn best_ema_epoch(&self) -> Option<(f64, usize)> {
        best_of(&self.epochs, |e| e.ema_valid_accuracy)
    }

    /// The EMA's validation accuracy of every epoch of this run that has one, in epoch order, in
    /// percent (empty without an EMA).
    pub fn ema_accuracy_per_epoch(&self) -> Vec<f64> {
        self.epochs
            .iter()
            .filter_map(|e| e.ema_valid_accuracy)
            .collect()
    }

    /// Which of the raw model and its EMA validated better after the last epoch, with that
    /// accuracy in percent: the EMA when its accuracy is strictly higher, or equal with a
    /// strictly lower validation loss; otherwise the raw model. `None` when neither has an
    /// accuracy (nothing was validated).
    pub fn best_of_raw_and_ema(&self) -> Option<(ModelChoice, f64)> {
        let raw = self.final_accuracy();
        let ema = self.ema.as_ref().and(self.ema_accuracy);
        match (raw, ema) {
            (None, None) => None,
            (Some(r), None) => Some((ModelChoice::Raw, r)),
            (None, Some(e)) => Some((ModelChoice::Ema, e)),
            (Some(r), Some(e)) => {
                let last = self.epochs.last();
                let lower_loss = match (
                    last.and_then(|l| l.ema_valid_loss),
                    last.and_then(|l| l.valid_loss),
                ) {
                    (Some(el), Some(rl)) => el < rl,
                    _ => false,
                };
                if e > r || (e == r && lower_loss) {
                    Some((ModelChoice::Ema, e))
                } else {
                    Some((ModelChoice::Raw, r))
                }
            }
        }
    }

    /// The model [`best_of_raw_and_ema`](Self::best_of_raw_and_ema) chooses (the raw model when
    /// nothing was validated).
    pub fn best_model(&self) -> &VHeat {
        match (self.best_of_raw_and_ema(), &self.ema) {
            (Some((ModelChoice::Ema, _)), Some(ema)) => ema,
            _ => &self.model,
        }
    }
}

/// The highest `metric` over `epochs` (the earliest epoch on a tie) and its epoch.
fn best_of(
    epochs: &[EpochRecord],
    metric: impl Fn(&EpochRecord) -> Option<f64>,
) -> Option<(f64, usize)> {
    epochs
        .iter()
        .filter_map(|e| metric(e).map(|a| (a, e.epoch)))
        .fold(None, |best, x| match best {
            Some(b) if b.0 >= x.0 => Some(b),
            _ => Some(x),
        })
}

/// The newest epoch whose model, optimizer and scheduler checkpoints all exist in
/// `artifact_dir/checkpoint` and read back completely (a torn or damaged newer epoch is passed
/// over; see [`resumable_checkpoint`]).
pub fn latest_checkpoint(artifact_dir: &Path) -> Option<usize> {
    resumable_checkpoint(artifact_dir).0
}

/// Trains `model` on `train` and validates it after every epoch on `valid`, with burn-train's
/// [`Learner`]: AdamW with the reference's weight-decay groups, [`WarmupCosineLr`] stepped every
/// iteration, label-smoothed cross-entropy, global-norm gradient clipping, stochastic depth
/// (active in training only), with [`TrainingConfig::ema_decay`] a model EMA validated beside the
/// model every epoch ([`EmaLossMetric`], [`EmaAccuracyMetric`]), a [`ProgressPrinter`], and checkpoints of the model, optimizer and
/// scheduler after every epoch in `options.artifact_dir/checkpoint` (the last two and the one
/// with the best validation loss are kept).
///
/// With [`FitOptions::distributed`], this process is one rank of a data-parallel job (see
/// [`super::distributed`]): the ranks first compare their options and take rank 0's weights,
/// each trains on its shard of every epoch with `batch_size` images per step and the learning
/// rates of the global batch ([`TrainingConfig::for_ranks`]), the gradients are averaged
/// across the ranks before the clip, the parameters compared after every epoch, and rank 0
/// alone prints progress and writes checkpoints. Validation is split across the ranks and the
/// printed and recorded figures are the whole set's (the ranks' sums added up).
///
/// # Errors
/// [`Error::InvalidTrainingOption`] for a bad recipe; [`Error::EmptyDataset`] when either set
/// holds no image; [`Error::InvalidConfig`] for no device; [`Error::RunFolder`] when another
/// run holds `artifact_dir`; [`Error::ForeignCheckpoints`] when resuming from another run's
/// checkpoints; [`Error::Diverged`] when the training loss became NaN or infinite (the epoch
/// is not checkpointed); [`Error::Training`] if training stopped on an error (e.g. an image
/// that failed to decode mid-epoch).
/// Data parallel: [`Error::RanksDiffer`] for ranks started with different options or whose
/// parameters drift apart, [`Error::Distributed`] when a collective fails.
pub fn fit<DT, DV>(
    model: VHeat,
    train: DT,
    valid: DV,
    config: &TrainingConfig,
    options: &FitOptions,
) -> Result<FitReport>
where
    DT: Dataset<ImageItem> + 'static,
    DV: Dataset<ImageItem> + 'static,
{
    config.validate()?;
    let main = options
        .devices
        .first()
        .cloned()
        .ok_or_else(|| Error::InvalidConfig("no training device given".into()))?;
    for (split, len, remedy) in [
        (
            "training",
            train.len(),
            "nothing to train on (with --skip-bad-images: no training image decodes)",
        ),
        (
            "validation",
            valid.len(),
            "an image folder split leaves a class's only image to training, so each class \
             needs 2 images or more (or give ROOT/train and ROOT/val)",
        ),
    ] {
        if len == 0 {
            return Err(Error::EmptyDataset {
                split: split.into(),
                reason: format!(
                    "0 images ({} training, {} validation); {remedy}",
                    train.len(),
                    valid.len()
                ),
            });
        }
    }
    let dist = options.distributed.as_ref();
    let (rank, ranks) = dist.map_or((0, 1), |d| (d.rank(), d.size()));
    // The folder is this run's until it returns (unless the caller holds it for longer), and
    // its checkpoints are this run's: another run's are refused on resume, moved aside on a
    // fresh start. In a data-parallel job rank 0 owns the folder; the other ranks only read it.
    let _own_lock = match (&options.run_lock, rank) {
        (None, 0) => Some(RunLock::acquire(&options.artifact_dir)?),
        _ => None,
    };
    if rank == 0 {
        let data = options.data_identity.clone().unwrap_or_else(|| {
            format!(
                "{} training and {} validation images",
                train.len(),
                valid.len()
            )
        });
        let identity = RunIdentity::new(&model, config, data);
        if let Some(said) = prepare_checkpoints(
            &options.artifact_dir.join("checkpoint"),
            &identity,
            options.resume,
        )? {
            eprintln!("{said}");
        }
    }
    let mut model = model;
    if let Some(d) = dist {
        d.check_same(
            "the training options",
            &options_compared(config, &model, train.len(), valid.len(), &d.identity),
        )?;
        model = broadcast_parameters(model, d.comm.as_ref(), 0)?;
    }
    let scaled = config.for_ranks(ranks);
    if let Some(d) = dist {
        announce(d, &main, config, &scaled);
    }
    let config = &scaled;
    let resumed_from = if options.resume {
        resume_epoch(&options.artifact_dir, rank == 0, dist)?
    } else {
        0
    };
    let shard = Shard {
        len: train.len(),
        rank,
        size: ranks,
        seed: config.seed,
    };
    // The scheduler is stepped once per optimizer step, i.e. every `grad_accumulation` batches.
    let images_per_epoch = if dist.is_some() {
        shard.per_rank()
    } else {
        train.len()
    };
    let steps_per_epoch = images_per_epoch
        .div_ceil(config.batch_size)
        .div_ceil(config.grad_accumulation);
    let total_steps = steps_per_epoch * config.epochs;
    let warmup_steps = (config.warmup_epochs * steps_per_epoch as f64).round() as usize;
    // Each rank draws its own drop-path masks and Mixup/CutMix mixes; rank 0 draws those of
    // a single process.
    let seed = rank_seed(config.seed, rank);

    let mut classifier = ImageClassifier::new(
        model.fork(&main.clone().autodiff()).train(),
        config.label_smoothing,
        config.clip_grad,
    );
    if let Some(decay) = config.ema_decay {
        classifier = classifier.with_ema(decay, config.ema_warmup)?;
    }
    let interrupter = Interrupter::new();
    let sync = dist.map(|d| {
        GradientSync::new(
            d.comm.clone(),
            d.fusion_bytes,
            steps_per_epoch,
            resumed_from * steps_per_epoch,
            interrupter.clone(),
        )
    });
    if let Some(sync) = &sync {
        classifier = classifier.with_sync(sync.clone());
    }
    let mixer = match &config.mixup {
        Some(m) => Some(MixupBatcher::new(m.clone().with_seed(seed))?),
        None => None,
    };
    let optim = adamw_for(&classifier, config.weight_decay, config.decay_fve);
    let schedule = WarmupCosineLr::new(
        config.lr,
        config.min_lr,
        config.warmup_lr,
        warmup_steps,
        total_steps,
    );
    let learner = Learner::new(classifier, optim, schedule);

    // Mixed batches: the batcher mixes pixels and builds the soft targets on the host.
    let builder = match mixer {
        Some(mixer) => DataLoaderBuilder::new(mixer),
        None => DataLoaderBuilder::new(ImageBatcher),
    }
    .batch_size(config.batch_size)
    .num_workers(config.num_workers)
    .set_device(main.clone());
    // Alone: burn's loader shuffles with the seed. Data parallel: this rank's shard of one
    // permutation per epoch shared by all ranks, in order.
    let train_loader: Arc<dyn DataLoader<ImageBatch>> = match dist {
        None => builder.shuffle(config.seed).build(train),
        Some(_) => Arc::new(ShardedLoader::new(train, shard, resumed_from, |view| {
            builder.build(view)
        })),
    };
    // Validation is split across the ranks (`r, r + N, …`, no padding) and the printer adds up
    // their sums, so the figures are the whole set's, as a single process's. A set smaller
    // than the job is validated whole on every rank.
    let valid = Arc::new(valid);
    let split_validation = sync.as_ref().filter(|_| ranks > 1 && valid.len() >= ranks);
    let valid_builder = DataLoaderBuilder::new(ImageBatcher)
        .batch_size(config.batch_size)
        .num_workers(config.num_workers)
        .set_device(main.clone());
    let valid_loader = match split_validation {
        Some(_) => valid_builder.build(ValidationShard::new(valid.clone(), rank, ranks)),
        None => valid_builder.build(valid.clone()),
    };

    let mut printer =
        ProgressPrinter::new(options.progress_interval).with_interrupter(interrupter.clone());
    if rank > 0 {
        printer = printer.quiet();
    }
    if let Some(sync) = split_validation {
        printer = printer.with_validation_across_ranks(sync.clone());
    }
    let history = printer.history();
    let divergence = printer.divergence();
    let strategy = if options.devices.len() > 1 {
        ExecutionStrategy::multi(options.devices.clone(), MultiDeviceOptim::OptimMainDevice)
    } else {
        ExecutionStrategy::single(main.clone())
    };
    let checkpoint_dir = options.artifact_dir.join("checkpoint");
    let checkpointer = |kind: &str| {
        let c = AtomicFileCheckpointer::new(&checkpoint_dir, kind);
        if rank > 0 {
            c.read_only()
        } else {
            c
        }
    };
    // burn-train's logs: rank 0's in the run folder, the others' beside it.
    let log_dir = if rank > 0 {
        options.artifact_dir.join(format!("rank{rank}"))
    } else {
        options.artifact_dir.clone()
    };
    let mut training = SupervisedTraining::new(&log_dir, train_loader, valid_loader)
        .metric_train_numeric(LearningRateMetric::new())
        .metrics((LossMetric::new(), AccuracyMetric::new()))
        .with_training_strategy(strategy.into())
        .with_custom_checkpointers(
            checkpointer("model"),
            checkpointer("optim"),
            checkpointer("scheduler"),
        )
        .renderer(Box::new(printer))
        .with_interrupter(interrupter)
        .num_epochs(config.epochs);
    if config.ema_decay.is_some() {
        training = training
            .metric_valid_numeric(EmaLossMetric::loss())
            .metric_valid_numeric(EmaAccuracyMetric::accuracy());
    }
    if config.grad_accumulation > 1 {
        training = training.grads_accumulation(config.grad_accumulation);
    }
    if resumed_from > 0 {
        training = training.checkpoint(resumed_from);
    }
    main.seed(seed);
    let start = Instant::now();
    let result = training.launch(learner);
    let elapsed = start.elapsed();
    if let Some(e) = sync.as_ref().and_then(GradientSync::take_error) {
        return Err(e);
    }
    if let Some(e) = result.error {
        return Err(Error::Training(e.to_string()));
    }
    if let Some(d) = dist {
        d.comm.finish();
    }
    if let Some(d) = divergence.lock().ok().and_then(|d| *d) {
        return Err(Error::Diverged {
            epoch: d.epoch,
            iteration: d.iteration,
            lr: d.lr,
            loss: d.loss,
        });
    }
    let epochs = history.lock().map(|h| h.clone()).unwrap_or_default();
    let ema = result.model.ema_model().map(|m| m.clone().valid());
    let ema_accuracy = match &ema {
        Some(m) => match epochs.last().and_then(|e| e.ema_valid_accuracy) {
            Some(a) => Some(a),
            None => Some(evaluate_accuracy(m, &valid, config.batch_size, &main)?),
        },
        None => None,
    };
    Ok(FitReport {
        model: result.model.model.valid(),
        epochs,
        resumed_from,
        elapsed,
        ema,
        ema_accuracy,
    })
}

/// The epoch to resume after, the same on every rank: rank 0's choice (it alone says why it
/// passed over a damaged checkpoint), which every other rank must be able to read too.
fn resume_epoch(artifact_dir: &Path, speaks: bool, dist: Option<&Distributed>) -> Result<usize> {
    let (epoch, passed_over) = resumable_checkpoint(artifact_dir);
    if speaks {
        for why in passed_over {
            eprintln!("resume: {why}; using an older one");
        }
        if epoch.is_none() {
            eprintln!(
                "resume: no complete checkpoint in {}; starting from epoch 1",
                artifact_dir.join("checkpoint").display()
            );
        }
    }
    if let Some(d) = dist {
        // On several machines the run folder must be shared (or copied) for every rank to
        // see rank 0's checkpoints.
        d.check_same(
            "the checkpoint to resume from",
            &[(
                "the newest readable checkpoint".into(),
                format!("{epoch:?}"),
            )],
        )?;
    }
    Ok(epoch.unwrap_or(0))
}
