//! `--device`: the backend is chosen at run time among those this binary was built with.

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// burn's `flex` backend: pure Rust, multi-threaded (always built).
    Cpu,
    /// wgpu on whichever graphics API the system has (build with `--features wgpu`).
    Wgpu,
    /// wgpu pinned to Vulkan (build with `--features vulkan`).
    Vulkan,
    /// CUDA (build with `--features cuda`; its build downloads an LLVM bundle once).
    Cuda,
}

impl DeviceArg {
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceArg::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(feature = "vulkan")]
            DeviceArg::Vulkan => Ok(Device::vulkan(Default::default())),
            #[cfg(feature = "cuda")]
            DeviceArg::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => bail!(
                "--device {}: this oxidiff was built without that backend; rebuild with `cargo build --release --features {}`",
                other.name(),
                other.name()
            ),
        }
    }

    /// Makes this backend burn's default device for the whole process.
    ///
    /// burn materialises some state (a loaded optimiser record) on `Device::default()`, which
    /// would otherwise pick a GPU backend whenever one is compiled in.
    pub fn make_default(self) {
        let burn_name = match self {
            DeviceArg::Cpu => "flex".to_owned(),
            other => other.name(),
        };
        // SAFETY: called at the start of `main`, before any other thread exists.
        unsafe { std::env::set_var("BURN_DEVICE", burn_name) };
    }

    /// The backend's name on the command line (`--device cpu`), from clap's `ValueEnum`.
    pub fn name(self) -> String {
        self.to_possible_value()
            .expect("every backend is a possible value")
            .get_name()
            .to_owned()
    }
}
