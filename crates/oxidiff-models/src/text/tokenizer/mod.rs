//! Tokenizers through the Hugging Face `tokenizers` crate (pure-Rust features only): CLIP's
//! byte-level BPE and BERT's WordPiece, each with the context its text encoder reads, padded
//! and truncated as a `StableDiffusionPipeline` calls it (`padding="max_length",
//! truncation=True`).

mod clip;
mod files;
mod load;

use std::path::{Path, PathBuf};

use tokenizers::{Encoding, Tokenizer, TruncationDirection};

use clip::END_OF_WORD;
pub use clip::{CLIP_CONTEXT_LENGTH, CLIP_END, CLIP_START};
pub use files::minilm_dir;

use crate::ModelError;

/// Which tokenizer family, which decides its special tokens and what `save_pretrained` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// CLIP's byte-level BPE: `<|startoftext|>` … `<|endoftext|>`.
    ClipBpe,
    /// BERT's WordPiece: `[CLS]` … `[SEP]`, padded with `[PAD]`.
    WordPiece,
}

/// One text's tokens at the tokenizer's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// `context_length` ids: the start token, the text's tokens (truncated to fit), the end
    /// token, then the pad id.
    pub ids: Vec<u32>,
    /// 1 over the start, text and end tokens, 0 over the padding.
    pub attention_mask: Vec<u32>,
    /// The whole text's length in tokens, start and end included, before truncation.
    pub length: usize,
    /// Whether text tokens were cut to fit the context.
    pub truncated: bool,
}

/// A batch of texts' tokens, row-major `[batch, context_length]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// `batch × context_length` ids, one text per row (as [`Tokenized::ids`]).
    pub ids: Vec<u32>,
    /// `batch × context_length`, 1 over tokens and 0 over padding.
    pub attention_mask: Vec<u32>,
    /// Each text's untruncated length in tokens, start and end included.
    pub lengths: Vec<usize>,
    /// Whether each text was truncated.
    pub truncated: Vec<bool>,
    pub context_length: usize,
}

impl TokenBatch {
    pub fn batch_size(&self) -> usize {
        self.lengths.len()
    }

    /// Text `i`'s ids.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.ids[i * self.context_length..(i + 1) * self.context_length]
    }
}

/// A text tokenizer with its context length and special tokens: CLIP's BPE (77 tokens) or
/// BERT's WordPiece (all-MiniLM-L6-v2: 256).
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    /// Without padding or truncation: both are done here, to the context.
    tokenizer: Tokenizer,
    kind: TokenizerKind,
    /// The file or directory it was read from, for messages.
    source: PathBuf,
    context_length: usize,
    start: (String, u32),
    end: (String, u32),
    pad: (String, u32),
    /// How many special tokens the post-processor adds to one text.
    added: usize,
    vocab_size: usize,
}

impl TextTokenizer {
    /// The same tokenizer at another context length (e.g. a shorter one for short captions).
    ///
    /// # Errors
    /// A context with no room for a text token between the special tokens.
    pub fn with_context_length(mut self, context_length: usize) -> Result<Self, ModelError> {
        if context_length <= self.added {
            return Err(ModelError::file(
                &self.source,
                format!(
                    "a context of {context_length} tokens leaves no room for text beside the \
                     {} special tokens",
                    self.added
                ),
            ));
        }
        self.context_length = context_length;
        Ok(self)
    }

    /// The same tokenizer padding with `token` (SD 2.x pads CLIP with `!`, id 0). As in
    /// transformers, the pad token becomes a special token, matched whole in the text.
    ///
    /// # Errors
    /// A token the vocabulary lacks.
    pub fn with_pad_token(mut self, token: &str) -> Result<Self, ModelError> {
        let id = self.tokenizer.token_to_id(token).ok_or_else(|| {
            ModelError::file(
                &self.source,
                format!("the vocabulary has no token {token:?} to pad with"),
            )
        })?;
        load::register_special(&mut self.tokenizer, token);
        self.pad = (token.to_string(), id);
        Ok(self)
    }

    /// `text`'s ids at the context: start, the first `context_length - 2` text tokens, end,
    /// then padding.
    ///
    /// # Errors
    /// The tokenizer refuses the text (not seen with CLIP's or BERT's models).
    pub fn encode(&self, text: &str) -> Result<Tokenized, ModelError> {
        let raw = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| self.refused(text, e))?;
        self.finish(raw, text)
    }

    /// [`Self::encode`] for each text, as one `[batch, context_length]` batch.
    ///
    /// # Errors
    /// As [`Self::encode`].
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch, ModelError> {
        let mut batch = TokenBatch {
            ids: Vec::with_capacity(texts.len() * self.context_length),
            attention_mask: Vec::with_capacity(texts.len() * self.context_length),
            lengths: Vec::with_capacity(texts.len()),
            truncated: Vec::with_capacity(texts.len()),
            context_length: self.context_length,
        };
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let raw = match self.tokenizer.encode_batch(inputs.clone(), false) {
            Ok(raw) => raw,
            // The batch names no text; one at a time finds the one refused.
            Err(_) => inputs
                .iter()
                .map(|t| {
                    self.tokenizer
                        .encode(*t, false)
                        .map_err(|e| self.refused(t, e))
                })
                .collect::<Result<_, _>>()?,
        };
        for (encoding, text) in raw.into_iter().zip(inputs) {
            let one = self.finish(encoding, text)?;
            batch.ids.extend(one.ids);
            batch.attention_mask.extend(one.attention_mask);
            batch.lengths.push(one.length);
            batch.truncated.push(one.truncated);
        }
        Ok(batch)
    }

    /// `text`'s length in tokens, start and end included, untruncated (a caption longer than
    /// [`Self::context_length`] is cut).
    ///
    /// # Errors
    /// As [`Self::encode`].
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        let raw = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| self.refused(text, e))?;
        Ok(raw.len() + self.added)
    }

    /// The text of `ids`, special tokens left out (CLIP's `</w>` read as a space).
    ///
    /// # Errors
    /// An id outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        let text = self
            .tokenizer
            .decode(ids, true)
            .map_err(|e| ModelError::file(&self.source, format!("cannot decode {ids:?}: {e}")))?;
        Ok(match self.kind {
            TokenizerKind::ClipBpe => text.replace(END_OF_WORD, " ").trim().to_string(),
            TokenizerKind::WordPiece => text,
        })
    }

    /// Truncates a raw (special-less) encoding to the context, adds the special tokens, pads.
    fn finish(&self, mut raw: Encoding, text: &str) -> Result<Tokenized, ModelError> {
        let length = raw.len() + self.added;
        let budget = self.context_length - self.added;
        let truncated = raw.len() > budget;
        if truncated {
            raw.truncate(budget, 0, TruncationDirection::Right);
            raw.take_overflowing();
        }
        let encoding = self
            .tokenizer
            .post_process(raw, None, true)
            .map_err(|e| self.refused(text, e))?;
        let mut ids = encoding.get_ids().to_vec();
        let n = ids.len().min(self.context_length);
        ids.resize(self.context_length, self.pad.1);
        let mut attention_mask = vec![1; n];
        attention_mask.resize(self.context_length, 0);
        Ok(Tokenized {
            ids,
            attention_mask,
            length,
            truncated,
        })
    }

    fn refused(&self, text: &str, e: tokenizers::Error) -> ModelError {
        let shown: String = text.chars().take(60).collect();
        let more = if shown.len() < text.len() { "…" } else { "" };
        ModelError::file(
            &self.source,
            format!("cannot tokenize {shown:?}{more}: {e}"),
        )
    }

    /// Writes the directory transformers reads back with `from_pretrained` and the same ids:
    /// for CLIP what a `StableDiffusionPipeline`'s `tokenizer/` holds (`vocab.json`,
    /// `merges.txt`, `tokenizer_config.json` with `model_max_length` and the pad token,
    /// `special_tokens_map.json`); for WordPiece `tokenizer.json`, `vocab.txt` and the same two
    /// settings files. Each file is written under a temporary name and renamed into place.
    /// Returns the files written.
    ///
    /// # Errors
    /// The directory or a file cannot be written.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, ModelError> {
        files::save_pretrained(self, dir.as_ref())
    }

    /// The whole tokenizer as a `tokenizer.json` (no padding or truncation in it), which
    /// [`Self::from_tokenizer_json`] and Python's `tokenizers.Tokenizer.from_file` read.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_tokenizer_json(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        let path = path.as_ref();
        let text = self
            .tokenizer
            .to_string(false)
            .map_err(|e| ModelError::file(path, format!("cannot serialise the tokenizer: {e}")))?;
        crate::diffusers_io::write_atomically(path, text.as_bytes())
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// The ids every text is padded or truncated to, special tokens included.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad.1
    }

    pub fn pad_token(&self) -> &str {
        &self.pad.0
    }

    /// The first token of every text (`<|startoftext|>` 49406, `[CLS]` 101).
    pub fn start_id(&self) -> u32 {
        self.start.1
    }

    pub fn start_token(&self) -> &str {
        &self.start.0
    }

    /// The token after the text (`<|endoftext|>` 49407, `[SEP]` 102), where CLIP pools.
    pub fn end_id(&self) -> u32 {
        self.end.1
    }

    pub fn end_token(&self) -> &str {
        &self.end.0
    }

    /// One more than the largest id (the token embedding's rows): 49,408 for CLIP.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The file or directory it was read from (`<embedded>/…` for the built-in CLIP vocabulary).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The underlying tokenizer, without padding or truncation.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }
}
