//! Building a [`TextTokenizer`]: CLIP's embedded vocabulary, a `bpe_simple_vocab` file, a
//! tokenizer directory (`tokenizer.json`, or CLIP's `vocab.json` + `merges.txt`) or a bare
//! `tokenizer.json`, with the context and special tokens the settings files beside it give.

use std::path::Path;

use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, ModelWrapper, PostProcessor, Tokenizer};

use super::clip::{
    BPE_SIMPLE_VOCAB, BPE_SIMPLE_VOCAB_NAME, CLIP_CONTEXT_LENGTH, CLIP_END, CLIP_START,
    clip_tokenizer, missing_or, read_merges_txt, read_vocab_json, simple_vocab, simple_vocab_text,
};
use super::files::{MERGES_TXT, Settings, TOKENIZER_JSON, VOCAB_JSON};
use super::{TextTokenizer, TokenizerKind};
use crate::ModelError;

/// BERT's context where the files name none (`max_position_embeddings` of BERT-base).
const BERT_CONTEXT_LENGTH: usize = 512;

impl TextTokenizer {
    /// CLIP's tokenizer from its published vocabulary, embedded in the binary: 49,408 tokens,
    /// 77-token context, padded with `<|endoftext|>` (as SD 1.x).
    ///
    /// # Errors
    /// None in practice (the embedded file is fixed); kept for symmetry with the readers.
    pub fn clip() -> Result<Self, ModelError> {
        Self::clip_from_simple_vocab_bytes(BPE_SIMPLE_VOCAB, Path::new(BPE_SIMPLE_VOCAB_NAME))
    }

    /// CLIP's tokenizer from a `bpe_simple_vocab_16e6.txt.gz` (gzipped or not), read as CLIP's
    /// `SimpleTokenizer` reads it; padded with `<|endoftext|>`.
    ///
    /// # Errors
    /// An unreadable file, or one with too few or malformed merge lines.
    pub fn clip_from_simple_vocab(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ModelError::file(path, missing_or(e)))?;
        Self::clip_from_simple_vocab_bytes(&bytes, path)
    }

    fn clip_from_simple_vocab_bytes(bytes: &[u8], source: &Path) -> Result<Self, ModelError> {
        let text = simple_vocab_text(bytes, source)?;
        let (vocab, merges) = simple_vocab(&text, source)?;
        let tokenizer = clip_tokenizer(vocab, merges, [CLIP_START, CLIP_END, CLIP_END], source)?;
        Self::new(
            tokenizer,
            TokenizerKind::ClipBpe,
            source,
            CLIP_CONTEXT_LENGTH,
            [CLIP_START, CLIP_END, CLIP_END],
        )
    }

    /// A tokenizer directory (a pipeline's `tokenizer/`, a transformers or sentence-transformers
    /// model): its `tokenizer.json` where there is one (as transformers prefers it), else CLIP's
    /// `vocab.json` + `merges.txt`. The context length is `sentence_bert_config.json`'s
    /// `max_seq_length`, else `tokenizer_config.json`'s `model_max_length`, else 77 (CLIP) or
    /// 512 (BERT); the special tokens are those `tokenizer_config.json` or
    /// `special_tokens_map.json` name (SD 2.x pads with `!`), else the family's.
    ///
    /// # Errors
    /// A missing directory or file, or one that is not what its name says (named, with why).
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self, ModelError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            let why = if dir.exists() {
                "not a directory (a tokenizer directory was expected)"
            } else {
                "missing (a tokenizer directory was expected)"
            };
            return Err(ModelError::file(dir, why));
        }
        let json = dir.join(TOKENIZER_JSON);
        if json.is_file() {
            return Self::from_tokenizer_json(&json);
        }
        let vocab_path = dir.join(VOCAB_JSON);
        if !vocab_path.is_file() {
            return Err(ModelError::file(
                &vocab_path,
                "missing, and there is no tokenizer.json beside it (a tokenizer directory holds \
                 vocab.json + merges.txt, or tokenizer.json)",
            ));
        }
        let vocab = read_vocab_json(&vocab_path)?;
        let merges = read_merges_txt(&dir.join(MERGES_TXT), &vocab, &vocab_path)?;
        let settings = Settings::read(dir)?;
        let specials = [
            settings
                .token("bos_token")?
                .map_or(CLIP_START.into(), |t| t.0),
            settings
                .token("eos_token")?
                .map_or(CLIP_END.into(), |t| t.0),
            settings
                .token("pad_token")?
                .map_or(CLIP_END.into(), |t| t.0),
        ];
        let specials = specials.each_ref().map(String::as_str);
        let tokenizer = clip_tokenizer(vocab, merges, specials, &vocab_path)?;
        let context = settings.max_length()?.unwrap_or(CLIP_CONTEXT_LENGTH);
        Self::new(tokenizer, TokenizerKind::ClipBpe, dir, context, specials)
    }

    /// A `tokenizer.json` as the tokenizers library writes it, with a BPE (CLIP) or WordPiece
    /// (BERT) model; the settings files beside it are read as [`Self::from_pretrained`] reads
    /// them. Its own padding and truncation are dropped for the context's.
    ///
    /// # Errors
    /// A missing file, one that is not a tokenizer, another model type, or special tokens
    /// its vocabulary lacks.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ModelError::file(path, missing_or(e)))?;
        let mut tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| {
            ModelError::file(
                path,
                format!("not a tokenizer (as the tokenizers library writes one): {e}"),
            )
        })?;
        let file_pad = tokenizer.get_padding().map(|p| p.pad_token.clone());
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| ModelError::file(path, e.to_string()))?;
        let (kind, keys, defaults, context) = match tokenizer.get_model() {
            ModelWrapper::BPE(_) => (
                TokenizerKind::ClipBpe,
                ["bos_token", "eos_token"],
                [CLIP_START, CLIP_END, CLIP_END],
                CLIP_CONTEXT_LENGTH,
            ),
            ModelWrapper::WordPiece(_) => (
                TokenizerKind::WordPiece,
                ["cls_token", "sep_token"],
                ["[CLS]", "[SEP]", "[PAD]"],
                BERT_CONTEXT_LENGTH,
            ),
            other => {
                let name = match other {
                    ModelWrapper::WordLevel(_) => "WordLevel",
                    _ => "Unigram",
                };
                return Err(ModelError::file(
                    path,
                    format!(
                        "its model is {name}; oxidiff tokenizes with CLIP's BPE or BERT's WordPiece"
                    ),
                ));
            }
        };
        let settings = Settings::read(path.parent().unwrap_or(Path::new(".")))?;
        let start = settings.token(keys[0])?.map_or(defaults[0].into(), |t| t.0);
        let end = settings.token(keys[1])?.map_or(defaults[1].into(), |t| t.0);
        let pad = match settings.token("pad_token")? {
            Some((t, _)) => t,
            None => file_pad.unwrap_or(defaults[2].into()),
        };
        let context = settings.max_length()?.unwrap_or(context);
        if tokenizer.get_post_processor().is_none() {
            // Without one nothing adds the start and end tokens the encoders expect.
            let id = |t: &str| tokenizer.token_to_id(t).unwrap_or(0);
            let (s, e) = ((start.clone(), id(&start)), (end.clone(), id(&end)));
            match kind {
                TokenizerKind::ClipBpe => tokenizer.with_post_processor(Some(
                    RobertaProcessing::new(e, s)
                        .trim_offsets(false)
                        .add_prefix_space(false),
                )),
                TokenizerKind::WordPiece => {
                    tokenizer.with_post_processor(Some(BertProcessing::new(e, s)))
                }
            };
        }
        Self::new(tokenizer, kind, path, context, [&start, &end, &pad])
    }

    /// Checks the special tokens, registers them as transformers does, and sets the context.
    fn new(
        mut tokenizer: Tokenizer,
        kind: TokenizerKind,
        source: &Path,
        context_length: usize,
        [start, end, pad]: [&str; 3],
    ) -> Result<Self, ModelError> {
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .map(|id| (token.to_string(), id))
                .ok_or_else(|| {
                    ModelError::file(
                        source,
                        format!("the vocabulary has no special token {token:?}"),
                    )
                })
        };
        let (start, end, pad) = (id(start)?, id(end)?, id(pad)?);
        for token in [&start.0, &end.0, &pad.0] {
            register_special(&mut tokenizer, token);
        }
        let added = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        let vocab_size = tokenizer
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&m| m as usize + 1);
        Self {
            tokenizer,
            kind,
            source: source.to_path_buf(),
            context_length: 0,
            start,
            end,
            pad,
            added,
            vocab_size,
        }
        .with_context_length(context_length)
    }
}

/// Makes `token` a special token where it is not one: transformers registers every special
/// token its settings name (SD 2.x's pad `!` too), so it is matched whole in the text, before
/// normalisation, and left out when decoding.
pub(super) fn register_special(tokenizer: &mut Tokenizer, token: &str) {
    if !tokenizer.get_added_vocabulary().is_special_token(token) {
        tokenizer.add_special_tokens(&[AddedToken::from(token, true)]);
    }
}
