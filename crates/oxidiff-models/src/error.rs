use thiserror::Error;

/// Errors raised while building a network from its configuration.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A `[model]` key holds a value the network cannot be built with.
    #[error("model.{key}: {message}")]
    InvalidConfig { key: String, message: String },
    /// An autoencoder config key holds a value the network cannot be built with.
    #[error("autoencoder {key}: {message}")]
    InvalidAutoencoder { key: String, message: String },
    /// A model file or directory (diffusers' `config.json`, safetensors weights) cannot be
    /// read, written or used.
    #[error("{}: {message}", path.display())]
    File {
        path: std::path::PathBuf,
        message: String,
    },
}

impl ModelError {
    pub(crate) fn autoencoder(key: &str, message: impl Into<String>) -> Self {
        Self::InvalidAutoencoder {
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn file(path: &std::path::Path, message: impl Into<String>) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            key: key.to_string(),
            message: message.into(),
        }
    }
}
