//! Cross-entropy of logits against integer class labels, as PyTorch's
//! `nn.CrossEntropyLoss(label_smoothing=ε, reduction=...)` (no class weights): each row's
//! target distribution is `q_j = ε/C + (1 - ε)·[j = label]` over the `C` classes, and
//!
//! ```text
//! loss_r = sum_j q_j (logsumexp(x_r) - x_rj)
//!        = (1 - ε)(m - x_r,label) + (ε/C) sum_j (m - x_rj) + ln(sum_j exp(x_rj - m)),  m = max_j x_rj
//! loss   = sum_r loss_r / rows   (Mean, PyTorch's default)   or   sum_r loss_r   (Sum)
//! ```
//!
//! Every term is non-negative, so logits of ±1e4 give finite, exact losses. The forward
//! also returns the softmax probabilities, from which the backward is one pass:
//! `grad_logits = (probs - q) * grad_loss / divisor` with divisor `rows` (Mean) or 1 (Sum).
//! With ε = 0 and Mean this is the plain `nn.CrossEntropyLoss()` bit for bit.
//!
//! ```
//! use kernels::{cross_entropy, Storage};
//! // Equal logits over 4 classes: the loss is ln 4 whatever the label.
//! let (loss, probs) = cross_entropy::forward(&Storage::f64(vec![0.0; 4]), &[2], 1, 4).unwrap();
//! assert!((loss.to_vec_f64().unwrap()[0] - 4f64.ln()).abs() < 1e-15);
//! assert_eq!(probs, Storage::f64(vec![0.25; 4]));
//! ```

mod cpu;
mod cuda;
#[cfg(test)]
mod tests;

use crate::{Element, Error, Result, Storage};

const OP: &str = "cross_entropy";

/// How the per-row losses are combined, as PyTorch's `reduction` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Their mean over the rows (PyTorch's default).
    #[default]
    Mean,
    /// Their sum (airbench94's loss).
    Sum,
}

/// The loss's options: PyTorch's `nn.CrossEntropyLoss(label_smoothing=..., reduction=...)`.
/// The default is the plain loss (no smoothing, mean).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CrossEntropy {
    /// `ε` in `[0, 1]`: how much of each row's target mass is spread evenly over the classes.
    pub label_smoothing: f64,
    pub reduction: Reduction,
}

impl CrossEntropy {
    fn validate(&self) -> Result<()> {
        if (0.0..=1.0).contains(&self.label_smoothing) {
            Ok(())
        } else {
            Err(Error::invalid(
                OP,
                format!(
                    "label_smoothing must be in [0, 1], got {}",
                    self.label_smoothing
                ),
            ))
        }
    }

    /// The target weights `(q_label, q_other)` of a row over `cols` classes.
    fn targets(&self, cols: usize) -> (f64, f64) {
        let off = self.label_smoothing / cols as f64;
        (1.0 - self.label_smoothing + off, off)
    }

    /// What the summed row losses (and the incoming gradient) are divided by.
    fn divisor(&self, rows: usize) -> f64 {
        match self.reduction {
            Reduction::Mean => rows as f64,
            Reduction::Sum => 1.0,
        }
    }
}

/// `rows` samples of `cols` class logits, one label per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    rows: usize,
    cols: usize,
}

impl Batch {
    /// Checks the shape and that every label names one of the `cols` classes.
    fn new(labels: &[u32], rows: usize, cols: usize) -> Result<Self> {
        if rows == 0 {
            return Err(Error::shape(
                OP,
                format!(
                    "the batch is empty (0 rows of {cols} classes): the mean loss is undefined"
                ),
            ));
        }
        rows.checked_mul(cols)
            .ok_or_else(|| Error::shape(OP, format!("{rows} x {cols} elements overflow usize")))?;
        if labels.len() != rows {
            return Err(Error::shape(
                OP,
                format!("{} labels for {rows} rows of logits", labels.len()),
            ));
        }
        if let Some(row) = labels.iter().position(|&l| l as usize >= cols) {
            return Err(Error::invalid(
                OP,
                format!(
                    "label {} at row {row} is out of range for {cols} classes (labels must be in 0..{cols})",
                    labels[row]
                ),
            ));
        }
        Ok(Batch { rows, cols })
    }

    fn expect(&self, storage: &Storage, operand: &str) -> Result<()> {
        let len = self.rows * self.cols;
        if storage.len() == len {
            Ok(())
        } else {
            Err(Error::shape(
                OP,
                format!(
                    "{operand} has {} elements, expected {} x {} = {len}",
                    storage.len(),
                    self.rows,
                    self.cols
                ),
            ))
        }
    }
}

/// Mean cross-entropy of `rows x cols` logits against `labels` (each in `0..cols`):
/// [`forward_with`] the default [`CrossEntropy`].
pub fn forward(
    logits: &Storage,
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> Result<(Storage, Storage)> {
    forward_with(logits, labels, rows, cols, CrossEntropy::default())
}

/// The loss of `rows x cols` logits against `labels` (each in `0..cols`) under `loss`.
/// Returns it as a 1-element buffer and the softmax probabilities (`rows x cols`), both in
/// the logits' dtype; keep the probabilities for [`backward_with`].
pub fn forward_with(
    logits: &Storage,
    labels: &[u32],
    rows: usize,
    cols: usize,
    loss: CrossEntropy,
) -> Result<(Storage, Storage)> {
    loss.validate()?;
    let batch = Batch::new(labels, rows, cols)?;
    batch.expect(logits, "logits")?;
    dispatch!(
        OP,
        logits,
        cpu::<T> => forward_cpu::<T>(logits, labels, batch, loss),
        cuda(logits) => cuda::forward(logits, labels, batch, loss),
    )
}

/// Gradient of the default loss: [`backward_with`] the default [`CrossEntropy`].
pub fn backward(
    probs: &Storage,
    labels: &[u32],
    grad_loss: &Storage,
    rows: usize,
    cols: usize,
) -> Result<Storage> {
    backward_with(
        probs,
        labels,
        grad_loss,
        rows,
        cols,
        CrossEntropy::default(),
    )
}

/// Gradient with respect to the logits, `(probs - q) * grad_loss[0] / divisor`, where `probs`
/// is the second output of [`forward_with`] under the same `loss` and `grad_loss` holds one
/// element.
pub fn backward_with(
    probs: &Storage,
    labels: &[u32],
    grad_loss: &Storage,
    rows: usize,
    cols: usize,
    loss: CrossEntropy,
) -> Result<Storage> {
    loss.validate()?;
    let batch = Batch::new(labels, rows, cols)?;
    batch.expect(probs, "probs")?;
    grad_loss.expect_len(OP, "grad_loss", 1)?;
    dispatch!(
        OP,
        probs,
        cpu::<T> => backward_cpu::<T>(probs, labels, grad_loss, batch, loss),
        cuda(probs) => cuda::backward(probs, labels, grad_loss, batch, loss),
    )
}

fn forward_cpu<T: Element>(
    logits: &Storage,
    labels: &[u32],
    batch: Batch,
    loss: CrossEntropy,
) -> Result<(Storage, Storage)> {
    let logits = logits.host::<T>(OP, "logits")?;
    let (_, off) = loss.targets(batch.cols);
    let on = T::of(1.0 - loss.label_smoothing);
    let (loss_sum, probs) = cpu::forward(logits, labels, batch.cols, on, T::of(off));
    let value = T::of(loss_sum / loss.divisor(batch.rows));
    Ok((T::into_storage(vec![value]), T::into_storage(probs)))
}

fn backward_cpu<T: Element>(
    probs: &Storage,
    labels: &[u32],
    grad_loss: &Storage,
    batch: Batch,
    loss: CrossEntropy,
) -> Result<Storage> {
    let probs = probs.host::<T>(OP, "probs")?;
    let grad_loss = grad_loss.host::<T>(OP, "grad_loss")?[0];
    // One factor per call, formed in f64 so that rows which are not powers of two lose
    // nothing extra in f32.
    let factor = T::of(grad_loss.to_f64_lossy() / loss.divisor(batch.rows));
    let (on_label, off) = loss.targets(batch.cols);
    Ok(T::into_storage(cpu::backward(
        probs,
        labels,
        factor,
        (T::of(on_label), T::of(off)),
        batch.cols,
    )))
}
