//! The run's metrics as JSON lines: one record per logged step and one per epoch.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

pub struct MetricsLog {
    file: BufWriter<File>,
}

impl MetricsLog {
    /// Appends to `path` (a resumed run continues the same log).
    pub fn open(path: &Path) -> anyhow::Result<MetricsLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open metrics file {}", path.display()))?;
        Ok(MetricsLog {
            file: BufWriter::new(file),
        })
    }

    /// Writes one record and flushes it, so the log is complete even if the run is killed.
    pub fn record(&mut self, record: serde_json::Value) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.file, &record)?;
        self.file.write_all(b"\n")?;
        self.file.flush()?;
        Ok(())
    }
}
