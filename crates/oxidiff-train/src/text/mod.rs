//! Text-to-image conditioning: the `[text]` section naming the text encoder (a frozen,
//! pretrained one, or one trained with the UNet), where it comes from, the conditioner that
//! turns a step's captions into the context the cross-attention UNet attends to, and the joint
//! model of a UNet with its trained encoder.

mod conditioner;
mod config;
mod joint;
mod lengths;
mod source;

pub use conditioner::TextConditioner;
pub(crate) use conditioner::{checked_tokenizer, clip_parameters};
pub use config::{DEFAULT_MAX_LENGTH, SCRATCH, SCRATCH_DEFAULTS, TextSection};
pub use joint::{JointModel, load_joint, scale_update};
pub use lengths::token_lengths;
pub use source::{MINILM, PretrainedText, TextSource};
