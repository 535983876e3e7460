//! Text for text-to-image models: tokenizers (CLIP's byte-level BPE, BERT's WordPiece) and the
//! text encoders whose hidden states the cross-attention UNet attends to (transformers'
//! `CLIPTextModel`, a BERT encoder such as all-MiniLM-L6-v2), each loading transformers-format
//! safetensors by tensor name.

mod bert;
mod bert_config;
mod clip;
mod clip_config;
mod config;
mod encoder;
mod layers;
mod tokenizer;
mod transformers_io;

pub use bert::{
    BERT_PREFIX, BertAttention, BertEmbeddings, BertEncoder, BertIntermediate, BertLayer,
    BertModel, BertOutput, BertPooler, BertSelfAttention, BertSelfOutput, bert_name,
};
pub use bert_config::{BERT_MODEL_TYPE, BertConfig, PoolingMode, SentencePooling};
pub use clip::{
    CLIP_TEXT_PREFIX, ClipAttention, ClipEncoder, ClipEncoderLayer, ClipMlp, ClipTextEmbeddings,
    ClipTextModel, ClipTextOutput,
};
pub use clip_config::{CLIP_TEXT_MODEL_TYPE, ClipTextConfig};
pub use encoder::{TextEncoder, TextEncoderOutput};
pub use layers::Activation;
pub use tokenizer::{
    CLIP_CONTEXT_LENGTH, CLIP_END, CLIP_START, TextTokenizer, TokenBatch, Tokenized, TokenizerKind,
    minilm_dir,
};
pub use transformers_io::{MODEL_FILE, TRANSFORMERS_VERSION, read_config_json};
