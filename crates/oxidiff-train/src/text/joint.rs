//! A UNet and the text encoder it attends to, trained together (`text.train`, and always for
//! `text.encoder = "scratch"`: latent-diffusion trains its BERT from scratch with the UNet).
//! One module holds both, so one optimiser, one EMA and one checkpoint file cover them; the
//! encoder's own learning rate is a scale on its update ([`scale_update`]).

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxidiff_models::UNet;
use oxidiff_models::text::{TextEncoder, TextTokenizer};

use super::TextSource;
use crate::checkpoint::load_weights;
use crate::config::RunConfig;
use crate::error::TrainError;

/// The UNet and its trained text encoder.
#[derive(Module, Debug)]
pub struct JointModel {
    pub unet: UNet,
    pub text_encoder: TextEncoder,
}

impl JointModel {
    /// The encoder's last hidden states of `captions` (tokenized by `tokenizer`), with their
    /// gradient on an autodiff device. No padding mask, as the frozen encoders and diffusers'
    /// pipelines call them.
    ///
    /// # Shapes
    /// - `captions`: `[B]`; returns `[B, L, D]`
    ///
    /// # Errors
    /// A caption the tokenizer refuses.
    pub fn encode(
        &self,
        tokenizer: &TextTokenizer,
        captions: &[String],
        device: &Device,
    ) -> Result<Tensor<3>, TrainError> {
        let ids = token_ids(tokenizer, captions, device)?;
        Ok(self.text_encoder.forward(ids, None).last_hidden_state)
    }
}

/// `captions` as a tensor of token ids.
///
/// # Shapes
/// - `captions`: `[B]`; returns `[B, L]`
///
/// # Errors
/// A caption the tokenizer refuses.
pub(crate) fn token_ids<S: AsRef<str>>(
    tokenizer: &TextTokenizer,
    captions: &[S],
    device: &Device,
) -> Result<Tensor<2, Int>, TrainError> {
    let tokens = tokenizer.encode_batch(captions)?;
    let shape = [tokens.batch_size(), tokens.context_length];
    let ids: Vec<i64> = tokens.ids.iter().map(|&x| i64::from(x)).collect();
    Ok(Tensor::from_data(TensorData::new(ids, shape), device))
}

/// A run's joint model as its config describes it, with the encoder as it starts (random for
/// `"scratch"`, the pretrained weights otherwise), on `device`.
///
/// # Errors
/// A config without text, or an encoder that cannot be read.
fn initial_joint_model(config: &RunConfig, device: &Device) -> Result<JointModel, TrainError> {
    let source = config.text_source()?.ok_or_else(|| TrainError::Config {
        origin: "text.train".into(),
        message: "trains a text encoder, but text.encoder is unset".into(),
    })?;
    Ok(JointModel {
        unet: config.unet()?.init(device),
        text_encoder: source.load_encoder(device)?,
    })
}

/// The UNet, the trained encoder and its source from a joint run's weight file (`model.bpk`
/// or `ema.bpk`).
///
/// # Errors
/// The file cannot be read or does not match the config.
pub fn load_joint(
    config: &RunConfig,
    path: &Path,
    device: &Device,
) -> Result<(UNet, TextEncoder, TextSource), TrainError> {
    let skeleton = initial_joint_model(config, device)?;
    let joint = load_weights(skeleton, path)?;
    let source = config
        .text_source()?
        .expect("initial_joint_model checked it");
    Ok((joint.unet, joint.text_encoder, source))
}

/// Scales the update an optimiser step made to `after`'s parameters (from their values in
/// `before`) by `factor`: θ ← θ_before + factor · (θ_after − θ_before). Every optimiser here
/// (Adam, AdamW, RMSprop, SGD with momentum) makes an update proportional to its learning rate
/// and keeps moments that do not depend on it, so this is the update of a learning rate
/// `factor` times the step's — a parameter group of its own.
pub fn scale_update<M: Module>(before: &M, after: M, factor: f64) -> M {
    if factor == 1.0 {
        return after;
    }
    let mut old = Collect(HashMap::new());
    before.visit(&mut old);
    after.map(&mut Rescale {
        before: old.0,
        factor,
    })
}

/// Every float parameter's values, flattened, by id.
struct Collect(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0
            .insert(param.id, param.val().detach().flatten(0, D - 1));
    }
}

struct Rescale {
    before: HashMap<ParamId, Tensor<1>>,
    factor: f64,
}

impl ModuleMapper for Rescale {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(old) = self.before.remove(&param.id) else {
            return param;
        };
        let factor = self.factor;
        param.map(|new| {
            let tracked = new.is_require_grad();
            let old: Tensor<D> = old.reshape(new.shape());
            // A parameter is a leaf of the next step's graph, as the optimiser leaves it.
            let scaled = (old.clone() + (new.detach() - old).mul_scalar(factor)).detach();
            if tracked {
                scaled.require_grad()
            } else {
                scaled
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn weights(linear: &Linear) -> Vec<f32> {
        linear.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn scale_update_scales_the_step_from_before_to_after() {
        let device = Device::flex();
        let before = LinearConfig::new(3, 2).init(&device);
        let mut after = before.clone();
        after.weight = after.weight.map(|w| w.add_scalar(1.0));
        let half = scale_update(&before, after.clone(), 0.5);
        for (h, b) in weights(&half).iter().zip(weights(&before)) {
            assert!((h - (b + 0.5)).abs() < 1e-6, "{h} vs {b} + 0.5");
        }
        assert_eq!(
            weights(&scale_update(&before, after.clone(), 1.0)),
            weights(&after)
        );
        assert_eq!(
            weights(&scale_update(&before, after, 0.0)),
            weights(&before)
        );
    }
}
