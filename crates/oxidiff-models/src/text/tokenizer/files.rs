//! The files around a tokenizer: the settings transformers keeps next to it
//! (`tokenizer_config.json`, `special_tokens_map.json`, sentence-transformers'
//! `sentence_bert_config.json`), where MiniLM is installed, and `save_pretrained`'s output.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use tokenizers::ModelWrapper;

use super::clip::{CLIP_END, missing_or};
use super::{TextTokenizer, TokenizerKind};
use crate::ModelError;
use crate::diffusers_io::write_atomically;

pub const TOKENIZER_JSON: &str = "tokenizer.json";
pub const VOCAB_JSON: &str = "vocab.json";
pub const MERGES_TXT: &str = "merges.txt";
pub const VOCAB_TXT: &str = "vocab.txt";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const SPECIAL_TOKENS_MAP: &str = "special_tokens_map.json";
pub const SENTENCE_BERT_CONFIG: &str = "sentence_bert_config.json";

/// Lengths above this are transformers' "no limit" (`VERY_LARGE_INTEGER`, 1e30), not a context.
const UNSET_LENGTH: f64 = 1e9;

/// The settings files of one tokenizer directory, read where present.
pub(super) struct Settings {
    /// (file, its object), in the order they are asked.
    files: Vec<(PathBuf, Map<String, Value>)>,
}

impl Settings {
    /// Reads `dir`'s settings files; absent ones are skipped.
    ///
    /// # Errors
    /// A present file that cannot be read or is not a JSON object.
    pub(super) fn read(dir: &Path) -> Result<Self, ModelError> {
        let mut files = Vec::new();
        for name in [TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP, SENTENCE_BERT_CONFIG] {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ModelError::file(&path, missing_or(e)))?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(object)) => files.push((path, object)),
                Ok(_) => return Err(ModelError::file(&path, "not a JSON object")),
                Err(e) => return Err(ModelError::file(&path, format!("not valid JSON: {e}"))),
            }
        }
        Ok(Self { files })
    }

    /// The token a special-token key names (`pad_token`, …) in the first file that has it,
    /// given as a string or as transformers' `{"content": …}`; `None` where no file has it.
    ///
    /// # Errors
    /// The key holds something else.
    pub(super) fn token(&self, key: &str) -> Result<Option<(String, PathBuf)>, ModelError> {
        for (path, object) in &self.files {
            let content = match object.get(key) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(o)) => match o.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    _ => return Err(ModelError::file(path, format!("{key} has no \"content\""))),
                },
                Some(other) => {
                    return Err(ModelError::file(
                        path,
                        format!("{key} = {other} is no token"),
                    ));
                }
            };
            return Ok(Some((content, path.clone())));
        }
        Ok(None)
    }

    /// The context length the files give: sentence-transformers' `max_seq_length` (what it
    /// truncates to), else transformers' `model_max_length` where it is a real limit.
    ///
    /// # Errors
    /// The key holds something other than a positive number.
    pub(super) fn max_length(&self) -> Result<Option<usize>, ModelError> {
        for key in ["max_seq_length", "model_max_length"] {
            for (path, object) in &self.files {
                let Some(value) = object.get(key) else {
                    continue;
                };
                let Some(n) = value.as_f64().filter(|n| *n >= 1.0) else {
                    return Err(ModelError::file(
                        path,
                        format!("{key} = {value} is not a positive number"),
                    ));
                };
                if n < UNSET_LENGTH {
                    return Ok(Some(n as usize));
                }
            }
        }
        Ok(None)
    }
}

/// Where sentence-transformers' all-MiniLM-L6-v2 is installed (by `tools/fetch_minilm.sh`):
/// `$OXIDIFF_MINILM_DIR` when set, else `$HOME/.cache/oxidiff/all-MiniLM-L6-v2`; `None` unless
/// that directory holds `tokenizer.json` and `model.safetensors`. A set variable is never
/// passed over for the default.
pub fn minilm_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("OXIDIFF_MINILM_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/oxidiff/all-MiniLM-L6-v2"),
    };
    (dir.join(TOKENIZER_JSON).is_file() && dir.join("model.safetensors").is_file()).then_some(dir)
}

/// `value` as one line of JSON.
fn json_line(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The model's tokens by id, the way the tokenizer serialises them.
fn model_json(tokenizer: &TextTokenizer) -> Result<Map<String, Value>, ModelError> {
    match serde_json::to_value(tokenizer.inner().get_model()) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) | Err(_) => Err(ModelError::file(
            tokenizer.source(),
            "its model does not serialise to a JSON object",
        )),
    }
}

/// The model's vocabulary sorted by id.
fn vocab_by_id(model: &Map<String, Value>) -> Vec<(&str, u64)> {
    let mut vocab: Vec<(&str, u64)> = model
        .get("vocab")
        .and_then(Value::as_object)
        .map(|v| {
            v.iter()
                .filter_map(|(t, id)| Some((t.as_str(), id.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    vocab.sort_by_key(|&(_, id)| id);
    vocab
}

/// Writes what a `StableDiffusionPipeline`'s `tokenizer/` holds (see
/// [`TextTokenizer::save_pretrained`]); returns the files written.
pub(super) fn save_pretrained(
    tokenizer: &TextTokenizer,
    dir: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ModelError::file(dir, format!("cannot create the directory: {e}")))?;
    let model = model_json(tokenizer)?;
    let vocab = vocab_by_id(&model);
    let mut files: Vec<(&str, String)> = Vec::new();
    let (start, end, pad) = (
        tokenizer.start_token(),
        tokenizer.end_token(),
        tokenizer.pad_token(),
    );
    let (config, specials) = match tokenizer.kind() {
        TokenizerKind::ClipBpe => {
            // transformers writes vocab.json on one line, merges after a `#version` header.
            let mut vocab_text = String::from("{");
            for (i, (t, id)) in vocab.iter().enumerate() {
                if i > 0 {
                    vocab_text.push(',');
                }
                vocab_text.push_str(&json_line(&Value::from(*t)));
                vocab_text.push(':');
                vocab_text.push_str(&id.to_string());
            }
            vocab_text.push('}');
            files.push((VOCAB_JSON, vocab_text));
            let mut merges_text = String::from("#version: 0.2\n");
            for merge in model
                .get("merges")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let line = match merge {
                    Value::Array(pair) => pair
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                    Value::String(s) => s.clone(),
                    _ => continue,
                };
                merges_text.push_str(&line);
                merges_text.push('\n');
            }
            files.push((MERGES_TXT, merges_text));
            let unk = model
                .get("unk_token")
                .and_then(Value::as_str)
                .unwrap_or(CLIP_END);
            let specials = json!({
                "bos_token": start, "eos_token": end, "pad_token": pad, "unk_token": unk,
            });
            let config = json!({
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": tokenizer.context_length(),
                "bos_token": start, "eos_token": end, "pad_token": pad, "unk_token": unk,
                "do_lower_case": true,
                "add_prefix_space": false,
                "errors": "replace",
                "clean_up_tokenization_spaces": false,
            });
            (config, specials)
        }
        TokenizerKind::WordPiece => {
            let mut tokenizer_json = tokenizer.inner().clone();
            tokenizer_json.with_padding(None);
            let _ = tokenizer_json.with_truncation(None);
            let text = tokenizer_json.to_string(true).map_err(|e| {
                ModelError::file(tokenizer.source(), format!("cannot serialise: {e}"))
            })?;
            files.push((TOKENIZER_JSON, text));
            let mut vocab_txt = String::new();
            for (t, _) in &vocab {
                vocab_txt.push_str(t);
                vocab_txt.push('\n');
            }
            files.push((VOCAB_TXT, vocab_txt));
            let unk = match tokenizer.inner().get_model() {
                ModelWrapper::WordPiece(w) => w.unk_token.clone(),
                _ => "[UNK]".to_string(),
            };
            let lowercase = serde_json::to_value(tokenizer.inner().get_normalizer())
                .ok()
                .and_then(|n| n.get("lowercase").and_then(Value::as_bool))
                .unwrap_or(true);
            let mut specials = json!({
                "cls_token": start, "sep_token": end, "pad_token": pad, "unk_token": unk,
            });
            if tokenizer.inner().token_to_id("[MASK]").is_some() {
                specials["mask_token"] = json!("[MASK]");
            }
            let mut config = specials.clone();
            config["tokenizer_class"] = json!("BertTokenizer");
            config["model_max_length"] = json!(tokenizer.context_length());
            config["do_lower_case"] = json!(lowercase);
            (config, specials)
        }
    };
    files.push((TOKENIZER_CONFIG, pretty(&config)));
    files.push((SPECIAL_TOKENS_MAP, pretty(&specials)));
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        write_atomically(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}
