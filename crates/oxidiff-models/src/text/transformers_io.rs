//! A transformers model directory: `config.json` next to `model.safetensors`, tensors named as
//! transformers' `state_dict()` names them: bare, or under a prefix (`text_model.` in a
//! `CLIPTextModel` saved before transformers 5, SD 1.x's among them; `bert.` where a task
//! model saved its BERT). Read and
//! written through the helpers every diffusers directory uses (burn-store's PyTorch adapters,
//! every tensor accounted for, atomic writes).

use std::path::{Path, PathBuf};

use burn::store::{KeyRemapper, ModuleSnapshot, ModuleStore, SafetensorsStore};
use serde_json::Value;

use crate::ModelError;
use crate::diffusers_io::{exact, load_weights_file, pytorch_leaf, save_model_files};

pub use crate::diffusers_io::CONFIG_JSON;

/// The weight file of a transformers directory.
pub const MODEL_FILE: &str = "model.safetensors";

/// The transformers release the parity tests ran against; written into `config.json`.
pub const TRANSFORMERS_VERSION: &str = "5.24.0";

/// `dir/config.json` parsed, and its path.
///
/// # Errors
/// A missing or unreadable file, or one that is not a JSON object.
pub fn read_config_json(dir: &Path) -> Result<(PathBuf, Value), ModelError> {
    let path = dir.join(CONFIG_JSON);
    let json = read_json(&path)?;
    if !json.is_object() {
        return Err(ModelError::file(&path, "not a JSON object"));
    }
    Ok((path, json))
}

/// The JSON in `path`.
pub(crate) fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::file(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| ModelError::file(path, format!("not JSON: {e}")))
}

/// The tensor names in the safetensors file `weights`.
pub(crate) fn tensor_names(weights: &Path) -> Result<Vec<String>, ModelError> {
    if !weights.is_file() {
        return Err(ModelError::file(
            weights,
            "missing (transformers' weight file)",
        ));
    }
    SafetensorsStore::from_file(weights)
        .keys()
        .map_err(|e| ModelError::file(weights, format!("unreadable: {e}")))
}

/// Buffers transformers kept in its files before 4.31 (SD 1.5's text encoder has
/// `text_model.embeddings.position_ids`) and ignores when loading: no module holds them.
fn is_saved_buffer(name: &str) -> bool {
    name.ends_with("embeddings.position_ids") || name.ends_with("embeddings.token_type_ids")
}

/// Fills `module` from `dir/model.safetensors`, where the tensor at module path `p` (with
/// PyTorch's leaf names) is named `file_name(p)`. The file's tensors for which `head` holds
/// (a task model's head, outside the base model) and old releases' buffers are left unused.
///
/// # Errors
/// A missing or unreadable file, or missing, extra or mis-shaped tensors (the first few named
/// as the file names them).
pub(crate) fn load_transformers_weights<M: ModuleSnapshot>(
    module: &mut M,
    dir: &Path,
    file_name: impl Fn(&str) -> String,
    head: impl Fn(&str) -> bool,
) -> Result<(), ModelError> {
    let weights = dir.join(MODEL_FILE);
    tensor_names(&weights)?;
    let remapper = remapper(module, &file_name, |burn, file| (file, burn));
    load_weights_file(
        module,
        &weights,
        remapper,
        |path| file_name(&pytorch_leaf(path)),
        |name| is_saved_buffer(name) || head(name),
    )
}

/// Writes `config` as `dir/config.json` and `module` as `dir/model.safetensors` (the tensor at
/// `p` named `file_name(p)`; `dir` created if needed), each atomically, as `save_pretrained`
/// would.
pub(crate) fn save_transformers_model<M: ModuleSnapshot>(
    dir: &Path,
    config: &Value,
    module: &M,
    file_name: impl Fn(&str) -> String,
) -> Result<(), ModelError> {
    let remapper = remapper(module, &file_name, |burn, file| (burn, file));
    save_model_files(
        dir,
        config,
        module,
        remapper,
        MODEL_FILE,
        &[("format", "pt")],
    )
}

/// A remapper renaming each of `module`'s tensors: `pair(burn, file)` gives `(from, to)`,
/// burn's side with PyTorch's leaf names (what the adapters match against).
fn remapper<M: ModuleSnapshot>(
    module: &M,
    file_name: impl Fn(&str) -> String,
    pair: impl Fn(String, String) -> (String, String),
) -> KeyRemapper {
    let patterns = module
        .collect(None, None, false)
        .into_iter()
        .map(|tensor| {
            let burn = pytorch_leaf(&tensor.name);
            let file = file_name(&burn);
            (burn, file)
        })
        // A tensor named alike in both needs no rename.
        .filter(|(burn, file)| burn != file)
        .map(|(burn, file)| {
            let (from, to) = pair(burn, file);
            (exact(&from), to)
        });
    KeyRemapper::from_pattern_iter(patterns).expect("escaped names are valid patterns")
}
