//! The run's metrics as JSON lines: one record per logged step and one per epoch.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::Context;

pub struct MetricsLog {
    file: File,
    /// Bytes in the file: what a checkpoint records, so a resume can drop what was logged
    /// after it.
    len: u64,
}

impl MetricsLog {
    /// Appends to `path` after its first `length` bytes: a resumed run drops the records of
    /// the training it will do again, and continues the same log.
    pub fn open_at(path: &Path, length: u64) -> anyhow::Result<MetricsLog> {
        let context = || format!("cannot open metrics file {}", path.display());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(context)?;
        let current = file.metadata().with_context(context)?.len();
        if current > length {
            file.set_len(length).with_context(context)?;
        }
        Ok(MetricsLog {
            file,
            len: current.min(length),
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Writes one record as one line, in one write, so the log is complete even if the run
    /// is killed (at worst its last line is cut, and a resume drops it).
    pub fn record(&mut self, record: serde_json::Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.len += line.len() as u64;
        Ok(())
    }
}
