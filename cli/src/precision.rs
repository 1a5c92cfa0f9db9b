//! `--precision f32|bf16`: the arithmetic of the convolutions and linear layers.

use anyhow::anyhow;
use clap::ValueEnum;
use models::{autocast, AutocastGuard, Device, Precision};
use serde::{Deserialize, Serialize};

/// What `--precision` takes; saved in a run's settings under the same names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    /// Everything in f32.
    #[default]
    F32,
    /// PyTorch's autocast: convolutions and linear layers multiply bf16-rounded inputs
    /// and weights, summing in f32 (Intel AMX or AVX512-BF16 on the CPU, cuBLAS on CUDA);
    /// activations between convolutions and their gradients are stored in bf16; weights,
    /// their gradients, the optimizer, batch norm statistics and the loss stay f32.
    Bf16,
}

impl PrecisionChoice {
    pub fn precision(self) -> Precision {
        match self {
            PrecisionChoice::F32 => Precision::F32,
            PrecisionChoice::Bf16 => Precision::Bf16,
        }
    }

    /// Checks that `device` can run this precision (one error naming what is missing) and
    /// turns it on for this thread until the guard is dropped.
    pub fn enable(self, device: Device) -> anyhow::Result<AutocastGuard> {
        let precision = self.precision();
        precision
            .check(device)
            .map_err(|e| anyhow!("--precision {precision} on {device}: {e}"))?;
        Ok(autocast(precision))
    }
}
