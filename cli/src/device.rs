//! `--device auto|cpu|cuda` and `--tf32`.

use clap::ValueEnum;
use models::{CudaDevice, Device, TensorError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when a GPU is usable, otherwise the CPU.
    Auto,
    Cpu,
    /// The first CUDA device; fails (saying why) when it cannot be used.
    Cuda,
}

/// Turns the user's choice into a device and, unless it is an explicit `cpu`, says on
/// stderr which one is used (and for `auto` why not CUDA). On CUDA it
/// also sets whether cuBLAS may use TF32 (`tf32`, off by default).
pub fn resolve(choice: DeviceChoice, tf32: bool) -> anyhow::Result<Device> {
    let device = match choice {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Auto | DeviceChoice::Cuda => match CudaDevice::open(0) {
            Ok(gpu) => {
                gpu.set_tf32(tf32)?;
                let math = if tf32 { ", TF32 on" } else { "" };
                eprintln!("device: {} ({}{math})", gpu.device(), gpu.name());
                gpu.device()
            }
            Err(err) => {
                // Why CUDA cannot be used, without the kernels' wording around it.
                let reason = match err {
                    TensorError::CudaUnavailable { reason } => reason,
                    other => other.to_string(),
                };
                if choice == DeviceChoice::Cuda {
                    anyhow::bail!("--device cuda: {reason}; use --device cpu");
                }
                eprintln!("device: cpu (no CUDA device: {reason})");
                Device::Cpu
            }
        },
    };
    if tf32 && device == Device::Cpu {
        eprintln!("warning: --tf32 only affects CUDA matrix products; ignored on the cpu");
    }
    Ok(device)
}
