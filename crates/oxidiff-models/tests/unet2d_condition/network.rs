//! The network itself: the text conditions each image, the old UNet is unchanged without
//! cross-attention, parameters are counted exactly (SD 1.5's included), gradients flow.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use oxidiff_models::{
    ModelConfig, Preset, SpatialTransformer, SpatialTransformerSpec, TimeInjection, UNetConfig,
    unet_config_from_unet2d_condition_json,
};
use serde_json::{Value, json};

use super::{Redraw, diffusers_test_config, max_abs_diff, small_config, states};

#[test]
fn the_context_conditions_each_image_and_the_shapes_hold() {
    let device = Device::flex();
    let config = UNetConfig {
        num_classes: None,
        ..small_config()
    };
    let unet = config.init(&device).map(&mut Redraw(3));
    let x = Redraw(5).tensor([2, 3, 8, 8], 1.0, &device);
    let t = Tensor::<1>::from_data(TensorData::new(vec![10.0f32, 700.0], [2]), &device);
    let go = |context: Option<Tensor<3>>| {
        unet.forward_with_context(x.clone(), t.clone(), None, context)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let base = go(Some(states(2, 5, 6, &[1.0, 1.0], &device)));
    assert_eq!(base.len(), 2 * 3 * 8 * 8);
    // Item 1's caption changes item 1 only.
    let changed = go(Some(states(2, 5, 6, &[1.0, -2.0], &device)));
    let half = base.len() / 2;
    assert_eq!(base[..half], changed[..half]);
    assert_ne!(base[half..], changed[half..]);
    // Any length of states; none at all leaves cross-attention out.
    for tokens in [1, 9] {
        let out = unet.forward_with_context(
            x.clone(),
            t.clone(),
            None,
            Some(states(2, tokens, 6, &[1.0, 1.0], &device)),
        );
        assert_eq!(out.dims(), [2, 3, 8, 8]);
    }
    assert_ne!(go(None), base);
    assert_eq!(
        go(None),
        unet.forward(x.clone(), t.clone(), None)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    );

    // A fresh network starts as the identity in each transformer (zero proj_out).
    let fresh = config.init(&device);
    let h = Redraw(9).tensor([2, 8, 8, 8], 1.0, &device);
    let transformer = fresh.down[0].blocks[0].transformer.as_ref().unwrap();
    let context = states(2, 5, 6, &[1.0, 1.0], &device);
    assert_eq!(
        max_abs_diff(transformer.forward(h.clone(), Some(&context)), h),
        0.0
    );
}

#[test]
fn without_cross_attention_the_network_is_the_old_one() {
    let device = Device::flex();
    // tests/unet.rs's pinned counts.
    for (preset, count) in [(Preset::Tiny, 701_345), (Preset::Small, 6_472_195)] {
        let config = preset.config();
        assert_eq!(config.cross_attention_dim, None);
        let unet = config.init(&device);
        assert_eq!(unet.num_params(), count, "{preset}");
        assert!(unet.mid_attn.is_some() && unet.mid_transformer.is_none());
        let blocks = unet
            .down
            .iter()
            .flat_map(|l| &l.blocks)
            .chain(unet.up.iter().flat_map(|l| &l.blocks));
        assert!(blocks.clone().all(|b| b.transformer.is_none()));
        assert!(blocks.clone().any(|b| b.attn.is_some()));
        // A context is ignored.
        let unet = unet.map(&mut Redraw(1));
        let x = Redraw(2).tensor([1, config.in_channels, 8, 8], 1.0, &device);
        let t = Tensor::<1>::from_data(TensorData::new(vec![42.0f32], [1]), &device);
        if preset == Preset::Tiny {
            let plain = unet.forward(x.clone(), t.clone(), None);
            let with =
                unet.forward_with_context(x, t, None, Some(states(1, 3, 5, &[1.0], &device)));
            assert_eq!(max_abs_diff(plain, with), 0.0);
        }
    }
    // Old config files, without the new keys, still load, and write back unchanged.
    let old = serde_json::to_value(Preset::Small.config()).unwrap();
    for key in [
        "cross_attention_dim",
        "transformer_layers_per_block",
        "use_linear_projection",
        "heads_per_level",
    ] {
        assert!(
            old.get(key).is_none(),
            "{key} written for a UNet without cross-attention"
        );
    }
    let read: UNetConfig = serde_json::from_value(old).unwrap();
    assert_eq!(read, Preset::Small.config());
    let section: ModelConfig = serde_json::from_value(json!({
        "preset": "small",
        "cross_attention_dim": 32,
        "heads_per_level": [1, 2, 4],
    }))
    .unwrap();
    let resolved = section.resolve().unwrap();
    assert_eq!(resolved.cross_attention_dim, Some(32));
    assert_eq!(ModelConfig::exactly(&resolved).resolve().unwrap(), resolved);
}

/// runwayml/stable-diffusion-v1-5's `unet/config.json`.
fn sd15_config_json() -> Value {
    json!({
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": "0.6.0",
        "act_fn": "silu",
        "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": false,
        "cross_attention_dim": 768,
        "down_block_types": [
            "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"
        ],
        "downsample_padding": 1,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": [
            "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"
        ]
    })
}

/// The count diffusers 0.42.1 gives `UNet2DConditionModel(cross_attention_dim=768)`; counted
/// from the config by the footprint walk, which the other tests check against built networks.
#[test]
fn stable_diffusion_1_5_has_859_520_964_parameters() {
    let config =
        unet_config_from_unet2d_condition_json(&sd15_config_json(), Path::new("config.json"))
            .unwrap();
    assert_eq!(config.attention_resolutions, [64, 32, 16]);
    assert_eq!(config.num_heads, 8);
    assert_eq!(config.cross_attention_dim, Some(768));
    assert_eq!(config.footprint().parameters, 859_520_964.0);
    // diffusers' defaults alone are SD 1.x at cross_attention_dim 1280.
    let defaults = json!({"_class_name": "UNet2DConditionModel", "sample_size": 64});
    let config =
        unet_config_from_unet2d_condition_json(&defaults, Path::new("config.json")).unwrap();
    assert_eq!(config.footprint().parameters, 872_300_484.0);
}

#[test]
fn the_footprint_counts_what_is_built() {
    let device = Device::flex();
    let variants = [
        small_config(),
        UNetConfig {
            use_linear_projection: true,
            transformer_layers_per_block: 3,
            ..small_config()
        },
        UNetConfig {
            heads_per_level: Some(vec![1, 4]),
            time_injection: TimeInjection::ScaleShift,
            attention_resolutions: vec![4],
            ..small_config()
        },
        diffusers_test_config(),
    ];
    for config in variants {
        config.validate().unwrap();
        let unet = config.init(&device);
        assert_eq!(
            config.footprint().parameters,
            unet.num_params() as f64,
            "{config:?}"
        );
        let flops = unet.forward_flops(config.image_size);
        assert!(flops.attention > 0 && flops.linear > 0);
    }
}

#[test]
fn invalid_cross_attention_configs_name_the_key() {
    let cases: Vec<(UNetConfig, &str)> = vec![
        (
            UNetConfig {
                cross_attention_dim: Some(0),
                ..small_config()
            },
            "model.cross_attention_dim",
        ),
        (
            UNetConfig {
                transformer_layers_per_block: 0,
                ..small_config()
            },
            "model.transformer_layers_per_block",
        ),
        (
            UNetConfig {
                cross_attention_dim: None,
                transformer_layers_per_block: 2,
                ..small_config()
            },
            "model.transformer_layers_per_block",
        ),
        (
            UNetConfig {
                cross_attention_dim: None,
                use_linear_projection: true,
                ..small_config()
            },
            "model.use_linear_projection",
        ),
        (
            UNetConfig {
                heads_per_level: Some(vec![2]),
                ..small_config()
            },
            "model.heads_per_level",
        ),
        (
            UNetConfig {
                heads_per_level: Some(vec![3, 2]),
                ..small_config()
            },
            "model.heads_per_level",
        ),
    ];
    for (config, key) in cases {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with(key), "{err}");
    }
}

#[test]
fn gradients_reach_the_text_states_and_every_projection() {
    let device = Device::flex().autodiff();
    device.seed(3);
    for linear_projection in [false, true] {
        let spec = SpatialTransformerSpec {
            channels: 8,
            heads: 2,
            context_dim: 6,
            layers: 1,
            norm_groups: 4,
            linear_projection,
        };
        let transformer = SpatialTransformer::new(&spec, &device).map(&mut Redraw(4));
        let x = Tensor::<4>::random([2, 8, 4, 4], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let context =
            Tensor::<3>::random([2, 3, 6], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let out = transformer.forward(x.clone(), Some(&context));
        let grads = (out.clone() * out).sum().backward();
        let norm = |t: Tensor<2>| t.abs().sum().into_scalar::<f32>();
        let block = &transformer.transformer_blocks[0];
        assert!(norm(block.attn2.to_k.weight.grad(&grads).unwrap()) > 0.0);
        assert!(norm(block.attn1.to_q.weight.grad(&grads).unwrap()) > 0.0);
        assert!(norm(block.ff.proj.weight.grad(&grads).unwrap()) > 0.0);
        let context_grad = context.grad(&grads).unwrap();
        assert!(context_grad.abs().sum().into_scalar::<f32>() > 0.0);
        assert!(x.grad(&grads).unwrap().abs().sum().into_scalar::<f32>() > 0.0);
    }
}
