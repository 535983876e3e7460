//! What every diffusers model directory shares: `config.json` next to
//! `diffusion_pytorch_model.safetensors` with PyTorch layouts (linear weights `[out, in]`,
//! norms' `weight`/`bias`), read and written through burn-store's PyTorch adapters. Each file
//! is written under a temporary name, synced and renamed, so a crash never leaves half a file
//! behind a complete name.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use serde_json::{Map, Value};

use crate::ModelError;

/// The diffusers release whose directories oxidiff reads and writes (the parity tests'
/// reference).
pub const DIFFUSERS_VERSION: &str = "0.42.1";
pub const CONFIG_JSON: &str = "config.json";
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// The text of `dir/config.json` and its path.
pub(crate) fn read_config(dir: &Path) -> Result<(PathBuf, String), ModelError> {
    let path = dir.join(CONFIG_JSON);
    let text =
        std::fs::read_to_string(&path).map_err(|e| ModelError::file(&path, e.to_string()))?;
    Ok((path, text))
}

/// Reads a diffusers config's keys (a model's `config.json`, a pipeline's
/// `scheduler_config.json`), with diffusers' defaults for absent ones. Every refusal names the
/// file (`source`), the key and its value, as the error `error` makes of the file and the
/// message (each crate's error for a bad file).
pub struct ConfigKeys<'a, E> {
    object: &'a Map<String, Value>,
    source: &'a Path,
    error: fn(&Path, String) -> E,
}

impl<'a, E> ConfigKeys<'a, E> {
    /// The keys of `json`, read from `source`.
    ///
    /// # Errors
    /// `json` is not a JSON object.
    pub fn new(
        json: &'a Value,
        source: &'a Path,
        error: fn(&Path, String) -> E,
    ) -> Result<Self, E> {
        match json.as_object() {
            Some(object) => Ok(Self {
                object,
                source,
                error,
            }),
            None => Err(error(source, "not a JSON object".to_string())),
        }
    }

    /// Every key and value as the file has them.
    pub fn object(&self) -> &'a Map<String, Value> {
        self.object
    }

    /// `key`'s value, or `default` where it is absent.
    pub fn get(&self, key: &str, default: Value) -> Value {
        self.object.get(key).cloned().unwrap_or(default)
    }

    /// An error naming `key` and its value.
    pub fn refuse(&self, key: &str, why: impl std::fmt::Display) -> E {
        let value = self.object.get(key).map_or_else(
            || "absent (diffusers' default)".to_string(),
            Value::to_string,
        );
        (self.error)(self.source, format!("{key} = {value} {why}"))
    }

    /// Refuses `key` unless it is `only` (or absent, with `only` diffusers' default); `why`
    /// says why oxidiff has that value alone.
    ///
    /// # Errors
    /// `key` holds another value.
    pub fn require(&self, key: &str, only: Value, why: &str) -> Result<(), E> {
        if self.get(key, only.clone()) == only {
            Ok(())
        } else {
            Err(self.refuse(
                key,
                format!("is not supported: {why} (only {key} = {only} is)"),
            ))
        }
    }

    /// [`Self::require`] for a number, compared as one (`1` and `1.0` alike).
    ///
    /// # Errors
    /// `key` holds another value, or no number.
    pub fn require_number(&self, key: &str, only: f64, why: &str) -> Result<(), E> {
        if self.number(key, only)? == only {
            Ok(())
        } else {
            Err(self.refuse(
                key,
                format!("is not supported: {why} (only {key} = {only} is)"),
            ))
        }
    }

    /// A number, `default` where absent.
    ///
    /// # Errors
    /// `key` holds no number.
    pub fn number(&self, key: &str, default: f64) -> Result<f64, E> {
        match self.object.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.refuse(key, "is not a number")),
        }
    }

    /// A non-negative integer; `None` for null (or absent with no default).
    ///
    /// # Errors
    /// `key` holds something else.
    pub fn usize(&self, key: &str, default: Option<usize>) -> Result<Option<usize>, E> {
        match self.object.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.refuse(key, "is not a non-negative integer")),
        }
    }

    /// A list of non-negative integers, `default` where absent.
    ///
    /// # Errors
    /// `key` holds something else.
    pub fn usizes(&self, key: &str, default: &[usize]) -> Result<Vec<usize>, E> {
        match self.object.get(key) {
            None => Ok(default.to_vec()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().map(|n| n as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.refuse(key, "is not a list of non-negative integers")),
            Some(_) => Err(self.refuse(key, "is not a list of non-negative integers")),
        }
    }

    /// A list of block names, `default` where absent.
    ///
    /// # Errors
    /// `key` holds something else.
    pub fn strings(&self, key: &str, default: &[&str]) -> Result<Vec<String>, E> {
        match self.object.get(key) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.refuse(key, "is not a list of block names")),
            Some(_) => Err(self.refuse(key, "is not a list of block names")),
        }
    }
}

/// Fills `module` from `dir`'s weight file. `remapper` renames the file's tensors to the
/// module's paths (with PyTorch's leaf names); `file_name` names a module path as the file
/// would, for the report.
///
/// # Errors
/// A missing or unreadable file, or missing, extra or mis-shaped tensors (the first few named).
pub(crate) fn load_weights<M: ModuleSnapshot>(
    module: &mut M,
    dir: &Path,
    remapper: KeyRemapper,
    file_name: impl Fn(&str) -> String,
) -> Result<(), ModelError> {
    let weights = dir.join(WEIGHTS_FILE);
    if !weights.is_file() {
        return Err(ModelError::file(
            &weights,
            "missing (diffusers' weight file)",
        ));
    }
    load_weights_file(module, &weights, remapper, file_name, |_| false)
}

/// [`load_weights`] from the safetensors file `weights` (a transformers directory's
/// `model.safetensors`, say); the file's tensors for which `ignored` holds (as `remapper` names
/// them) are left unused without complaint: buffers such as transformers' `position_ids`,
/// which older releases saved and no module holds.
pub(crate) fn load_weights_file<M: ModuleSnapshot>(
    module: &mut M,
    weights: &Path,
    remapper: KeyRemapper,
    file_name: impl Fn(&str) -> String,
    ignored: impl Fn(&str) -> bool,
) -> Result<(), ModelError> {
    let mut store = SafetensorsStore::from_file(weights)
        .with_from_adapter(PyTorchToBurnAdapter)
        .remap(remapper)
        // Mismatches come back in the result, to be reported with the file's names below.
        .validate(false)
        .allow_partial(true);
    let result = module
        .load_from(&mut store)
        .map_err(|e| ModelError::file(weights, format!("unreadable: {e}")))?;
    let unused: Vec<&String> = result.unused.iter().filter(|p| !ignored(p)).collect();
    let mut problems: Vec<String> = Vec::new();
    problems.extend(result.errors.iter().take(3).map(|e| match e {
        // Shapes in burn's layout: a linear weight shows as [in, out].
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => format!(
            "`{}` has shape {:?} where config.json needs {:?} (burn's layout)",
            file_name(path),
            found.as_slice(),
            expected.as_slice()
        ),
        other => other.to_string(),
    }));
    problems.extend(
        result
            .missing
            .iter()
            .take(3)
            .map(|(p, _)| format!("missing `{}`", file_name(p))),
    );
    problems.extend(unused.iter().take(3).map(|p| format!("unexpected `{p}`")));
    if problems.is_empty() {
        return Ok(());
    }
    let counts = format!(
        "{} missing, {} unexpected, {} unusable",
        result.missing.len(),
        unused.len(),
        result.errors.len()
    );
    Err(ModelError::file(
        weights,
        format!(
            "does not match config.json's architecture ({counts}): {}",
            problems.join("; ")
        ),
    ))
}

/// Writes `config` as `dir/config.json` and `module` as `dir/diffusion_pytorch_model.safetensors`
/// (`dir` created if needed), each atomically; `remapper` renames the module's paths (with
/// PyTorch's leaf names) to the file's.
pub(crate) fn save_model<M: ModuleSnapshot>(
    dir: &Path,
    config: &serde_json::Value,
    module: &M,
    remapper: KeyRemapper,
) -> Result<(), ModelError> {
    save_model_files(dir, config, module, remapper, WEIGHTS_FILE, &[])
}

/// [`save_model`] with the weights in `dir/weights_name` (transformers' `model.safetensors`,
/// say) and `metadata` added to the file's header (transformers 4 refuses a file whose
/// `format` is not `pt`).
pub(crate) fn save_model_files<M: ModuleSnapshot>(
    dir: &Path,
    config: &serde_json::Value,
    module: &M,
    remapper: KeyRemapper,
    weights_name: &str,
    metadata: &[(&str, &str)],
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::file(dir, e.to_string()))?;
    // burn-store saves a file atomically already (a scratch sibling, synced, renamed).
    let weights = dir.join(weights_name);
    let mut store = SafetensorsStore::from_file(&weights)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remapper)
        .overwrite(true);
    for (key, value) in metadata {
        store = store.metadata(*key, *value);
    }
    module
        .save_into(&mut store)
        .map_err(|e| ModelError::file(&weights, format!("cannot write: {e}")))?;
    let text = serde_json::to_string_pretty(config).expect("a JSON value serialises");
    write_atomically(&dir.join(CONFIG_JSON), text.as_bytes())
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it into place; on
/// failure the temporary file is removed and `path` is untouched.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::file(path, format!("cannot write: {e}")));
    }
    // The rename itself is durable once the directory is synced; not every platform can open
    // a directory for that, and the file is complete either way.
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A regular expression matching exactly `name` (tensor names hold no other metacharacter
/// than `.`, but escape any).
pub(crate) fn exact(name: &str) -> String {
    let mut pattern = String::with_capacity(name.len() + 8);
    pattern.push('^');
    for c in name.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('$');
    pattern
}

/// `path` with PyTorch's names for a norm's parameters (burn's `gamma`/`beta` are PyTorch's
/// `weight`/`bias`; no other burn parameter has those names).
pub(crate) fn pytorch_leaf(path: &str) -> String {
    if let Some(module) = path.strip_suffix(".gamma") {
        format!("{module}.weight")
    } else if let Some(module) = path.strip_suffix(".beta") {
        format!("{module}.bias")
    } else {
        path.to_string()
    }
}
