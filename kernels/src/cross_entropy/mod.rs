//! Cross-entropy of logits against integer class labels, averaged over the rows, as
//! PyTorch's `nn.CrossEntropyLoss()` (mean reduction, no weights, no label smoothing):
//! `loss = (1/rows) * sum_r (logsumexp(x[r, :]) - x[r, label_r])`.
//!
//! Each row's term is computed as `(m - x[label]) + ln(sum_j exp(x_j - m))` with
//! `m = max_j x_j`, so logits of ±1e4 give finite, exact losses. The forward also returns
//! the softmax probabilities, from which the backward is one pass:
//! `grad_logits = (probs - onehot(labels)) * grad_loss / rows`.
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

/// Mean cross-entropy of `rows x cols` logits against `labels` (each in `0..cols`).
/// Returns the loss as a 1-element buffer and the softmax probabilities (`rows x cols`),
/// both in the logits' dtype; keep the probabilities for [`backward`].
pub fn forward(
    logits: &Storage,
    labels: &[u32],
    rows: usize,
    cols: usize,
) -> Result<(Storage, Storage)> {
    let batch = Batch::new(labels, rows, cols)?;
    batch.expect(logits, "logits")?;
    dispatch!(
        OP,
        logits,
        cpu::<T> => forward_cpu::<T>(logits, labels, batch),
        cuda(logits) => cuda::forward(logits, labels, batch),
    )
}

/// Gradient with respect to the logits: `(probs - onehot(labels)) * grad_loss[0] / rows`,
/// where `probs` is the second output of [`forward`] and `grad_loss` holds one element.
pub fn backward(
    probs: &Storage,
    labels: &[u32],
    grad_loss: &Storage,
    rows: usize,
    cols: usize,
) -> Result<Storage> {
    let batch = Batch::new(labels, rows, cols)?;
    batch.expect(probs, "probs")?;
    grad_loss.expect_len(OP, "grad_loss", 1)?;
    dispatch!(
        OP,
        probs,
        cpu::<T> => backward_cpu::<T>(probs, labels, grad_loss, batch),
        cuda(probs) => cuda::backward(probs, labels, grad_loss, batch),
    )
}

fn forward_cpu<T: Element>(
    logits: &Storage,
    labels: &[u32],
    batch: Batch,
) -> Result<(Storage, Storage)> {
    let logits = logits.host::<T>(OP, "logits")?;
    let (loss_sum, probs) = cpu::forward(logits, labels, batch.cols);
    let loss = T::of(loss_sum / batch.rows as f64);
    Ok((T::into_storage(vec![loss]), T::into_storage(probs)))
}

fn backward_cpu<T: Element>(
    probs: &Storage,
    labels: &[u32],
    grad_loss: &Storage,
    batch: Batch,
) -> Result<Storage> {
    let probs = probs.host::<T>(OP, "probs")?;
    let grad_loss = grad_loss.host::<T>(OP, "grad_loss")?[0];
    // One factor per call, formed in f64 so that rows which are not powers of two lose
    // nothing extra in f32.
    let factor = T::of(grad_loss.to_f64_lossy() / batch.rows as f64);
    Ok(T::into_storage(cpu::backward(
        probs, labels, factor, batch.cols,
    )))
}
