//! Saving and loading weights as safetensors, with PyTorch's `state_dict` names, so a
//! PyTorch user can load our files and we can load theirs.
//!
//! Two files make a checkpoint: the model (`model.safetensors`: exactly the `state_dict`,
//! `num_batches_tracked` included as int64) and the training state
//! (`training_state.safetensors`: the optimizer's state as `optimizer.<name>` entries —
//! Adam's moments and per-parameter step counts, like PyTorch's `optimizer.state_dict()` —,
//! dropout stream positions, and the loop's position as JSON metadata). Every file is written to a temporary name and renamed, so a
//! crash or Ctrl-C never leaves a half-written checkpoint behind.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use autograd::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layers::{Module, StateEntry};
use crate::optim::{Optimizer, OptimizerState};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::checkpoint(path, format!("cannot write: {e}"));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let result = (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result.map_err(io)
}

/// Tensor bytes in the file's little-endian layout.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl HostTensor {
    fn of(tensor: &Tensor) -> Result<HostTensor> {
        let (dtype, bytes) = match tensor.dtype() {
            DType::F32 => (
                Dtype::F32,
                tensor
                    .to_vec_f32()?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            DType::F64 => (
                Dtype::F64,
                tensor
                    .to_vec_f64()?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            // Exact: every value of a bf16 tensor is an f32 with a bf16 mantissa.
            DType::BF16 => (
                Dtype::BF16,
                tensor
                    .to_vec_f32()?
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
            ),
        };
        Ok(HostTensor {
            dtype,
            shape: tensor.shape().to_vec(),
            bytes,
        })
    }

    /// PyTorch stores counters such as `num_batches_tracked` as int64 scalars.
    fn counter(value: u64) -> HostTensor {
        HostTensor {
            dtype: Dtype::I64,
            shape: vec![],
            bytes: (value as i64).to_le_bytes().to_vec(),
        }
    }

    /// Random-stream positions use the full u64 range.
    fn unsigned(value: u64) -> HostTensor {
        HostTensor {
            dtype: Dtype::U64,
            shape: vec![],
            bytes: value.to_le_bytes().to_vec(),
        }
    }
}

fn serialize(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, t)| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::checkpoint(path, format!("cannot encode tensors: {e}")))?;
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::checkpoint(path, format!("cannot encode tensors: {e}")))
}

/// Reads a stored tensor as f32/f64 values on `device` with the given element type.
fn to_tensor(
    path: &Path,
    name: &str,
    view: &TensorView<'_>,
    dtype: DType,
    device: Device,
) -> Result<Tensor> {
    let data = view.data();
    let values: Vec<f64> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")))
            .collect(),
        other => {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor {name} is stored as {other:?}; only F32 and F64 weights can be loaded"
                ),
            ))
        }
    };
    let tensor = Tensor::from_vec(values, view.shape(), Device::Cpu)?;
    Ok(tensor.to_dtype(dtype)?.to_device(device)?)
}

fn read_counter(path: &Path, name: &str, view: &TensorView<'_>) -> Result<u64> {
    let data = view.data();
    let value = match (view.dtype(), data.len()) {
        (Dtype::U64, 8) => return Ok(u64::from_le_bytes(data.try_into().expect("8 bytes"))),
        (Dtype::I64, 8) => i64::from_le_bytes(data.try_into().expect("8 bytes")),
        (Dtype::I32, 4) => i32::from_le_bytes(data.try_into().expect("4 bytes")) as i64,
        _ => {
            return Err(Error::checkpoint(
                path,
                format!(
                    "{name} must be one int64 value, found {:?} of shape {:?}",
                    view.dtype(),
                    view.shape()
                ),
            ))
        }
    };
    u64::try_from(value)
        .map_err(|_| Error::checkpoint(path, format!("{name} is negative ({value})")))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::checkpoint(path, format!("cannot read checkpoint: {e}")))
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let not_safetensors = |e: safetensors::SafeTensorError| {
        Error::checkpoint(path, format!("not a valid safetensors file ({e})"))
    };
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(not_safetensors)?;
    let metadata = metadata.metadata().clone().unwrap_or_default();
    let tensors = SafeTensors::deserialize(bytes).map_err(not_safetensors)?;
    Ok((tensors, metadata))
}

/// Saves the model's `state_dict` (parameters, buffers, counters) to `path`, atomically.
pub fn save_model(
    model: &mut dyn Module,
    path: &Path,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut tensors = BTreeMap::new();
    let mut failure = None;
    model.visit_state(&mut |name, entry| {
        let stored = match entry {
            StateEntry::Parameter(t) | StateEntry::Buffer(t) => HostTensor::of(t),
            StateEntry::Counter(count) => Ok(HostTensor::counter(*count)),
            StateEntry::RngCounter(_) => return,
        };
        match stored {
            Ok(stored) => {
                tensors.insert(name.to_string(), stored);
            }
            Err(e) => failure = Some(e),
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let bytes = serialize(path, &tensors, metadata)?;
    write_atomically(path, &bytes)
}

/// Loads a `state_dict` saved by us or exported from the equivalent PyTorch module into
/// `model`. Strict like PyTorch's `load_state_dict`: every entry must be present with the
/// right shape and no unknown entry may remain. Returns the file's metadata.
pub fn load_model(model: &mut dyn Module, path: &Path) -> Result<HashMap<String, String>> {
    let bytes = read_file(path)?;
    let (stored, metadata) = parse(path, &bytes)?;
    let mut expected = Vec::new();
    let mut problems = Vec::new();
    model.visit_state(&mut |name, entry| {
        let view = match entry {
            StateEntry::RngCounter(_) => return,
            _ => match stored.tensor(name) {
                Ok(view) => view,
                Err(_) => {
                    problems.push(format!("missing {name}"));
                    return;
                }
            },
        };
        expected.push(name.to_string());
        let result = match entry {
            StateEntry::Parameter(t) | StateEntry::Buffer(t) => {
                if view.shape() != t.shape() {
                    Err(Error::checkpoint(
                        path,
                        format!(
                            "{name} has shape {:?} in the file, the model expects {:?}",
                            view.shape(),
                            t.shape()
                        ),
                    ))
                } else {
                    to_tensor(path, name, &view, t.dtype(), t.device())
                        .and_then(|v| Ok(t.assign(&v)?))
                }
            }
            StateEntry::Counter(count) => read_counter(path, name, &view).map(|v| *count = v),
            StateEntry::RngCounter(_) => Ok(()),
        };
        if let Err(e) = result {
            problems.push(match e {
                Error::Checkpoint { message, .. } => message,
                other => other.to_string(),
            });
        }
    });
    let unexpected: Vec<&str> = stored
        .names()
        .into_iter()
        .filter(|n| !expected.iter().any(|e| e == n))
        .collect();
    if !unexpected.is_empty() {
        problems.push(format!("unexpected entries {unexpected:?}"));
    }
    if !problems.is_empty() {
        return Err(Error::checkpoint(
            path,
            format!("does not fit this model: {}", problems.join("; ")),
        ));
    }
    Ok(metadata)
}

/// Where the training loop stood when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingProgress {
    /// Epochs fully completed.
    pub epochs_done: u64,
    /// Batches of the current (incomplete) epoch already trained on.
    pub batches_done: u64,
    /// Optimizer steps taken in all.
    pub global_step: u64,
    pub seed: u64,
    pub optimizer: String,
    /// The run's options, so `--resume` can check they still agree.
    pub options: BTreeMap<String, String>,
}

const PROGRESS_KEY: &str = "training_progress";

/// Saves the optimizer's state, the dropout streams' positions and `progress`, atomically.
pub fn save_training_state(
    path: &Path,
    model: &mut dyn Module,
    optimizer: &Optimizer,
    progress: &TrainingProgress,
) -> Result<()> {
    let state = optimizer.state();
    let mut tensors = BTreeMap::new();
    for (name, tensor) in &state.tensors {
        tensors.insert(format!("optimizer.{name}"), HostTensor::of(tensor)?);
    }
    for (name, count) in &state.counters {
        tensors.insert(format!("optimizer.{name}"), HostTensor::unsigned(*count));
    }
    model.visit_state(&mut |name, entry| {
        if let StateEntry::RngCounter(count) = entry {
            tensors.insert(format!("rng.{name}"), HostTensor::unsigned(*count));
        }
    });
    let progress = serde_json::to_string(progress)
        .map_err(|e| Error::checkpoint(path, format!("cannot encode progress: {e}")))?;
    let bytes = serialize(
        path,
        &tensors,
        HashMap::from([(PROGRESS_KEY.to_string(), progress)]),
    )?;
    write_atomically(path, &bytes)
}

/// Restores what `save_training_state` wrote into `model` and `optimizer`.
pub fn load_training_state(
    path: &Path,
    model: &mut dyn Module,
    optimizer: &mut Optimizer,
) -> Result<TrainingProgress> {
    let bytes = read_file(path)?;
    let (stored, metadata) = parse(path, &bytes)?;
    let progress = metadata.get(PROGRESS_KEY).ok_or_else(|| {
        Error::checkpoint(
            path,
            "has no training progress: is it a training_state.safetensors file?",
        )
    })?;
    let progress: TrainingProgress = serde_json::from_str(progress)
        .map_err(|e| Error::checkpoint(path, format!("training progress is unreadable: {e}")))?;
    if progress.optimizer != optimizer.name() {
        return Err(Error::checkpoint(
            path,
            format!(
                "was written by the {} optimizer, this run uses {}",
                progress.optimizer,
                optimizer.name()
            ),
        ));
    }
    let counter = |name: &str| -> Result<u64> {
        let view = stored
            .tensor(name)
            .map_err(|_| Error::checkpoint(path, format!("missing {name}")))?;
        read_counter(path, name, &view)
    };
    let mut state = OptimizerState::default();
    for (name, view) in stored.tensors() {
        if let Some(short) = name.strip_prefix("optimizer.") {
            if matches!(view.dtype(), Dtype::U64 | Dtype::I64 | Dtype::I32) {
                let count = read_counter(path, &name, &view)?;
                state.counters.push((short.to_string(), count));
            } else {
                let tensor = to_tensor(path, &name, &view, DType::F32, Device::Cpu)?;
                state.tensors.push((short.to_string(), tensor));
            }
        }
    }
    optimizer
        .load_state(&state)
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    let mut failure = None;
    model.visit_state(&mut |name, entry| {
        if let StateEntry::RngCounter(count) = entry {
            match counter(&format!("rng.{name}")) {
                Ok(v) => *count = v,
                Err(e) => failure = Some(e),
            }
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(progress),
    }
}
