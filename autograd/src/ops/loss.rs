//! Log-softmax and the cross-entropy loss.

use kernels::cross_entropy::CrossEntropy;
use kernels::{cross_entropy, log_softmax, Error, Result, Storage};

use crate::graph::BackwardOp;
use crate::Tensor;

fn rows_cols(op: &'static str, t: &Tensor) -> Result<(usize, usize)> {
    match t.shape() {
        [rows, cols] => Ok((*rows, *cols)),
        shape => Err(Error::shape(
            op,
            format!("expects a 2-D [batch, classes] tensor, got shape {shape:?}"),
        )),
    }
}

struct LogSoftmaxBackward {
    output: Storage,
    rows: usize,
    cols: usize,
}

impl BackwardOp for LogSoftmaxBackward {
    fn name(&self) -> &'static str {
        "log_softmax"
    }

    fn backward(&self, _inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        Ok(vec![Some(log_softmax::backward(
            &self.output,
            grad_out,
            self.rows,
            self.cols,
        )?)])
    }
}

struct CrossEntropyBackward {
    probabilities: Storage,
    labels: Vec<u32>,
    rows: usize,
    cols: usize,
    loss: CrossEntropy,
}

impl BackwardOp for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }

    fn backward(&self, _inputs: &[Tensor], grad_out: &Storage) -> Result<Vec<Option<Storage>>> {
        Ok(vec![Some(cross_entropy::backward_with(
            &self.probabilities,
            &self.labels,
            grad_out,
            self.rows,
            self.cols,
            self.loss,
        )?)])
    }
}

impl Tensor {
    /// Log of the softmax over each row of a [batch, classes] tensor.
    pub fn log_softmax(&self) -> Result<Tensor> {
        let (rows, cols) = rows_cols("log_softmax", self)?;
        let output = log_softmax::forward(&self.storage(), rows, cols)?;
        let saved = output.clone();
        Ok(Tensor::from_op(
            output,
            self.shape().to_vec(),
            &[self],
            LogSoftmaxBackward {
                output: saved,
                rows,
                cols,
            },
        ))
    }

    /// Mean cross-entropy between [batch, classes] logits and integer class labels, like
    /// `torch.nn.CrossEntropyLoss()`. Stable for large logits.
    pub fn cross_entropy(&self, labels: &[u32]) -> Result<Tensor> {
        self.cross_entropy_with(labels, CrossEntropy::default())
    }

    /// Cross-entropy with PyTorch's `label_smoothing` and `reduction` options, like
    /// `torch.nn.CrossEntropyLoss(label_smoothing=0.2, reduction="sum")`.
    ///
    /// ```
    /// use autograd::{CrossEntropy, Device, Reduction, Tensor};
    /// let logits = Tensor::from_vec(vec![0.0f64, 0.0, 0.0, 0.0], &[2, 2], Device::Cpu)?;
    /// let summed = CrossEntropy { label_smoothing: 0.2, reduction: Reduction::Sum };
    /// // Uniform logits cost ln 2 per row whatever the targets.
    /// let loss = logits.cross_entropy_with(&[0, 1], summed)?.item()?;
    /// assert!((loss - 2.0 * 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), autograd::Error>(())
    /// ```
    pub fn cross_entropy_with(&self, labels: &[u32], loss: CrossEntropy) -> Result<Tensor> {
        let (rows, cols) = rows_cols("cross_entropy", self)?;
        if labels.len() != rows {
            return Err(Error::shape(
                "cross_entropy",
                format!(
                    "{} labels for logits of shape {:?}",
                    labels.len(),
                    self.shape()
                ),
            ));
        }
        let (value, probabilities) =
            cross_entropy::forward_with(&self.storage(), labels, rows, cols, loss)?;
        Ok(Tensor::from_op(
            value,
            vec![],
            &[self],
            CrossEntropyBackward {
                probabilities,
                labels: labels.to_vec(),
                rows,
                cols,
                loss,
            },
        ))
    }
}
