//! `--device auto|cpu|cuda`.

use clap::ValueEnum;
use models::Device;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when a GPU is usable, otherwise the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Turns the user's choice into a device, saying which one `auto` picked.
pub fn resolve(choice: DeviceChoice) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => {
            eprintln!("device: cpu (auto: this build has no CUDA backend yet)");
            Ok(Device::Cpu)
        }
        DeviceChoice::Cuda => {
            anyhow::bail!("--device cuda: this build has no CUDA backend yet; use --device cpu")
        }
    }
}
