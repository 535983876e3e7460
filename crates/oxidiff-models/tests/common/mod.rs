//! What the parity tests share: the fixtures' folder and their `io.safetensors` files.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The tensors of a safetensors file a reference script wrote: float32 as floats, int64 as
/// ints, by name.
pub struct TensorFile {
    floats: HashMap<String, TensorData>,
    ints: HashMap<String, TensorData>,
}

impl TensorFile {
    /// # Panics
    /// A file that cannot be read or parsed, or a tensor of another dtype.
    pub fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut io = Self {
            floats: HashMap::new(),
            ints: HashMap::new(),
        };
        for (name, view) in file.tensors() {
            let shape = view.shape().to_vec();
            match view.dtype() {
                safetensors::Dtype::F32 => {
                    let values: Vec<f32> = view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect();
                    io.floats.insert(name, TensorData::new(values, shape));
                }
                safetensors::Dtype::I64 => {
                    let values: Vec<i64> = view
                        .data()
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                        .collect();
                    io.ints.insert(name, TensorData::new(values, shape));
                }
                other => panic!("{name}: unexpected dtype {other:?}"),
            }
        }
        io
    }

    /// The float32 tensor `name`.
    ///
    /// # Panics
    /// When there is none.
    pub fn float<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        let data = self
            .floats
            .get(name)
            .unwrap_or_else(|| panic!("no float {name}"));
        Tensor::from_data(data.clone(), device)
    }

    /// The int64 tensor `name`, if the file has one.
    pub fn int<const D: usize>(&self, name: &str, device: &Device) -> Option<Tensor<D, Int>> {
        self.ints
            .get(name)
            .map(|data| Tensor::from_data(data.clone(), device))
    }
}
