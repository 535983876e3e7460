//! CLIP's byte-level BPE, assembled the way transformers' `CLIPTokenizer` (the tokenizers
//! backend, what `CLIPTokenizerFast` was) assembles it: NFC, whitespace runs to one space,
//! lowercase; CLIP's split regex, then byte-level symbols without a prefix space; BPE with the
//! `</w>` end-of-word suffix; `<|startoftext|>` … `<|endoftext|>` around the ids.
//!
//! The vocabulary comes from a pipeline's `vocab.json` + `merges.txt`, or from CLIP's published
//! `bpe_simple_vocab_16e6.txt.gz` read as CLIP's `SimpleTokenizer` reads it (embedded here, MIT,
//! licence in `assets/clip/`).

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::normalizers::replace::{Replace, ReplacePattern};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::utils::{Lowercase, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

use crate::ModelError;

/// CLIP's start and end tokens (49406 and 49407 in CLIP's vocabulary).
pub const CLIP_START: &str = "<|startoftext|>";
pub const CLIP_END: &str = "<|endoftext|>";
/// CLIP's text context, start and end tokens included.
pub const CLIP_CONTEXT_LENGTH: usize = 77;
/// The end-of-word suffix CLIP's BPE symbols carry.
pub(super) const END_OF_WORD: &str = "</w>";

/// CLIP's published vocabulary, gzipped merges (one header line, then "a b" per line).
pub(super) const BPE_SIMPLE_VOCAB: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/clip/bpe_simple_vocab_16e6.txt.gz"
));
/// How the embedded vocabulary is named in messages.
pub(super) const BPE_SIMPLE_VOCAB_NAME: &str = "<embedded>/bpe_simple_vocab_16e6.txt.gz";

/// CLIP keeps the first 49152 - 256 - 2 merges of the file (`SimpleTokenizer`), which with the
/// 512 byte symbols and the two specials makes its 49,408 tokens.
const SIMPLE_VOCAB_MERGES: usize = 49_152 - 256 - 2;

/// CLIP's pre-tokenizer: the special tokens, English contractions, letter runs, single digits,
/// runs of anything else but whitespace (whitespace itself is dropped).
const CLIP_SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// GPT-2's byte-to-symbol table (`bytes_to_unicode`) in its own order, which is the order of
/// the vocabulary's first 256 entries: the printable Latin-1 bytes stand for themselves, the
/// other 68 take U+0100… in byte order (so no symbol is whitespace or a control).
pub(super) fn byte_symbols() -> Vec<char> {
    let printable = |b: u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut symbols: Vec<char> = (0..=255u8)
        .filter(|&b| printable(b))
        .map(char::from)
        .collect();
    let others = (0..=255u8).filter(|&b| !printable(b)).count() as u32;
    symbols.extend((0..others).filter_map(|n| char::from_u32(0x100 + n)));
    symbols
}

/// The vocabulary and merges of a `bpe_simple_vocab` file's text, built as CLIP's
/// `SimpleTokenizer` builds them: the first 48,894 merges after the header line; the 256 byte
/// symbols, the same with `</w>`, every merge joined, then the start and end tokens.
///
/// # Errors
/// Too few merge lines, or a line that is not two symbols (named by its line number).
pub(super) fn simple_vocab(text: &str, source: &Path) -> Result<(Vocab, Merges), ModelError> {
    // A short file's final newline ends it; it is no empty merge.
    let mut lines = text.trim_end_matches(['\n', '\r']).split('\n');
    lines.next(); // the header
    let mut merges = Vec::with_capacity(SIMPLE_VOCAB_MERGES);
    for (i, line) in lines.take(SIMPLE_VOCAB_MERGES).enumerate() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges.push((a.to_string(), b.to_string())),
            _ => {
                return Err(ModelError::file(
                    source,
                    format!("line {}: `{line}` is not one merge (two symbols)", i + 2),
                ));
            }
        }
    }
    if merges.len() < SIMPLE_VOCAB_MERGES {
        return Err(ModelError::file(
            source,
            format!(
                "holds {} merges; CLIP's vocabulary takes the first {SIMPLE_VOCAB_MERGES}",
                merges.len()
            ),
        ));
    }
    let symbols = byte_symbols();
    let tokens = symbols
        .iter()
        .map(|c| c.to_string())
        .chain(symbols.iter().map(|c| format!("{c}{END_OF_WORD}")))
        .chain(merges.iter().map(|(a, b)| format!("{a}{b}")))
        .chain([CLIP_START.to_string(), CLIP_END.to_string()]);
    let mut vocab = Vocab::default();
    for (id, token) in tokens.enumerate() {
        // A repeated merge would repeat its token; SimpleTokenizer's dict keeps the last id.
        vocab.insert(token, id as u32);
    }
    Ok((vocab, merges))
}

/// The text of a `bpe_simple_vocab` file, gzipped (as CLIP ships it) or not.
pub(super) fn simple_vocab_text(bytes: &[u8], source: &Path) -> Result<String, ModelError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| {
                ModelError::file(source, format!("not a readable gzip of UTF-8 text: {e}"))
            })?;
        Ok(text)
    } else {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| ModelError::file(source, format!("not UTF-8 text: {e}")))
    }
}

/// A pipeline's `vocab.json`: an object of token → id, ids distinct.
///
/// # Errors
/// Unreadable, not JSON, not an object of non-negative integer ids, or an id given twice.
pub(super) fn read_vocab_json(path: &Path) -> Result<Vocab, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::file(path, missing_or(e)))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::file(path, format!("not valid JSON: {e}")))?;
    let Some(object) = json.as_object() else {
        return Err(ModelError::file(path, "not a JSON object of token → id"));
    };
    let mut vocab = Vocab::default();
    let mut seen = std::collections::HashMap::new();
    for (token, id) in object {
        let Some(id) = id.as_u64().and_then(|n| u32::try_from(n).ok()) else {
            return Err(ModelError::file(
                path,
                format!("token {token:?} has id {id}, not a non-negative integer"),
            ));
        };
        if let Some(other) = seen.insert(id, token) {
            return Err(ModelError::file(
                path,
                format!("id {id} is given to both {other:?} and {token:?}"),
            ));
        }
        vocab.insert(token.clone(), id);
    }
    Ok(vocab)
}

/// A pipeline's `merges.txt`: an optional `#version` header, then one merge "a b" per line,
/// each symbol and their join in `vocab` (`vocab_path` names it in messages).
///
/// # Errors
/// Unreadable, a line that is not two symbols, or a symbol the vocabulary lacks (by line).
pub(super) fn read_merges_txt(
    path: &Path,
    vocab: &Vocab,
    vocab_path: &Path,
) -> Result<Merges, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::file(path, missing_or(e)))?;
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if (i == 0 && line.starts_with("#version")) || line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let mut parts = line.split(' ');
        let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ModelError::file(
                path,
                format!("line {line_no}: `{line}` is not two symbols separated by one space"),
            ));
        };
        if a.is_empty() || b.is_empty() {
            return Err(ModelError::file(
                path,
                format!("line {line_no}: `{line}` is not two symbols separated by one space"),
            ));
        }
        for symbol in [a.to_string(), b.to_string(), format!("{a}{b}")] {
            if !vocab.contains_key(&symbol) {
                return Err(ModelError::file(
                    path,
                    format!(
                        "line {line_no}: `{line}` needs {symbol:?}, which {} lacks",
                        vocab_path.display()
                    ),
                ));
            }
        }
        merges.push((a.to_string(), b.to_string()));
    }
    Ok(merges)
}

/// "missing" for a file that is not there, else the I/O error.
pub(super) fn missing_or(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        "missing".to_string()
    } else {
        format!("cannot read: {e}")
    }
}

/// CLIP's tokenizer over `vocab` and `merges`, `[start, end, pad]` its special tokens (which
/// the caller registers, so that each is matched whole in the text: SD 2.x's pad `!` in a
/// prompt becomes id 0, "!" without `</w>`, as transformers gives it).
///
/// # Errors
/// A special token the vocabulary lacks, or a merge the BPE refuses.
pub(super) fn clip_tokenizer(
    vocab: Vocab,
    merges: Merges,
    [start, end, pad]: [&str; 3],
    source: &Path,
) -> Result<Tokenizer, ModelError> {
    let id = |token: &str| {
        vocab.get(token).copied().ok_or_else(|| {
            ModelError::file(
                source,
                format!("the vocabulary lacks the special token {token:?}"),
            )
        })
    };
    let (start_id, end_id) = (id(start)?, id(end)?);
    id(pad)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(END_OF_WORD.to_string())
        .unk_token(end.to_string())
        .build()
        .map_err(|e| ModelError::file(source, format!("not a usable BPE vocabulary: {e}")))?;
    let regex = |e: tokenizers::Error| ModelError::file(source, format!("CLIP's regex: {e}"));
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(NormalizerSequence::new(vec![
        NFC.into(),
        Replace::new(ReplacePattern::Regex(r"\s+".to_string()), " ")
            .map_err(regex)?
            .into(),
        Lowercase.into(),
    ])));
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        Split::new(
            SplitPattern::Regex(CLIP_SPLIT.to_string()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(regex)?
        .into(),
        // transformers' ByteLevel(add_prefix_space=False): trim_offsets and GPT-2's regex on.
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer.with_post_processor(Some(
        RobertaProcessing::new((end.to_string(), end_id), (start.to_string(), start_id))
            .trim_offsets(false)
            .add_prefix_space(false),
    ));
    Ok(tokenizer)
}
