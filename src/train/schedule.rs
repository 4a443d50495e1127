//! The reference's learning-rate schedule: linear warm-up, then cosine decay (timm's
//! `CosineLRScheduler` with `warmup_prefix=True`, stepped every iteration).

use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::LearningRate;

/// Linear warm-up from `warmup_lr` to `base_lr` over `warmup_steps` iterations, then a cosine
/// from `base_lr` down to `min_lr` over the remaining `total_steps − warmup_steps`, then
/// `min_lr`:
///
/// ```text
/// t <  W:  lr = warmup_lr + t · (base_lr − warmup_lr) / W
/// t >= W:  lr = min_lr + ½ (base_lr − min_lr) (1 + cos(π (t − W) / (T − W)))
/// ```
///
/// where `t` counts optimizer steps from 0. It implements Burn's [`LrScheduler`], so it goes
/// straight into [`burn::train::Learner::new`], and its position is saved in checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmupCosineLr {
    base_lr: f64,
    min_lr: f64,
    warmup_lr: f64,
    warmup_steps: usize,
    total_steps: usize,
    step: usize,
}

impl WarmupCosineLr {
    /// The schedule for `total_steps` optimizer steps (`warmup_steps` of them warming up).
    ///
    /// `warmup_steps` is capped at `total_steps`; a `total_steps` of 0 is treated as 1.
    pub fn new(
        base_lr: f64,
        min_lr: f64,
        warmup_lr: f64,
        warmup_steps: usize,
        total_steps: usize,
    ) -> Self {
        let total_steps = total_steps.max(1);
        Self {
            base_lr,
            min_lr,
            warmup_lr,
            warmup_steps: warmup_steps.min(total_steps),
            total_steps,
            step: 0,
        }
    }

    /// The learning rate at optimizer step `t` (0-based), without advancing the schedule.
    pub fn lr_at(&self, t: usize) -> LearningRate {
        if t < self.warmup_steps {
            return self.warmup_lr
                + t as f64 * (self.base_lr - self.warmup_lr) / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps - self.warmup_steps;
        let t = t - self.warmup_steps;
        if decay_steps == 0 || t >= decay_steps {
            return self.min_lr;
        }
        let progress = t as f64 / decay_steps as f64;
        self.min_lr
            + 0.5 * (self.base_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// How many steps were taken.
    pub fn steps_taken(&self) -> usize {
        self.step
    }
}

impl LrScheduler for WarmupCosineLr {
    fn step(&mut self) -> LearningRate {
        let lr = self.lr_at(self.step);
        self.step += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("step", self.step as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("step") {
            self.step = step as usize;
        }
    }
}
