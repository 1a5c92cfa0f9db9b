//! `--device auto|cpu|cuda` and `--tf32`.

use clap::ValueEnum;
use models::{cuda, Device};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when a GPU is usable, otherwise the CPU.
    Auto,
    Cpu,
    /// The first CUDA device; fails (saying why) when it cannot be used.
    Cuda,
}

/// Why CUDA cannot be used: the kernel error without its `CUDA: ` prefix, and without
/// the advice to use the CPU (which `auto` follows by itself).
fn reason(err: &impl std::fmt::Display) -> String {
    let message = err.to_string();
    let message = message.strip_prefix("CUDA: ").unwrap_or(&message);
    message
        .trim_end_matches("; use --device cpu")
        .trim_end_matches(", or use --device cpu")
        .to_string()
}

/// Turns the user's choice into a device and, unless it is an explicit `cpu`, says on
/// stderr which one is used (and for `auto` why not CUDA). On CUDA it
/// also sets whether cuBLAS may use TF32 (`tf32`, off by default).
pub fn resolve(choice: DeviceChoice, tf32: bool) -> anyhow::Result<Device> {
    let device = match choice {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Auto | DeviceChoice::Cuda => match cuda::open(0) {
            Ok(gpu) => {
                gpu.set_tf32(tf32)?;
                let math = if tf32 { ", TF32 on" } else { "" };
                eprintln!("device: cuda:0 ({}{math})", gpu.name());
                Device::Cuda(0)
            }
            Err(err) if choice == DeviceChoice::Cuda => {
                anyhow::bail!("--device cuda: {}; use --device cpu", reason(&err))
            }
            Err(err) => {
                eprintln!("device: cpu (no CUDA device: {})", reason(&err));
                Device::Cpu
            }
        },
    };
    if tf32 && device == Device::Cpu {
        eprintln!("warning: --tf32 only affects CUDA matrix products; ignored on the cpu");
    }
    Ok(device)
}
