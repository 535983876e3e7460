//! Text-to-image conditioning: the `[text]` section naming a frozen, pretrained text encoder,
//! where its files are, and the conditioner that turns a step's captions into the context the
//! cross-attention UNet attends to.

mod conditioner;
mod config;
mod lengths;
mod source;

pub use conditioner::TextConditioner;
pub use config::{DEFAULT_MAX_LENGTH, TextSection};
pub use lengths::token_lengths;
pub use source::{MINILM, TextSource};
