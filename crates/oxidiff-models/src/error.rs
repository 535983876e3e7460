use thiserror::Error;

/// Errors raised while building a network from its configuration.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A `[model]` key holds a value the network cannot be built with.
    #[error("model.{key}: {message}")]
    InvalidConfig { key: String, message: String },
}

impl ModelError {
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            key: key.to_string(),
            message: message.into(),
        }
    }
}
