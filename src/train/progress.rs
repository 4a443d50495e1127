//! [`ProgressPrinter`]: burn-train's renderer interface, printed as plain lines that read well
//! in a terminal, a log file or CI (Burn's own CLI renderer prints debug structs, and its TUI
//! needs a feature and a terminal).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use burn::train::{Interrupter, LearnerSummary};

use super::distributed::GradientSync;
use super::ema_metric::{EMA_ACCURACY, EMA_LOSS};

/// The validation metrics whose sums the ranks of a data-parallel job add up.
const SUMMED_ACROSS_RANKS: [&str; 4] = ["Loss", "Accuracy", EMA_LOSS, EMA_ACCURACY];

/// The metrics of one finished epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochRecord {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Mean training loss (with label smoothing).
    pub train_loss: Option<f64>,
    /// Training accuracy, in percent.
    pub train_accuracy: Option<f64>,
    /// Mean validation loss (plain cross-entropy).
    pub valid_loss: Option<f64>,
    /// Validation accuracy, in percent.
    pub valid_accuracy: Option<f64>,
    /// Mean validation loss of the model EMA (plain cross-entropy); `None` without an EMA.
    pub ema_valid_loss: Option<f64>,
    /// Validation accuracy of the model EMA, in percent; `None` without an EMA.
    pub ema_valid_accuracy: Option<f64>,
    /// Seconds since training started, at the end of this epoch's validation.
    pub elapsed_s: f64,
}

/// Where a training loss first became NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Divergence {
    /// The epoch, from 1.
    pub epoch: usize,
    /// The iteration within the epoch, from 1.
    pub iteration: usize,
    /// The learning rate last reported (NaN when none was).
    pub lr: f64,
    /// The loss value.
    pub loss: f64,
}

/// Running sums of one split's metrics.
#[derive(Default)]
struct Running {
    sums: HashMap<String, (f64, usize)>,
    finals: HashMap<String, f64>,
}

impl Running {
    fn mean(&self, name: &str) -> Option<f64> {
        self.finals.get(name).copied().or_else(|| {
            self.sums
                .get(name)
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| s / *n as f64)
        })
    }
}

/// Prints training progress as lines of text, and keeps each epoch's metrics in a shared
/// [`EpochRecord`] list (see [`history`](Self::history)).
///
/// During an epoch it prints the running loss, accuracy and learning rate every `interval`
/// in place on a terminal, or at each quarter of the epoch in a log; after each validation it prints one line with the epoch's
/// training and validation loss and accuracy, and the model EMA's validation loss and accuracy
/// when its metrics ([`super::EmaLossMetric`], [`super::EmaAccuracyMetric`]) are registered.
pub struct ProgressPrinter {
    names: HashMap<MetricId, String>,
    train: Running,
    valid: Running,
    history: Arc<Mutex<Vec<EpochRecord>>>,
    split: String,
    split_total: usize,
    epoch: usize,
    total_epochs: usize,
    start: Instant,
    last_print: Instant,
    interval: Duration,
    tty: bool,
    in_place: bool,
    last_quarter: usize,
    interrupter: Option<Interrupter>,
    divergence: Arc<Mutex<Option<Divergence>>>,
    iteration: usize,
    lr: f64,
    quiet: bool,
    ranks: Option<GradientSync>,
}

impl ProgressPrinter {
    /// A printer that prints progress every `interval` of wall time.
    pub fn new(interval: Duration) -> Self {
        let now = Instant::now();
        Self {
            names: HashMap::new(),
            train: Running::default(),
            valid: Running::default(),
            history: Arc::new(Mutex::new(Vec::new())),
            split: String::new(),
            split_total: 0,
            epoch: 1,
            total_epochs: 0,
            start: now,
            last_print: now,
            interval,
            tty: std::io::stdout().is_terminal(),
            in_place: false,
            last_quarter: 0,
            interrupter: None,
            divergence: Arc::new(Mutex::new(None)),
            iteration: 0,
            lr: f64::NAN,
            quiet: false,
            ranks: None,
        }
    }

    /// Stops training through `interrupter` at the first NaN or infinite training loss (before
    /// the epoch is checkpointed), recording where in [`divergence`](Self::divergence).
    pub fn with_interrupter(mut self, interrupter: Interrupter) -> Self {
        self.interrupter = Some(interrupter);
        self
    }

    /// Where the training loss first became non-finite, if it did (shared: keep a clone before
    /// handing the printer to the learner).
    pub fn divergence(&self) -> Arc<Mutex<Option<Divergence>>> {
        self.divergence.clone()
    }

    /// Notes a training-loss or learning-rate value and stops the run on a non-finite loss.
    fn watch(&mut self, name: &str, value: f64) {
        if self.split != "train" {
            return;
        }
        if name == "Learning Rate" {
            self.lr = value;
            return;
        }
        if name != "Loss" {
            return;
        }
        self.iteration += 1;
        if value.is_finite() {
            return;
        }
        if let Ok(mut slot) = self.divergence.lock() {
            if slot.is_none() {
                *slot = Some(Divergence {
                    epoch: self.epoch,
                    iteration: self.iteration,
                    lr: self.lr,
                    loss: value,
                });
            }
        }
        if let Some(i) = &self.interrupter {
            i.stop(Some("the training loss is not finite"));
        }
    }

    /// A printer that prints nothing and only keeps the history (the ranks other than 0 of a
    /// data-parallel job).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Validation split across the ranks of `sync`'s job: after each validation the ranks'
    /// sums of the validation metrics are added up, so that every rank records (and rank 0
    /// prints) the whole validation set's loss and accuracy.
    pub fn with_validation_across_ranks(mut self, sync: GradientSync) -> Self {
        self.ranks = Some(sync);
        self
    }

    /// Adds up the ranks' validation sums ([`SUMMED_ACROSS_RANKS`]); the epoch means then come
    /// from the totals.
    fn sum_validation_across_ranks(&mut self) {
        let Some(sync) = &self.ranks else {
            return;
        };
        let mut values: Vec<f64> = SUMMED_ACROSS_RANKS
            .iter()
            .flat_map(|name| {
                let (sum, n) = self.valid.sums.get(*name).copied().unwrap_or((0.0, 0));
                [sum, n as f64]
            })
            .collect();
        sync.sum_across_ranks(&mut values);
        for (name, pair) in SUMMED_ACROSS_RANKS.iter().zip(values.chunks(2)) {
            self.valid.finals.remove(*name);
            if pair[1] > 0.0 {
                self.valid
                    .sums
                    .insert((*name).to_string(), (pair[0], pair[1] as usize));
            }
        }
    }

    /// The list every finished epoch is appended to (shared: keep a clone before handing the
    /// printer to the learner).
    pub fn history(&self) -> Arc<Mutex<Vec<EpochRecord>>> {
        self.history.clone()
    }

    fn running(&mut self) -> &mut Running {
        if self.split == "train" {
            &mut self.train
        } else {
            &mut self.valid
        }
    }

    fn record(&mut self, state: MetricState) {
        let MetricState::Numeric(entry, Some(value)) = state else {
            return;
        };
        let Some(name) = self.names.get(&entry.metric_id).cloned() else {
            return;
        };
        let latest = match value {
            NumericEntry::Final(v) | NumericEntry::Value(v) => v,
            NumericEntry::Aggregated {
                aggregated_value, ..
            } => aggregated_value,
        };
        self.watch(&name, latest);
        let running = self.running();
        match value {
            NumericEntry::Final(v) => {
                running.finals.insert(name, v);
            }
            NumericEntry::Value(v) => {
                let e = running.sums.entry(name).or_insert((0.0, 0));
                e.0 += v;
                e.1 += 1;
            }
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => {
                let e = running.sums.entry(name).or_insert((0.0, 0));
                e.0 += aggregated_value * count as f64;
                e.1 += count;
            }
        }
    }

    /// Whether to print now: on a terminal every `interval`; otherwise (a log, CI) at most
    /// once per quarter of a training epoch and no more often than `interval`, so that logs stay
    /// short.
    fn due(&mut self, done: usize) -> bool {
        if self.quiet {
            return false;
        }
        if self.last_print.elapsed() < self.interval {
            return false;
        }
        if !self.tty {
            if self.split != "train" {
                return false;
            }
            let quarter = |n: usize| n * 4 / self.split_total.max(1);
            if quarter(done) == self.last_quarter || done >= self.split_total {
                return false;
            }
            self.last_quarter = quarter(done);
        }
        self.last_print = Instant::now();
        true
    }

    fn clear_line(&mut self) {
        if self.in_place {
            print!("\r\x1b[2K");
            self.in_place = false;
        }
    }

    fn progress_line(&mut self, done: usize) {
        let width = self.total_epochs.to_string().len();
        let bar_len = 20;
        let filled = (done * bar_len)
            .checked_div(self.split_total)
            .map_or(0, |f| f.min(bar_len));
        let bar: String = "#".repeat(filled) + &"-".repeat(bar_len - filled);
        let r = if self.split == "train" {
            &self.train
        } else {
            &self.valid
        };
        let mut line = format!(
            "epoch {:>width$}/{}  {:<5} [{bar}] {:>6}/{:<6}",
            self.epoch, self.total_epochs, self.split, done, self.split_total
        );
        if let Some(l) = r.mean("Loss") {
            line += &format!("  loss {l:.3}");
        }
        if let Some(a) = r.mean("Accuracy") {
            line += &format!("  acc {a:5.1} %");
        }
        if let Some(a) = r.mean(EMA_ACCURACY) {
            line += &format!("  EMA acc {a:5.1} %");
        }
        if self.split == "train" {
            if let Some((s, n)) = r.sums.get("Learning Rate") {
                if *n > 0 {
                    line += &format!("  lr {:.2e}", s / *n as f64);
                }
            }
        }
        line += &format!("  {:>4.0} s", self.start.elapsed().as_secs_f64());
        if self.tty {
            print!("\r\x1b[2K{line}");
            self.in_place = true;
        } else {
            println!("{line}");
        }
        let _ = std::io::stdout().flush();
    }
}

impl MetricsRendererTraining for ProgressPrinter {
    fn update_train(&mut self, state: MetricState) {
        self.record(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(state);
    }

    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        self.clear_line();
        Ok(())
    }
}

impl MetricsRendererEvaluation for ProgressPrinter {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.record(state);
    }
}

impl TrainingProgressLogger for ProgressPrinter {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
        self.epoch = starting_epoch.max(1);
        self.start = Instant::now();
        self.last_print = self.start;
    }

    fn update_epoch(&mut self, epoch: usize) {
        self.epoch = epoch + 1;
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        self.split = split.to_string();
        self.split_total = total_items;
        self.last_quarter = 0;
        self.iteration = 0;
        *self.running() = Running::default();
    }

    fn update_split(&mut self, items_processed: usize) {
        if self.due(items_processed) {
            self.progress_line(items_processed);
        }
    }

    fn end_split(&mut self) {
        if self.split != "valid" {
            return;
        }
        self.clear_line();
        self.sum_validation_across_ranks();
        let record = EpochRecord {
            epoch: self.epoch,
            train_loss: self.train.mean("Loss"),
            train_accuracy: self.train.mean("Accuracy"),
            valid_loss: self.valid.mean("Loss"),
            valid_accuracy: self.valid.mean("Accuracy"),
            ema_valid_loss: self.valid.mean(EMA_LOSS),
            ema_valid_accuracy: self.valid.mean(EMA_ACCURACY),
            elapsed_s: self.start.elapsed().as_secs_f64(),
        };
        let width = self.total_epochs.to_string().len();
        let fmt = |v: Option<f64>, prec: usize| {
            v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.prec$}"))
        };
        let ema = if record.ema_valid_loss.is_some() || record.ema_valid_accuracy.is_some() {
            format!(
                "  |  EMA val loss {}  EMA val acc {} %",
                fmt(record.ema_valid_loss, 3),
                fmt(record.ema_valid_accuracy, 1)
            )
        } else {
            String::new()
        };
        if !self.quiet {
            println!(
            "epoch {:>width$}/{}  train loss {}  acc {} %  |  val loss {}  val acc {} %{ema}  |  {:.0} s",
            record.epoch,
            self.total_epochs,
            fmt(record.train_loss, 3),
            fmt(record.train_accuracy, 1),
            fmt(record.valid_loss, 3),
            fmt(record.valid_accuracy, 1),
            record.elapsed_s
        );
        }
        let _ = std::io::stdout().flush();
        if let Ok(mut h) = self.history.lock() {
            h.push(record);
        }
    }

    fn end(&mut self) {
        self.clear_line();
    }

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for ProgressPrinter {
    fn start_global_progress(&mut self, _total_tests: usize) {}

    fn start_test(&mut self, name: &str, total_items: usize) {
        self.split = name.to_string();
        self.split_total = total_items;
        self.last_quarter = 0;
        self.valid = Running::default();
    }

    fn update_test_progress(&mut self, items_processed: usize) {
        if self.due(items_processed) {
            self.progress_line(items_processed);
        }
    }

    fn end_test(&mut self) {
        self.clear_line();
    }

    fn end_global_progress(&mut self) {}

    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for ProgressPrinter {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id, definition.name.to_string());
    }
}
