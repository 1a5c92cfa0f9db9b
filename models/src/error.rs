//! Errors of the models crate: tensor errors, data errors, and checkpoint problems that
//! name the file.

use std::path::PathBuf;

/// Anything that can go wrong building, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tensor(#[from] autograd::Error),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A checkpoint that cannot be read, written or used, with the reason.
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A network name the registry does not know.
    #[error("unknown model {name:?}: this build knows {known}")]
    UnknownModel { name: String, known: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn checkpoint(path: &std::path::Path, message: impl Into<String>) -> Error {
        Error::Checkpoint {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
