//! The memory a run will need, estimated from its config before anything is allocated, and
//! checked against the machine's: a size that cannot fit is refused with the key to change,
//! instead of aborting the process (`memory allocation of N bytes failed`) half-way into a new
//! run directory.

use oxidiff_models::{Footprint, UNetConfig};

use crate::config::{OptimizerKind, TrainConfig};
use crate::error::TrainError;

/// Bytes of one `f32`.
pub(crate) const F32: f64 = 4.0;

/// Bytes one image takes while a sampler draws it: the network's forward activations beside
/// the sampler's x_t, x̂₀, noise and output, in f32.
pub fn sampling_bytes_per_image(unet: &UNetConfig) -> f64 {
    let image = (unet.in_channels * unet.image_size * unet.image_size) as f64;
    F32 * (unet.footprint().inference_activations_per_image + 4.0 * image)
}

/// One part of the estimate: what it is, the config key that sizes it, and its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPart {
    /// What occupies the memory, in words ("activations of one training step").
    pub what: &'static str,
    /// The config key and value that size it, as a user would change it
    /// (`train.batch_size = 64`).
    pub key: String,
    /// How to bring it down, in words.
    pub remedy: &'static str,
    pub bytes: f64,
}

/// The memory a run needs at its peak, by part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryEstimate {
    pub parts: Vec<MemoryPart>,
}

impl MemoryEstimate {
    /// What training any network of `footprint` takes: its weights with their gradients, EMA,
    /// optimiser moments (and the copy a rollback returns to), and the activations one step
    /// keeps for its backward pass. `network` names the keys that size the network.
    pub fn for_training(footprint: &Footprint, train: &TrainConfig, network: String) -> Self {
        // Moment buffers per weight: Adam's two, RMSprop's square average and momentum, SGD's
        // momentum.
        let moments = match train.optimizer {
            OptimizerKind::Sgd => 1.0,
            _ => 2.0,
        };
        let rollback = if train.max_rollbacks > 0 {
            2.0 + moments
        } else {
            0.0
        };
        let mut estimate = Self::default();
        estimate.add(MemoryPart {
            what: "the weights, gradients, EMA and optimiser state",
            key: network,
            remedy: "choose a smaller network",
            bytes: footprint.parameters * F32 * (3.0 + moments + rollback),
        });
        // Backward keeps the activations, and its own temporaries add about half again.
        estimate.add(MemoryPart {
            what: "the activations of one training step",
            key: format!("train.batch_size = {}", train.batch_size),
            remedy: "lower train.batch_size (raise train.grad_accum_steps to keep the images per \
                     step)",
            bytes: 1.5 * train.batch_size as f64 * footprint.train_activations_per_image * F32,
        });
        estimate
    }

    pub fn add(&mut self, part: MemoryPart) {
        self.parts.push(part);
    }

    pub fn total_bytes(&self) -> f64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// `Err` naming the largest part's key when the total exceeds `available` bytes.
    pub fn check(&self, available: u64) -> Result<(), TrainError> {
        let total = self.total_bytes();
        if total.is_finite() && total <= available as f64 {
            return Ok(());
        }
        let largest = self
            .parts
            .iter()
            .max_by(|a, b| a.bytes.total_cmp(&b.bytes))
            .expect("an estimate has parts");
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| format!("{} ({}): {}", p.what, p.key, human_bytes(p.bytes)))
            .collect();
        Err(TrainError::Memory {
            message: format!(
                "this config needs about {}, more than this machine's {} of memory; most of it \
                 is {} with {}: {}. In all: {}",
                human_bytes(total),
                human_bytes(available as f64),
                largest.what,
                largest.key,
                largest.remedy,
                parts.join("; ")
            ),
        })
    }
}

/// The machine's physical memory in bytes (`MemTotal` of `/proc/meminfo`); `None` where it
/// cannot be read, and then nothing is refused.
pub fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `1.5 GiB`, `23.43 GiB`: binary units, two decimals at most.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if !bytes.is_finite() {
        return "more bytes than can be counted".into();
    }
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit + 1 == UNITS.len() && value >= 1024.0 {
        return format!("{:.1e} B", bytes);
    }
    let digits = format!("{value:.2}");
    let digits = digits.trim_end_matches('0').trim_end_matches('.');
    format!("{digits} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(what: &'static str, key: &str, bytes: f64) -> MemoryPart {
        MemoryPart {
            what,
            key: key.into(),
            remedy: "lower it",
            bytes,
        }
    }

    #[test]
    fn the_largest_part_is_named_when_it_does_not_fit() {
        let mut estimate = MemoryEstimate::default();
        estimate.add(part("weights", "model.model_channels = 32", 1e6));
        estimate.add(part("activations", "train.batch_size = 100000000", 1e15));
        assert!(estimate.check(u64::MAX).is_ok());
        let message = estimate.check(8 << 30).unwrap_err().to_string();
        assert!(
            message.contains("train.batch_size = 100000000") && message.contains("8 GiB"),
            "{message}"
        );
        estimate.add(part(
            "schedule",
            "diffusion.num_train_timesteps = 1",
            f64::INFINITY,
        ));
        assert!(estimate.check(u64::MAX).is_err());
    }

    #[test]
    fn bytes_in_words() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(8.0 * (1u64 << 30) as f64), "8 GiB");
    }
}
