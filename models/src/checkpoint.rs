//! Saving and loading weights as safetensors, with PyTorch's `state_dict` names, so a
//! PyTorch user can load our files and we can load theirs.
//!
//! Two files make a run's checkpoint: the model (`model.safetensors`: exactly the
//! `state_dict`, `num_batches_tracked` included as int64) and the training state
//! (`training_state.safetensors`: the optimizer's state as `optimizer.<name>` entries —
//! Adam's moments and per-parameter step counts, like PyTorch's `optimizer.state_dict()` —,
//! dropout stream positions and, as JSON metadata, the loop's position, the run's settings
//! and the length and CRC-32 of the model file it belongs with).
//!
//! The pair is saved as one unit ([`save_checkpoint`]): both files are first written in
//! full under temporary names (`<file>.tmp`) and synced; renaming the training state into
//! place is the commit; renaming the model follows. A kill at any instant leaves either the
//! old pair (before the commit) or a new training state whose model is the complete
//! `model.safetensors.tmp` beside it, which [`Checkpoint::open`] renames into place. So a
//! run can always be resumed from its newest complete checkpoint, and a model file never
//! pairs with the wrong training state.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use autograd::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::data::DataFingerprint;
use crate::error::{Error, Result};
use crate::layers::{Module, StateEntry};
use crate::optim::{Optimizer, OptimizerState};
use crate::test_pause;
use crate::train::Tally;

/// The model half of a run's checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// The training-state half of a run's checkpoint.
pub const TRAINING_STATE_FILE: &str = "training_state.safetensors";

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| Error::checkpoint(path, format!("cannot write: {e}")))?;
    }
    let temporary = pending(path);
    write_synced(&temporary, bytes, "file")?;
    rename(&temporary, path)
}

/// Where a file is written before it is renamed to `path`.
fn pending(path: &Path) -> PathBuf {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    PathBuf::from(temporary)
}

/// Creates `path` with `bytes` and syncs it to disk; on failure removes it. `label` names
/// the test pause points halfway through and at the end.
fn write_synced(path: &Path, bytes: &[u8], label: &str) -> Result<()> {
    let result = (|| {
        let mut file = fs::File::create(path)?;
        let (first, second) = bytes.split_at(bytes.len() / 2);
        file.write_all(first)?;
        test_pause::point(&format!("save:{label}-half"), &|| false);
        file.write_all(second)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(path);
        return Err(Error::checkpoint(path, format!("cannot write: {e}")));
    }
    test_pause::point(&format!("save:{label}-written"), &|| false);
    Ok(())
}

/// Renames `from` to `to` and syncs their folder, so the rename itself is on disk.
fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| {
        let _ = fs::remove_file(from);
        Error::checkpoint(to, format!("cannot write: {e}"))
    })?;
    let folder = to.parent().filter(|p| !p.as_os_str().is_empty());
    // Syncing a folder is how POSIX makes a rename durable; other systems refuse to
    // open folders, and there the rename is as durable as the system makes it.
    if let Ok(folder) = fs::File::open(folder.unwrap_or(Path::new("."))) {
        let _ = folder.sync_all();
    }
    Ok(())
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
    let bytes = model_bytes(model, path, metadata)?;
    write_atomically(path, &bytes)
}

/// The bytes of a model file holding `model`'s `state_dict`; `path` names it in errors.
fn model_bytes(
    model: &mut dyn Module,
    path: &Path,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
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
    serialize(path, &tensors, metadata)
}

/// Loads a `state_dict` saved by us or exported from the equivalent PyTorch module into
/// `model`. Strict like PyTorch's `load_state_dict`: every entry must be present with the
/// right shape and no unknown entry may remain. Returns the file's metadata.
pub fn load_model(model: &mut dyn Module, path: &Path) -> Result<HashMap<String, String>> {
    let bytes = read_file(path)?;
    load_model_bytes(model, path, &bytes)
}

/// [`load_model`] from the file's bytes; `path` names it in errors.
fn load_model_bytes(
    model: &mut dyn Module,
    path: &Path,
    bytes: &[u8],
) -> Result<HashMap<String, String>> {
    let (stored, metadata) = parse(path, bytes)?;
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

/// Where the training loop stood when the checkpoint was written, and what the run is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingProgress {
    /// Epochs fully completed.
    pub epochs_done: u64,
    /// Batches of the current (incomplete) epoch already trained on.
    pub batches_done: u64,
    /// Optimizer steps taken in all.
    pub global_step: u64,
    pub optimizer: String,
    /// The current epoch's steps so far, so a resumed epoch reports the whole epoch.
    pub epoch_tally: Tally,
    /// The steps since the last logged line.
    pub log_tally: Tally,
    /// Seconds spent training in the current epoch so far.
    pub epoch_seconds: f64,
    /// Length of the run's metrics log at the save: what was logged after it is dropped on
    /// resume, as that training is done again.
    pub metrics_bytes: u64,
    /// The run's final test has been run and logged: nothing is left to do.
    pub finished: bool,
    /// The training images, so a resumed run can check it trains on the same ones.
    pub train_data: DataFingerprint,
    /// The run's settings as the trainer defines them (its command-line flags); stored and
    /// returned as they are.
    pub settings: serde_json::Value,
}

const PROGRESS_KEY: &str = "training_progress";
/// The training state's record of the model file it belongs with.
const MODEL_IDENTITY_KEY: &str = "model_file";

/// The length and CRC-32 of a model file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct FileIdentity {
    bytes: u64,
    crc32: u32,
}

impl FileIdentity {
    fn of(bytes: &[u8]) -> FileIdentity {
        let mut crc = flate2::Crc::new();
        crc.update(bytes);
        FileIdentity {
            bytes: bytes.len() as u64,
            crc32: crc.sum(),
        }
    }
}

/// Saves the optimizer's state, the dropout streams' positions and `progress`, atomically.
pub fn save_training_state(
    path: &Path,
    model: &mut dyn Module,
    optimizer: &Optimizer,
    progress: &TrainingProgress,
) -> Result<()> {
    let bytes = training_state_bytes(path, model, &optimizer.state(), progress, None)?;
    write_atomically(path, &bytes)
}

/// The bytes of a training-state file; `model_file`, when given, is recorded so the pair
/// can be checked (and completed) on load.
fn training_state_bytes(
    path: &Path,
    model: &mut dyn Module,
    state: &OptimizerState,
    progress: &TrainingProgress,
    model_file: Option<FileIdentity>,
) -> Result<Vec<u8>> {
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
    let encode = |value: serde_json::Result<String>| {
        value.map_err(|e| Error::checkpoint(path, format!("cannot encode progress: {e}")))
    };
    let mut metadata = HashMap::from([(
        PROGRESS_KEY.to_string(),
        encode(serde_json::to_string(progress))?,
    )]);
    if let Some(identity) = model_file {
        metadata.insert(
            MODEL_IDENTITY_KEY.to_string(),
            encode(serde_json::to_string(&identity))?,
        );
    }
    serialize(path, &tensors, metadata)
}

/// Restores what `save_training_state` wrote into `model` and `optimizer`.
pub fn load_training_state(
    path: &Path,
    model: &mut dyn Module,
    optimizer: &mut Optimizer,
) -> Result<TrainingProgress> {
    let bytes = read_file(path)?;
    restore_training_state(path, &bytes, model, optimizer)
}

/// The training progress recorded in a training-state file's metadata.
fn progress_of(path: &Path, metadata: &HashMap<String, String>) -> Result<TrainingProgress> {
    let progress = metadata.get(PROGRESS_KEY).ok_or_else(|| {
        Error::checkpoint(
            path,
            "has no training progress: is it a training_state.safetensors file?",
        )
    })?;
    serde_json::from_str(progress).map_err(|e| {
        Error::checkpoint(
            path,
            format!("training progress is unreadable (written by another version?): {e}"),
        )
    })
}

/// Reads only the progress of a training-state file (its header, not its tensors): where a
/// run stands and its settings, for a command that does not train.
pub fn read_progress(path: &Path) -> Result<TrainingProgress> {
    progress_of(path, &read_metadata(path)?)
}

/// Reads only the metadata of a safetensors file (its header, not its tensors): a model
/// file's network name and normalization, before the network is built.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let io = |e: std::io::Error| Error::checkpoint(path, format!("cannot read checkpoint: {e}"));
    let mut file = fs::File::open(path).map_err(io)?;
    let mut length = [0u8; 8];
    std::io::Read::read_exact(&mut file, &mut length).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::checkpoint(path, "not a valid safetensors file (shorter than 8 bytes)")
        } else {
            io(e)
        }
    })?;
    let length = u64::from_le_bytes(length);
    // safetensors' own bound on a header.
    if length > 100_000_000 {
        return Err(Error::checkpoint(
            path,
            "not a valid safetensors file (header too large)",
        ));
    }
    let mut header = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, length), &mut header).map_err(io)?;
    if (header.len() as u64) < length {
        return Err(Error::checkpoint(
            path,
            "not a valid safetensors file (the header is cut short)",
        ));
    }
    #[derive(Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let header: Header = serde_json::from_slice(&header)
        .map_err(|e| Error::checkpoint(path, format!("not a valid safetensors file ({e})")))?;
    Ok(header.metadata)
}

/// [`load_training_state`] from the file's bytes; `path` names it in errors.
fn restore_training_state(
    path: &Path,
    bytes: &[u8],
    model: &mut dyn Module,
    optimizer: &mut Optimizer,
) -> Result<TrainingProgress> {
    let state = saved_optimizer_state(path, bytes, optimizer.name())?;
    optimizer
        .load_state(&state)
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    restore_rng_counters(path, bytes, model)?;
    progress_of(path, &parse(path, bytes)?.1)
}

/// The `optimizer.*` entries of a training-state file, after checking that the optimizer
/// named `optimizer` wrote them.
fn saved_optimizer_state(path: &Path, bytes: &[u8], optimizer: &str) -> Result<OptimizerState> {
    let (stored, metadata) = parse(path, bytes)?;
    let progress = progress_of(path, &metadata)?;
    if progress.optimizer != optimizer {
        return Err(Error::checkpoint(
            path,
            format!(
                "was written by the {} optimizer, this run uses {optimizer}",
                progress.optimizer,
            ),
        ));
    }
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
    Ok(state)
}

/// Restores the dropout streams' positions (`rng.*`) of a training-state file into `model`.
fn restore_rng_counters(path: &Path, bytes: &[u8], model: &mut dyn Module) -> Result<()> {
    let (stored, _) = parse(path, bytes)?;
    let counter = |name: &str| -> Result<u64> {
        let view = stored
            .tensor(name)
            .map_err(|_| Error::checkpoint(path, format!("missing {name}")))?;
        read_counter(path, name, &view)
    };
    let mut failure = None;
    model.visit_state(&mut |name, entry| {
        if let StateEntry::RngCounter(count) = entry {
            match counter(&format!("rng.{name}")) {
                Ok(v) => *count = v,
                Err(e) => failure = Some(e),
            }
        }
    });
    failure.map_or(Ok(()), Err)
}

/// Saves `model` (with `model_metadata`) and the training state (optimizer, dropout streams,
/// `progress`) into the run folder `dir` as one unit: see the module documentation.
///
/// Test pause points, in order: `save:state-half`, `save:state-written`, `save:model-half`,
/// `save:model-written`, `save:state-renamed` (the commit), `save:model-renamed`.
pub fn save_checkpoint(
    dir: &Path,
    model: &mut dyn Module,
    optimizer: &Optimizer,
    model_metadata: HashMap<String, String>,
    progress: &TrainingProgress,
) -> Result<()> {
    save_checkpoint_state(dir, model, &optimizer.state(), model_metadata, progress)
}

/// [`save_checkpoint`] for a trainer whose state is not one [`Optimizer`]'s (airbench94's
/// SGD and lookahead): `state` is saved as the `optimizer.*` entries, and
/// `progress.optimizer` names what [`Checkpoint::optimizer_state`] will expect.
pub fn save_checkpoint_state(
    dir: &Path,
    model: &mut dyn Module,
    state: &OptimizerState,
    model_metadata: HashMap<String, String>,
    progress: &TrainingProgress,
) -> Result<()> {
    let model_path = dir.join(MODEL_FILE);
    let state_path = dir.join(TRAINING_STATE_FILE);
    let model_file = model_bytes(model, &model_path, model_metadata)?;
    let identity = FileIdentity::of(&model_file);
    let state_file = training_state_bytes(&state_path, model, state, progress, Some(identity))?;

    write_synced(&pending(&state_path), &state_file, "state")?;
    write_synced(&pending(&model_path), &model_file, "model")?;
    // The commit: from here on this pair is the checkpoint, even if a kill comes before
    // the model's own rename (`Checkpoint::open` finishes it).
    rename(&pending(&state_path), &state_path)?;
    test_pause::point("save:state-renamed", &|| false);
    rename(&pending(&model_path), &model_path)?;
    test_pause::point("save:model-renamed", &|| false);
    Ok(())
}

/// A run folder's newest complete checkpoint, read into memory and checked: its files
/// parse, and the model is the one the training state was saved with.
pub struct Checkpoint {
    pub progress: TrainingProgress,
    /// The model file's metadata.
    pub model_metadata: HashMap<String, String>,
    /// A save had been killed after its commit: `open` renamed its model file into place.
    pub completed_interrupted_save: bool,
    model_path: PathBuf,
    model_file: Vec<u8>,
    state_path: PathBuf,
    state_file: Vec<u8>,
}

impl Checkpoint {
    /// Whether `dir` holds a checkpoint's training state (complete or not).
    pub fn exists(dir: &Path) -> bool {
        dir.join(TRAINING_STATE_FILE).exists()
    }

    /// Reads the checkpoint in the run folder `dir`, completing a save that a kill
    /// interrupted after its commit, and dropping the leftovers of one interrupted before.
    /// Only the process that owns the run folder (the trainer) may call it.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let state_path = dir.join(TRAINING_STATE_FILE);
        let model_path = dir.join(MODEL_FILE);
        if !state_path.exists() {
            return Err(Error::checkpoint(
                dir,
                format!(
                    "holds no checkpoint ({TRAINING_STATE_FILE} is missing): a run saves one \
                     after every epoch and when interrupted, and this one stopped before its \
                     first save"
                ),
            ));
        }
        let state_file = read_file(&state_path)?;
        let (_, metadata) = parse(&state_path, &state_file)?;
        let progress = progress_of(&state_path, &metadata)?;
        let identity = match metadata.get(MODEL_IDENTITY_KEY) {
            Some(text) => Some(serde_json::from_str::<FileIdentity>(text).map_err(|e| {
                Error::checkpoint(&state_path, format!("model record is unreadable: {e}"))
            })?),
            None => None,
        };

        let model_pending = pending(&model_path);
        let current = fs::read(&model_path);
        let (model_file, completed) = match (identity, current) {
            // Saved alone (save_training_state): nothing to check the model against.
            (None, current) => (
                current.map_err(|e| {
                    Error::checkpoint(&model_path, format!("cannot read checkpoint: {e}"))
                })?,
                false,
            ),
            (Some(id), Ok(bytes)) if FileIdentity::of(&bytes) == id => (bytes, false),
            (Some(id), current) => match fs::read(&model_pending) {
                Ok(bytes) if FileIdentity::of(&bytes) == id => {
                    rename(&model_pending, &model_path)?;
                    (bytes, true)
                }
                _ => {
                    let found = match current {
                        Ok(bytes) => {
                            let found = FileIdentity::of(&bytes);
                            format!("{} bytes, CRC-32 {:08x}", found.bytes, found.crc32)
                        }
                        Err(e) => e.to_string(),
                    };
                    return Err(Error::checkpoint(
                        &model_path,
                        format!(
                            "is not the model {} was saved with (it expects {} bytes with \
                             CRC-32 {:08x}, found {found}): the two files come from \
                             different saves",
                            state_path.display(),
                            id.bytes,
                            id.crc32
                        ),
                    ));
                }
            },
        };
        let (_, model_metadata) = parse(&model_path, &model_file)?;
        // Leftovers of a save killed before its commit.
        for leftover in [pending(&state_path), model_pending] {
            let _ = fs::remove_file(leftover);
        }
        Ok(Checkpoint {
            progress,
            model_metadata,
            completed_interrupted_save: completed,
            model_path,
            model_file,
            state_path,
            state_file,
        })
    }

    /// Loads the checkpoint's weights into `model` and its optimizer state, dropout
    /// streams into `model` and `optimizer`.
    pub fn restore(&self, model: &mut dyn Module, optimizer: &mut Optimizer) -> Result<()> {
        load_model_bytes(model, &self.model_path, &self.model_file)?;
        restore_training_state(&self.state_path, &self.state_file, model, optimizer)?;
        Ok(())
    }

    /// Loads the checkpoint's weights and dropout streams into `model` (the optimizer's
    /// part is [`Checkpoint::optimizer_state`]).
    pub fn restore_model(&self, model: &mut dyn Module) -> Result<()> {
        load_model_bytes(model, &self.model_path, &self.model_file)?;
        restore_rng_counters(&self.state_path, &self.state_file, model)
    }

    /// The saved optimizer state, checked to have been written by the optimizer named
    /// `optimizer` (what the run recorded in `progress.optimizer`).
    pub fn optimizer_state(&self, optimizer: &str) -> Result<OptimizerState> {
        saved_optimizer_state(&self.state_path, &self.state_file, optimizer)
    }
}
