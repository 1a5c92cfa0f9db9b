//! The run folder: a new run never trains over an existing one (unless `--overwrite` says
//! so), and only one training process uses a folder at a time (it holds an advisory lock on
//! the folder itself).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use models::checkpoint::{MODEL_FILE, TRAINING_STATE_FILE};

/// The run's metrics, one JSON record a line.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// What a run writes into its folder: a folder holding any of them holds a run. The
/// `.tmp` files are the halves of a checkpoint save in progress.
const RUN_FILES: [&str; 5] = [
    MODEL_FILE,
    TRAINING_STATE_FILE,
    METRICS_FILE,
    "model.safetensors.tmp",
    "training_state.safetensors.tmp",
];

/// A run folder this process trains in, locked for as long as the value lives.
pub struct RunFolder {
    pub path: PathBuf,
    _lock: File,
}

/// The run files in `path`; an error naming them unless `overwrite` lets them be replaced.
fn run_files(path: &Path, overwrite: bool) -> anyhow::Result<Vec<&'static str>> {
    if path.exists() && !path.is_dir() {
        bail!("--out {}: is a file, not a folder", path.display());
    }
    let found: Vec<&str> = RUN_FILES
        .into_iter()
        .filter(|name| path.join(name).exists())
        .collect();
    if !found.is_empty() && !overwrite {
        bail!(
            "{} already holds a run ({}): continue it with --resume {}, or train into \
             another --out folder (--overwrite replaces it)",
            path.display(),
            found.join(", "),
            path.display()
        );
    }
    Ok(found)
}

/// Refuses, before anything is loaded, an `--out` that a new run could not use.
pub fn check_new_run(path: &Path, overwrite: bool) -> anyhow::Result<()> {
    run_files(path, overwrite).map(drop)
}

impl RunFolder {
    /// The folder for a new run, created if needed. A folder already holding a run is
    /// refused, or with `overwrite` emptied of that run's files first.
    pub fn for_new_run(path: &Path, overwrite: bool) -> anyhow::Result<RunFolder> {
        run_files(path, overwrite)?;
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create the run folder {}", path.display()))?;
        let folder = RunFolder::lock(path)?;
        // Checked again under the lock: another process may have started a run there.
        for name in run_files(path, overwrite)? {
            fs::remove_file(path.join(name)).with_context(|| {
                format!("--overwrite: cannot remove {}", path.join(name).display())
            })?;
        }
        Ok(folder)
    }

    /// The folder of a run to continue.
    pub fn for_resume(path: &Path) -> anyhow::Result<RunFolder> {
        if !path.is_dir() {
            bail!("--resume {}: no such run folder", path.display());
        }
        RunFolder::lock(path)
    }

    fn lock(path: &Path) -> anyhow::Result<RunFolder> {
        let folder = File::open(path)
            .with_context(|| format!("cannot open the run folder {}", path.display()))?;
        match folder.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => bail!(
                "{} is in use by another training process: wait for it to finish, or stop it",
                path.display()
            ),
            // No locks on this file system: train without the guard.
            Err(fs::TryLockError::Error(_)) => {}
        }
        Ok(RunFolder {
            path: path.to_path_buf(),
            _lock: folder,
        })
    }
}
