use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while loading data or writing sample grids.
///
/// Every variant names what it is about (a config key, a file, the dataset source) so that the
/// message alone tells a user what to fix.
#[derive(Debug, Error)]
pub enum DataError {
    /// A `[data]` key (or an argument standing in for one) holds an unusable value.
    /// `key` is relative to the `[data]` section.
    #[error("data.{key}: {message}")]
    InvalidConfig { key: String, message: String },

    /// A file or folder could not be read or written.
    /// The cause is part of the message, not an error `source()`, so a printed chain
    /// (`{:#}`) says it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A file's contents are not what its format says (a broken IDX or `.npy` header, a
    /// truncated payload): `message` says what is wrong.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },

    /// An input could not be used and `data.on_error = "fail"` asked to stop on the first one.
    #[error("{}: {reason} (data.on_error = \"fail\"; \"skip\" would leave it out and go on)", path.display())]
    Unusable { path: PathBuf, reason: String },

    /// The source held no usable image. `note` says what was skipped, if anything.
    #[error("no usable images in {origin}{note}")]
    Empty { origin: String, note: String },

    /// The dataset embedded in the binary could not be decoded (a build problem, not a user one).
    #[error("embedded digits dataset: {message}")]
    Embedded { message: String },

    /// An image could not be encoded or written.
    #[error("{}: {message}", path.display())]
    Image { path: PathBuf, message: String },

    /// A caller passed arguments that do not fit together (e.g. a buffer of the wrong length).
    #[error("{what}: {message}")]
    InvalidArgument { what: String, message: String },
}

impl DataError {
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }
}
