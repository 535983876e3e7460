//! Reading a transformers `config.json`: the typed keys both encoders' configs take, each with
//! transformers' default where absent, every refusal naming the file, the key and its value.
//! Keys a config does not read (`_name_or_path`, `torch_dtype`, `use_cache`, …) change nothing
//! these encoders compute and are passed over, as transformers' own `PreTrainedConfig` keeps
//! them without use.

use std::path::Path;

use serde_json::Value;

use super::layers::Activation;
use crate::{ConfigKeys, ModelError};

pub(crate) type Keys<'a> = ConfigKeys<'a, ModelError>;

fn file_error(path: &Path, message: String) -> ModelError {
    ModelError::file(path, message)
}

/// The keys of `json`, read from `source`.
pub(crate) fn keys<'a>(json: &'a Value, source: &'a Path) -> Result<Keys<'a>, ModelError> {
    ConfigKeys::new(json, source, file_error)
}

/// A size (at least 1), `default` where absent.
pub(crate) fn size(keys: &Keys<'_>, key: &str, default: usize) -> Result<usize, ModelError> {
    match keys.usize(key, Some(default))? {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(keys.refuse(key, "must be at least 1")),
    }
}

/// A probability in [0, 1) (a dropout rate), `default` where absent or null.
pub(crate) fn probability(keys: &Keys<'_>, key: &str, default: f64) -> Result<f64, ModelError> {
    if keys.object().get(key).is_some_and(Value::is_null) {
        return Ok(default);
    }
    let p = keys.number(key, default)?;
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(keys.refuse(key, "must be in [0, 1)"))
    }
}

/// A positive number (a LayerNorm's ε), `default` where absent or null.
pub(crate) fn positive(keys: &Keys<'_>, key: &str, default: f64) -> Result<f64, ModelError> {
    if keys.object().get(key).is_some_and(Value::is_null) {
        return Ok(default);
    }
    let v = keys.number(key, default)?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(keys.refuse(key, "must be positive"))
    }
}

/// `hidden_act`, `default` where absent.
pub(crate) fn activation(keys: &Keys<'_>, default: Activation) -> Result<Activation, ModelError> {
    const KEY: &str = "hidden_act";
    match keys.get(KEY, Value::from(default.name())) {
        Value::String(name) => Activation::from_name(&name).ok_or_else(|| {
            keys.refuse(
                KEY,
                format!(
                    "is not supported (oxidiff has {}; other activations have no \
                     implementation here)",
                    Activation::names()
                ),
            )
        }),
        _ => Err(keys.refuse(KEY, "is not an activation's name")),
    }
}

/// Refuses a config whose `model_type` is not `model_type` (where present) or whose
/// `architectures` name a class `accepts` refuses (`classes` says which it takes): another
/// model's weights and keys.
pub(crate) fn check_model(
    keys: &Keys<'_>,
    model_type: &str,
    accepts: impl Fn(&str) -> bool,
    classes: &str,
) -> Result<(), ModelError> {
    match keys.object().get("model_type") {
        None => {}
        Some(Value::String(t)) if t == model_type => {}
        Some(_) => {
            return Err(keys.refuse(
                "model_type",
                format!("is not {model_type:?}: this is another model's config.json"),
            ));
        }
    }
    if let Some(architectures) = keys.object().get("architectures") {
        let names: Option<Vec<&str>> = match architectures {
            Value::Null => Some(Vec::new()),
            Value::Array(items) => items.iter().map(Value::as_str).collect(),
            _ => None,
        };
        match names {
            Some(names) if names.iter().all(|n| accepts(n)) => {}
            _ => {
                return Err(keys.refuse(
                    "architectures",
                    format!("is not supported: oxidiff reads {classes}"),
                ));
            }
        }
    }
    Ok(())
}
