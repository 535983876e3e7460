//! Errors of the diffusion crate.

use thiserror::Error;

/// Everything that can go wrong when building a diffusion process or a sampler schedule.
///
/// Bad input never panics: a config is checked once by [`crate::DiffusionConfig::validate`] and
/// the sampler entry points check their own arguments.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum DiffusionError {
    /// A `[diffusion]` config value is out of range. `key` is relative to the section
    /// (`num_train_timesteps`, not `diffusion.num_train_timesteps`) and the message starts with
    /// it (`num_train_timesteps: must be at least 1, got 0`), so the caller can prefix the
    /// section.
    #[error("{key}: {message}")]
    InvalidConfig {
        /// The offending key, relative to the config section.
        key: String,
        /// What is wrong, including the value that was given.
        message: String,
    },
    /// A function argument is out of range (for example more inference steps than training
    /// steps).
    #[error("{name}: {message}")]
    InvalidArgument {
        /// The argument's name.
        name: String,
        /// What is wrong, including the value that was given.
        message: String,
    },
}

impl DiffusionError {
    pub(crate) fn config(key: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn argument(name: &str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            name: name.to_owned(),
            message: message.into(),
        }
    }
}
