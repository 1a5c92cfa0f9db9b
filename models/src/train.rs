//! One training step and a full evaluation: the pieces the `train` and `eval` commands
//! (and the end-to-end tests) are built from.

use std::sync::Arc;

use autograd::{no_grad, profile, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{epoch_batches, Batch, LoaderConfig, Split, CHANNELS, IMAGE_SIDE};
use crate::error::Result;
use crate::layers::Module;
use crate::optim::Optimizer;

/// A batch of images as an NCHW f32 tensor on `device`.
pub fn images_tensor(batch: &Batch, device: Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        batch.images.clone(),
        &[batch.len(), CHANNELS, IMAGE_SIDE, IMAGE_SIDE],
        device,
    )?)
}

/// The index of the largest logit of each row of a [batch, classes] tensor.
pub fn predictions(logits: &Tensor) -> Result<Vec<usize>> {
    let classes = *logits.shape().last().unwrap_or(&1);
    let values = logits.to_vec_f32()?;
    Ok(values.chunks(classes.max(1)).map(argmax).collect())
}

/// The index of the largest value; the first maximum on ties, like torch.max.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// The softmax probability of `row[index]`, computed stably in f64.
fn softmax_at(row: &[f32], index: usize) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let total: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    ((row[index] as f64 - max).exp() / total) as f32
}

/// What one optimizer step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    pub loss: f64,
    pub correct: usize,
    pub count: usize,
}

/// Forward, cross-entropy, backward and one optimizer update on `batch`.
pub fn train_step(
    model: &mut dyn Module,
    optimizer: &mut Optimizer,
    batch: &Batch,
    device: Device,
) -> Result<StepOutcome> {
    let images = images_tensor(batch, device)?;
    optimizer.zero_grad();
    let logits = model.forward(&images)?;
    // Scopes for `autograd::profile` (free when nothing records): the profiler's rows.
    let loss = {
        let _scope = profile::scope("loss");
        logits.cross_entropy(&batch.labels)?
    };
    {
        let _scope = profile::scope("backward");
        loss.backward()?;
    }
    optimizer.step()?;
    Ok(StepOutcome {
        loss: loss.item()?,
        correct: correct_predictions(&logits, &batch.labels)?,
        count: batch.len(),
    })
}

/// How many rows of `logits` have their largest value at their label.
pub fn correct_predictions(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    Ok(predictions(logits)?
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p == **l as usize)
        .count())
}

/// What the model said about one evaluated image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The true class.
    pub label: usize,
    /// The class with the largest logit.
    pub predicted: usize,
    /// The softmax probability of `predicted`, in `[0, 1]`.
    pub confidence: f32,
}

impl Prediction {
    pub fn is_correct(&self) -> bool {
        self.label == self.predicted
    }
}

/// Running sums over training steps (an epoch so far, or the steps since the last log
/// line). Saved in checkpoints, so an interrupted and resumed epoch reports the same mean
/// loss and accuracy as an uninterrupted one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Sum of the steps' mean losses.
    pub loss_sum: f64,
    pub correct: u64,
    pub images: u64,
    pub steps: u64,
}

impl Tally {
    pub fn add(&mut self, step: &StepOutcome) {
        self.loss_sum += step.loss;
        self.correct += step.correct as u64;
        self.images += step.count as u64;
        self.steps += 1;
    }

    /// Mean of the steps' losses, as the notebook prints it (0 before any step).
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.steps.max(1) as f64
    }

    /// Accuracy in percent over the images seen.
    pub fn accuracy(&self) -> f64 {
        100.0 * self.correct as f64 / self.images.max(1) as f64
    }
}

/// Test-set results: the confusion matrix and what follows from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// `confusion[true_class][predicted_class]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Mean cross-entropy over the evaluated images.
    pub loss: f64,
    /// One per image, in the split's order (the pictures of mistakes need them).
    pub predictions: Vec<Prediction>,
}

impl Evaluation {
    pub fn total(&self) -> u64 {
        self.confusion.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.confusion.len())
            .map(|c| self.confusion[c][c])
            .sum()
    }

    /// Overall accuracy in percent.
    pub fn accuracy(&self) -> f64 {
        100.0 * self.correct() as f64 / self.total().max(1) as f64
    }

    /// Accuracy in percent of each true class (`None` for a class with no images).
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let total: u64 = row.iter().sum();
                (total > 0).then(|| 100.0 * row[c] as f64 / total as f64)
            })
            .collect()
    }
}

/// Runs `model` in evaluation mode over `split`, in file order (`config.shuffle` is
/// ignored, so `predictions[i]` is about `split.image(i)`), and tallies the predictions.
/// The model is left in evaluation mode.
pub fn evaluate(
    model: &mut dyn Module,
    split: Arc<Split>,
    config: &LoaderConfig,
    device: Device,
    classes: usize,
) -> Result<Evaluation> {
    let never = || false;
    let evaluation = evaluate_until(model, split, config, device, classes, &never)?;
    Ok(evaluation.expect("never stopped"))
}

/// [`evaluate`], asking `stop` before every batch: `None` when it said to stop (an
/// interrupt), so a long evaluation answers Ctrl-C within one batch.
pub fn evaluate_until(
    model: &mut dyn Module,
    split: Arc<Split>,
    config: &LoaderConfig,
    device: Device,
    classes: usize,
    stop: &dyn Fn() -> bool,
) -> Result<Option<Evaluation>> {
    config.validate()?;
    let config = LoaderConfig {
        shuffle: false,
        ..config.clone()
    };
    model.set_training(false);
    let _guard = no_grad();
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut loss_sum = 0.0;
    let mut predictions = Vec::with_capacity(split.len());
    for batch in epoch_batches(split, &config, 0) {
        if stop() {
            return Ok(None);
        }
        let logits = model.forward(&images_tensor(&batch, device)?)?;
        loss_sum += tally_logits(&mut confusion, &mut predictions, &logits, &batch.labels)?;
    }
    Ok(Some(Evaluation {
        confusion,
        loss: loss_sum / predictions.len().max(1) as f64,
        predictions,
    }))
}

/// Adds a batch's predictions from `logits` to `confusion` and `predictions` and returns
/// the batch's summed cross-entropy.
pub(crate) fn tally_logits(
    confusion: &mut [Vec<u64>],
    predictions: &mut Vec<Prediction>,
    logits: &Tensor,
    labels: &[u32],
) -> Result<f64> {
    let width = *logits.shape().last().unwrap_or(&1);
    let values = logits.to_vec_f32()?;
    for (row, &label) in values.chunks(width.max(1)).zip(labels) {
        let predicted = argmax(row);
        confusion[label as usize][predicted] += 1;
        predictions.push(Prediction {
            label: label as usize,
            predicted,
            confidence: softmax_at(row, predicted),
        });
    }
    Ok(logits.cross_entropy(labels)?.item()? * labels.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confidence_is_the_softmax_of_the_chosen_logit() {
        // exp(0) : exp(ln 2) = 1 : 2, so the second class has probability 2/3.
        let row = [0.0f32, 2f32.ln()];
        assert_eq!(argmax(&row), 1);
        assert!((softmax_at(&row, 1) - 2.0 / 3.0).abs() < 1e-6);
        // Large logits do not overflow.
        assert!((softmax_at(&[1000.0, 1000.0], 0) - 0.5).abs() < 1e-6);
        // Ties go to the first maximum, like torch.max.
        assert_eq!(argmax(&[3.0, 3.0, 1.0]), 0);
    }
}
