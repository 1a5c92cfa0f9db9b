//! airbench94's training recipe: its hyper-parameters and one training step of it, as
//! scripts/airbench94_pytorch.py (a faithful port of airbench94.py) trains.
//!
//! ```text
//! total_steps     = ceil(batches_per_epoch * 9.9)            476 on CIFAR-10
//! kilostep_scale  = 1024 (1 + 1 / (1 - momentum))
//! lr              = 11.5 / kilostep_scale                     other parameters
//! lr_biases       = 64 lr                                     batch norm biases
//! weight_decay    = 0.0153 * batch / kilostep_scale / lr      per group (PyTorch's L2
//!                                                             form of decoupled decay)
//! SGD, Nesterov, momentum 0.85; lr factor: airbench's triangle (LambdaLR)
//! loss            = cross-entropy, label smoothing 0.2, summed over the batch
//! lookahead       every 5 steps with decay 0.95^5 (step / total)^3; at the last step the
//!                 weights become the average
//! whitening bias  trains during the first 3 epochs only
//! ```
//!
//! The driver (the `train` command, the tests) owns the data: it asks the
//! [`ResidentLoader`](crate::data::ResidentLoader) for each epoch, calls
//! [`Airbench94Trainer::begin_epoch`] before its first batch and [`Airbench94Trainer::step`]
//! for each batch until [`Airbench94Trainer::finished`].

use autograd::{profile, CrossEntropy, Device, Reduction};

use crate::data::{normalized_images, Batch, ResidentConfig, Split, CHANNELS, IMAGE_SIDE};
use crate::error::Result;
use crate::layers::Module;
use crate::networks::Airbench94;
use crate::optim::{
    lookahead_decay, Lookahead, LrSchedule, OptimizerState, ParamGroup, Sgd, SgdConfig,
};
use crate::train::{correct_predictions, images_tensor, StepOutcome};
use crate::tta::TtaLevel;

/// airbench94's hyper-parameters (`hyp` in airbench94.py); the default is the recipe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Airbench94Recipe {
    /// Training length in epochs; the step count is `ceil(batches_per_epoch * epochs)`.
    pub train_epochs: f64,
    pub batch_size: usize,
    /// Learning rate per 1024 examples, before `kilostep_scale`.
    pub lr: f64,
    pub momentum: f64,
    /// Per 1024 examples, decoupled from the learning rate.
    pub weight_decay: f64,
    /// Scales the batch norm biases' learning rate (not their decay).
    pub bias_scaler: f64,
    pub label_smoothing: f64,
    /// Epochs the whitening layer's bias trains before it is frozen.
    pub whiten_bias_epochs: u64,
    /// Training images the whitening initialisation reads (the first ones).
    pub whiten_images: usize,
    /// Lookahead period in steps.
    pub lookahead_every: u64,
    pub flip: bool,
    pub translate: usize,
    pub tta: TtaLevel,
}

impl Default for Airbench94Recipe {
    fn default() -> Self {
        Airbench94Recipe {
            train_epochs: 9.9,
            batch_size: 1024,
            lr: 11.5,
            momentum: 0.85,
            weight_decay: 0.0153,
            bias_scaler: 64.0,
            label_smoothing: 0.2,
            whiten_bias_epochs: 3,
            whiten_images: 5000,
            lookahead_every: 5,
            flip: true,
            translate: 2,
            tta: TtaLevel::MirrorTranslate,
        }
    }
}

impl Airbench94Recipe {
    /// Optimizer steps of a whole run on `train_len` images:
    /// `ceil(batches_per_epoch * train_epochs)`.
    ///
    /// ```
    /// use models::recipes::Airbench94Recipe;
    /// assert_eq!(Airbench94Recipe::default().total_steps(50_000), 476); // ceil(48 * 9.9)
    /// ```
    pub fn total_steps(&self, train_len: usize) -> u64 {
        let batches = (train_len / self.batch_size.max(1)) as f64;
        (batches * self.train_epochs).ceil() as u64
    }

    /// Epochs a run starts: the last one partial.
    pub fn epochs(&self) -> u64 {
        self.train_epochs.ceil() as u64
    }

    /// `1024 (1 + 1 / (1 - momentum))`.
    pub fn kilostep_scale(&self) -> f64 {
        1024.0 * (1.0 + 1.0 / (1.0 - self.momentum))
    }

    /// The learning rate of every parameter but the batch norm biases.
    pub fn base_lr(&self) -> f64 {
        self.lr / self.kilostep_scale()
    }

    /// The decoupled decay `wd` (multiplied by each group's lr gives its L2 coefficient
    /// times lr: each group's PyTorch `weight_decay` is `wd / lr`).
    pub fn decoupled_weight_decay(&self) -> f64 {
        self.weight_decay * self.batch_size as f64 / self.kilostep_scale()
    }

    /// The loader's configuration for this recipe, seeded with `seed`.
    pub fn loader(&self, seed: u64) -> ResidentConfig {
        ResidentConfig {
            batch_size: self.batch_size,
            seed,
            flip: self.flip,
            translate: self.translate,
            ..ResidentConfig::default()
        }
    }

    /// The loss: label-smoothed cross-entropy summed over the batch.
    pub fn loss(&self) -> CrossEntropy {
        CrossEntropy {
            label_smoothing: self.label_smoothing,
            reduction: Reduction::Sum,
        }
    }

    /// SGD with airbench's two groups over `model`'s parameters that require a gradient
    /// now: batch norm biases (names with `norm`) at `bias_scaler` times the learning rate,
    /// the rest at the learning rate; each with PyTorch `weight_decay = wd / lr`.
    pub fn optimizer(&self, model: &mut dyn Module) -> Result<Sgd> {
        let (norm, other): (Vec<_>, Vec<_>) = model
            .parameters()
            .into_iter()
            .filter(|(_, p)| p.requires_grad())
            .partition(|(name, _)| name.contains("norm"));
        let wd = self.decoupled_weight_decay();
        let group = |params, lr: f64| ParamGroup {
            params,
            config: SgdConfig {
                lr,
                momentum: self.momentum,
                dampening: 0.0,
                weight_decay: wd / lr,
                nesterov: true,
            },
        };
        let lr = self.base_lr();
        Ok(Sgd::with_groups(vec![
            group(norm, lr * self.bias_scaler),
            group(other, lr),
        ])?)
    }
}

/// One airbench94 run's model, optimizer, schedule and lookahead, and where it stands.
pub struct Airbench94Trainer {
    pub model: Airbench94,
    pub optimizer: Sgd,
    pub lookahead: Lookahead,
    pub recipe: Airbench94Recipe,
    schedule: LrSchedule,
    /// Steps taken.
    step: u64,
    /// The schedule's length.
    total_steps: u64,
    /// The step training stops at (the lookahead's final update happens there).
    last_step: u64,
    device: Device,
}

impl Airbench94Trainer {
    /// The optimizer over `model` as it is now, the schedule for `train_len` training
    /// images and the lookahead's average started from `model`'s state, in the port's
    /// order (so the average starts from the weights before the whitening).
    ///
    /// `stop_after`, when given, ends training early after that many steps (the schedule
    /// still spans the whole run), as the port's `--steps`.
    pub fn new(
        recipe: Airbench94Recipe,
        mut model: Airbench94,
        train_len: usize,
        stop_after: Option<u64>,
        device: Device,
    ) -> Result<Airbench94Trainer> {
        let optimizer = recipe.optimizer(&mut model)?;
        let lookahead = Lookahead::new(&mut model)?;
        let total_steps = recipe.total_steps(train_len);
        Ok(Airbench94Trainer {
            model,
            optimizer,
            lookahead,
            recipe,
            schedule: LrSchedule::airbench(total_steps),
            step: 0,
            total_steps,
            last_step: stop_after.map_or(total_steps, |s| s.min(total_steps)),
            device,
        })
    }

    /// The whitening initialisation from the first `recipe.whiten_images` images of
    /// `train` (normalised, not augmented).
    pub fn whiten(&self, train: &Split) -> Result<()> {
        let count = self.recipe.whiten_images.min(train.len());
        let normalization = self.recipe.loader(0).normalization;
        let images = normalized_images(train, count, &normalization);
        self.model
            .init_whitening(&images, [count, CHANNELS, IMAGE_SIDE, IMAGE_SIDE])?;
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// The schedule's length: the whole run's steps.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// The step training ends at.
    pub fn last_step(&self) -> u64 {
        self.last_step
    }

    pub fn finished(&self) -> bool {
        self.step >= self.last_step
    }

    /// Training mode, and the whitening bias trainable only in the first
    /// `whiten_bias_epochs` epochs (0-based `epoch`).
    pub fn begin_epoch(&mut self, epoch: u64) -> Result<()> {
        self.model
            .whitening_bias()
            .set_requires_grad(epoch < self.recipe.whiten_bias_epochs)?;
        self.model.set_training(true);
        Ok(())
    }

    /// One step on `batch`: forward, summed label-smoothed cross-entropy, backward, SGD at
    /// this step's learning rate, then the lookahead when its period comes round and at
    /// the last step. The outcome's `loss` is the batch's mean (sum / batch size).
    pub fn step(&mut self, batch: &Batch) -> Result<StepOutcome> {
        if self.finished() {
            return Err(autograd::Error::invalid(
                "airbench94",
                format!("the run has taken its {} steps", self.last_step),
            )
            .into());
        }
        let images = images_tensor(batch, self.device)?;
        for (_, param) in &self.optimizer.params {
            param.zero_grad();
        }
        let logits = self.model.forward(&images)?;
        let loss = {
            let _scope = profile::scope("loss");
            logits.cross_entropy_with(&batch.labels, self.recipe.loss())?
        };
        {
            let _scope = profile::scope("backward");
            loss.backward()?;
        }
        self.optimizer
            .set_lr_factor(self.schedule.factor(self.step))?;
        {
            let _scope = profile::scope("optimizer");
            self.optimizer.step()?;
        }
        self.step += 1;
        if self.step.is_multiple_of(self.recipe.lookahead_every) {
            self.lookahead
                .update(lookahead_decay(self.step, self.total_steps))?;
        }
        if self.step >= self.last_step {
            self.lookahead.update(1.0)?;
        }
        Ok(StepOutcome {
            loss: loss.item()? / batch.len().max(1) as f64,
            correct: correct_predictions(&logits, &batch.labels)?,
            count: batch.len(),
        })
    }

    /// The optimizer's momentum buffers and step count and the lookahead's average, for
    /// checkpoints.
    pub fn state(&self) -> OptimizerState {
        let mut state = self.optimizer.state();
        state.tensors.extend(self.lookahead.state().tensors);
        state
    }

    /// Restores what [`Airbench94Trainer::state`] returned; the step count is the
    /// optimizer's.
    pub fn load_state(&mut self, saved: &OptimizerState) -> Result<()> {
        self.optimizer.load_state(saved)?;
        self.lookahead.load_state(saved)?;
        self.step = self.optimizer.steps();
        Ok(())
    }
}
