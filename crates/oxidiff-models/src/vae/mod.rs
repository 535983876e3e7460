//! The KL autoencoder of latent ("Stable") diffusion, laid out as diffusers' `AutoencoderKL`
//! so that every parameter's path is diffusers' tensor name (`encoder.down_blocks.0.resnets.0
//! .conv1.weight`, `encoder.mid_block.attentions.0.to_q.weight`, `quant_conv.bias`, …).

mod blocks;
mod config;
mod diffusers;
mod discriminator;
mod footprint;
mod model;
mod posterior;

pub use blocks::{Downsample2D, ResnetBlock2D, UNetMidBlock2D, Upsample2D, VaeAttention};
pub use config::AutoencoderKLConfig;
pub use diffusers::{
    CONFIG_JSON, WEIGHTS_FILE, load_diffusers_autoencoder, save_diffusers_autoencoder,
};
pub use discriminator::{
    BatchStatNorm, DiscriminatorLayer, NLayerDiscriminator, NLayerDiscriminatorConfig,
};
pub use model::{AutoencoderKL, Decoder, DownEncoderBlock2D, Encoder, UpDecoderBlock2D};
pub use posterior::DiagonalGaussian;

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;

    /// diffusers' `AutoencoderKL` with SD's config has 83,653,863 parameters
    /// (`sum(p.numel() for p in AutoencoderKL(**sd_vae_config).parameters())`).
    #[test]
    fn stable_diffusions_autoencoder_has_its_parameter_count() {
        let config = AutoencoderKLConfig::stable_diffusion();
        config.validate().unwrap();
        assert_eq!(config.downsampling_factor(), 8);
        assert_eq!(config.init(&Device::flex()).num_params(), 83_653_863);
        assert_eq!(config.footprint().parameters, 83_653_863.0);
        for config in [
            AutoencoderKLConfig::small(1),
            AutoencoderKLConfig::new(vec![8, 16, 16], 2, 3),
        ] {
            let config = AutoencoderKLConfig {
                norm_num_groups: 4,
                ..config
            };
            let built = config.init(&Device::flex()).num_params() as f64;
            assert_eq!(config.footprint().parameters, built, "{config:?}");
        }
    }

    #[test]
    fn the_small_autoencoder_encodes_by_four_and_decodes_back() {
        let device = Device::flex();
        let config = AutoencoderKLConfig::small(3);
        config.validate().unwrap();
        let vae = config.init(&device);
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Uniform(-1.0, 1.0), &device);
        let posterior = vae.encode(x);
        assert_eq!(posterior.mean.dims(), [2, 4, 8, 8]);
        let kl: Vec<f32> = posterior.kl().into_data().try_to_vec().unwrap();
        assert!(kl.iter().all(|&v| v.is_finite() && v >= 0.0), "{kl:?}");
        let z = posterior.sample(Tensor::random(
            [2, 4, 8, 8],
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        assert_eq!(vae.decode(z).dims(), [2, 3, 32, 32]);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let mut config = AutoencoderKLConfig::small(1);
        config.block_out_channels = vec![32, 40];
        config.down_block_types.truncate(2);
        config.up_block_types.truncate(2);
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("block_out_channels") && err.contains("40"),
            "{err}"
        );
        let err = AutoencoderKLConfig::small(1)
            .check_image_size(30)
            .unwrap_err()
            .to_string();
        assert!(err.contains("factor 4"), "{err}");
    }
}
