//! How much memory a training step or an evaluation batch needs, estimated before anything
//! batch-sized is allocated, and how much the device has: a batch that cannot fit is one
//! clear error instead of an allocation failure that aborts the process.
//!
//! The estimate works from the model's own layer outputs (a forward trace at batch 1, the
//! `summary` table), its parameter count and its optimizer's state, so it holds for any
//! network. Calibration, on the CPU with f32 (docs/results.md, "Memory of a training step
//! and of an evaluation"): peak memory grows per image by 1.4 to 1.6 times the sum of the
//! layer outputs in training (outputs kept for the backward pass, their gradients,
//! convolution workspace), and by 1.9 times the largest layer output in evaluation, which
//! starts from about 8 times the weights' size (loading the checkpoint). The constants
//! below round these up, so only what cannot fit is refused.

use models::layers::LayerTrace;
use models::Device;

/// Training: each image's layer outputs count this many times (measured 1.4-1.6, rounded
/// up so the estimate errs on the side of refusing only what cannot fit).
const TRAINING_COPIES: f64 = 2.0;
/// Evaluation keeps only a layer's input and output (and a convolution's workspace):
/// measured 1.9.
const EVALUATION_COPIES: f64 = 2.5;
/// Loading a checkpoint for evaluation: the file, its values widened to f64, the
/// tensors (measured ~8 times the weights' size before the first batch).
const LOADING_COPIES: f64 = 8.0;
/// The program itself, its threads and allocator (measured ~42 MB beyond the weights).
const RUNTIME_BYTES: f64 = 64e6;

/// What a model needs in memory as a function of the batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Footprint {
    /// Bytes that do not grow with the batch.
    pub fixed: f64,
    /// Bytes each image of a batch adds.
    pub per_image: f64,
}

/// Elements of a shape whose first (batch) dimension is 1.
fn elements(shape: &[usize]) -> f64 {
    shape.iter().map(|&d| d as f64).product()
}

impl Footprint {
    /// A training step: weights and their gradients, `optimizer_values` of optimizer state,
    /// every layer output of the batch-1 `trace` (and its gradient), and `input_values`
    /// per image for each of `batches_in_flight` batches (the loader's prefetched ones).
    pub fn training(
        trace: &[LayerTrace],
        parameters: usize,
        optimizer_values: usize,
        value_bytes: usize,
        input_values: usize,
        batches_in_flight: usize,
    ) -> Footprint {
        let outputs: f64 = trace.iter().map(|row| elements(&row.output_shape)).sum();
        let value_bytes = value_bytes as f64;
        Footprint {
            fixed: RUNTIME_BYTES + (2 * parameters + optimizer_values) as f64 * value_bytes,
            per_image: (TRAINING_COPIES * outputs + input_values as f64 * batches_in_flight as f64)
                * value_bytes,
        }
    }

    /// An evaluation of a loaded checkpoint (no gradients): the weights as loaded, and per
    /// image a few copies of the largest layer output plus the input batches in flight.
    pub fn evaluation(
        trace: &[LayerTrace],
        parameters: usize,
        value_bytes: usize,
        input_values: usize,
        batches_in_flight: usize,
    ) -> Footprint {
        let largest = trace
            .iter()
            .map(|row| elements(&row.output_shape))
            .fold(0.0, f64::max);
        let value_bytes = value_bytes as f64;
        Footprint {
            fixed: RUNTIME_BYTES + LOADING_COPIES * parameters as f64 * value_bytes,
            per_image: (EVALUATION_COPIES * largest
                + input_values as f64 * batches_in_flight as f64)
                * value_bytes,
        }
    }

    /// Estimated bytes at `batch` images.
    pub fn bytes(&self, batch: usize) -> f64 {
        self.fixed + self.per_image * batch as f64
    }

    /// The largest batch whose estimate fits in `available` bytes (0 if none does).
    pub fn largest_batch(&self, available: f64) -> usize {
        ((available - self.fixed) / self.per_image).max(0.0) as usize
    }
}

/// Memory free for this process on `device`: the GPU's free memory on CUDA; on the CPU the
/// kernel's `MemAvailable`, lowered to a cgroup (container) limit when there is one. `None`
/// where it cannot be told.
pub fn available(device: Device) -> Option<f64> {
    match device {
        Device::Cuda(ordinal) => {
            let gpu = models::CudaDevice::open(ordinal).ok()?;
            let (free, _total) = gpu.memory().ok()?;
            Some(free as f64)
        }
        Device::Cpu => {
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
            let kib: f64 = meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemAvailable:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            let mut bytes = kib * 1024.0;
            let cgroup = |name: &str| -> Option<f64> {
                std::fs::read_to_string(format!("/sys/fs/cgroup/{name}"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            };
            if let (Some(limit), Some(used)) = (cgroup("memory.max"), cgroup("memory.current")) {
                bytes = bytes.min((limit - used).max(0.0));
            }
            Some(bytes)
        }
    }
}

/// One error line when `what` at `batch` images (`--batch-size` says the flag) would need
/// more memory than is `available`.
pub fn ensure_fits(
    what: &str,
    flag: &str,
    batch: usize,
    footprint: &Footprint,
    available: Option<f64>,
) -> anyhow::Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    let needed = footprint.bytes(batch);
    if needed <= available {
        return Ok(());
    }
    let fits = footprint.largest_batch(available);
    let advice = if fits > 0 {
        format!("use {flag} {fits} or less")
    } else {
        "free some memory first".to_string()
    };
    anyhow::bail!(
        "{what} at batch {batch} needs about {} of memory, and {} is available: {advice}",
        format_bytes(needed),
        format_bytes(available)
    )
}

/// 1234567890.0 -> "1.2 GB"; sizes in decimal units like `summary`'s MB.
pub fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit + 1 == UNITS.len() && value >= 1000.0 {
        return format!("{bytes:.1e} B");
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(shape: &[usize]) -> LayerTrace {
        LayerTrace {
            name: String::new(),
            kind: models::layers::LayerKind::Flatten,
            description: String::new(),
            input_shape: shape.to_vec(),
            output_shape: shape.to_vec(),
            parameters: 0,
        }
    }

    #[test]
    fn the_estimate_grows_with_the_batch_from_the_layer_outputs() {
        // Two layers of 1,000 and 500 values, 100 parameters, Adam's 200 state values.
        let trace = [row(&[1, 10, 10, 10]), row(&[1, 500])];
        let footprint = Footprint::training(&trace, 100, 200, 4, 30, 3);
        assert_eq!(footprint.fixed, RUNTIME_BYTES + 400.0 * 4.0);
        assert_eq!(footprint.per_image, (2.0 * 1500.0 + 90.0) * 4.0);
        assert_eq!(
            footprint.bytes(10),
            footprint.fixed + 10.0 * footprint.per_image
        );
        let evaluation = Footprint::evaluation(&trace, 100, 4, 30, 3);
        assert_eq!(evaluation.per_image, (2.5 * 1000.0 + 90.0) * 4.0);
        assert_eq!(evaluation.fixed, RUNTIME_BYTES + 8.0 * 100.0 * 4.0);
        assert_eq!(footprint.largest_batch(footprint.bytes(7) + 1.0), 7);
        assert_eq!(footprint.largest_batch(0.0), 0);
    }

    #[test]
    fn too_large_a_batch_is_one_line_with_both_figures() {
        let footprint = Footprint {
            fixed: 1e9,
            per_image: 1e6,
        };
        assert!(ensure_fits("a step", "--batch-size", 100, &footprint, Some(2e9)).is_ok());
        assert!(ensure_fits("a step", "--batch-size", 1 << 40, &footprint, None).is_ok());
        let err = ensure_fits("a step", "--batch-size", 100_000, &footprint, Some(2e9))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "a step at batch 100000 needs about 101.0 GB of memory, and 2.0 GB is available: \
             use --batch-size 1000 or less"
        );
        let err = ensure_fits("a step", "--batch-size", usize::MAX, &footprint, Some(5e8))
            .unwrap_err()
            .to_string();
        assert!(err.contains("free some memory first"), "{err}");
    }

    #[test]
    fn bytes_are_printed_in_decimal_units() {
        assert_eq!(format_bytes(512.0), "512.0 B");
        assert_eq!(format_bytes(1.25e9), "1.2 GB");
        assert_eq!(format_bytes(3.5e13), "35.0 TB");
        assert_eq!(format_bytes(1.8e23), "1.8e23 B");
    }
}
