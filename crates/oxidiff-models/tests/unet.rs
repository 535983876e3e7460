use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use oxidiff_models::{ModelConfig, ModelError, Preset, TimeInjection};

/// The counts are the analytic counts of each architecture: "small" is DESIGN.md's benchmark
/// model, "ddpm-cifar10" the DDPM paper's 35.7M network, "latent-text" Stable Diffusion's
/// layout at a CPU's size.
#[test]
fn preset_parameter_counts() {
    let device = Device::flex();
    let expected = [
        (Preset::Tiny, 701_345),
        (Preset::Small, 6_472_195),
        (Preset::DdpmCifar10, 35_746_307),
        // diffusers' UNet2DConditionModel of its config.json counts the same (bench/peer/
        // diffusers_unet.py checks it on every run).
        (Preset::LatentText, 9_309_636),
    ];
    for (preset, count) in expected {
        let model = preset.config().init(&device);
        assert_eq!(model.num_params(), count, "preset {preset}");
    }
}

#[test]
fn forward_keeps_the_image_shape() {
    let device = Device::flex();
    for injection in [TimeInjection::Add, TimeInjection::ScaleShift] {
        let config = ModelConfig {
            time_injection: Some(injection),
            num_heads: Some(2),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let model = config.init(&device);
        let x = Tensor::<4>::random([3, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 500.0, 999.0], [3]), &device);
        let out = model.forward(x, t, None);
        assert_eq!(out.dims(), [3, 1, 8, 8]);
    }
}

#[test]
fn class_conditional_forward_uses_labels() {
    let device = Device::flex();
    let config = ModelConfig {
        num_classes: Some(10),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let mut model = config.init(&device);
    // Zero-initialised output layers hide every input at initialisation; give the first block's
    // second convolution and the output convolution random weights so the labels can show.
    let conv = |i, o| {
        Conv2dConfig::new([i, o], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device)
    };
    model.down[0].blocks[0].res.conv_2 = conv(32, 32);
    model.out_conv = conv(32, 1);
    let x = Tensor::<4>::random([2, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<1>::from_data(TensorData::new(vec![10.0f32, 10.0], [2]), &device);
    let labels =
        |a: i64, b: i64| Tensor::<1, Int>::from_data(TensorData::new(vec![a, b], [2]), &device);
    let same = model.forward(x.clone(), t.clone(), Some(labels(3, 3)));
    let other = model.forward(x, t, Some(labels(3, 7)));
    let same = same.into_data().try_to_vec::<f32>().unwrap();
    let other = other.into_data().try_to_vec::<f32>().unwrap();
    let half = same.len() / 2;
    assert_eq!(
        same[..half],
        other[..half],
        "item 0 has label 3 in both calls"
    );
    assert_ne!(same[half..], other[half..], "item 1 changes label 3 → 7");
}

#[test]
fn bad_overrides_name_the_key() {
    let cases: Vec<(ModelConfig, &str)> = vec![
        (
            ModelConfig {
                image_size: Some(12),
                channel_mult: Some(vec![1, 2, 2, 2]),
                ..Default::default()
            },
            "model.image_size",
        ),
        (
            ModelConfig {
                dropout: Some(1.5),
                ..Default::default()
            },
            "model.dropout",
        ),
        (
            ModelConfig {
                num_heads: Some(3),
                ..Default::default()
            },
            "model.num_heads",
        ),
        (
            ModelConfig {
                attention_resolutions: Some(vec![5]),
                ..Default::default()
            },
            "model.attention_resolutions",
        ),
        (
            ModelConfig {
                channel_mult: Some(vec![]),
                ..Default::default()
            },
            "model.channel_mult",
        ),
        (
            ModelConfig {
                model_channels: Some(0),
                ..Default::default()
            },
            "model.model_channels",
        ),
        (
            ModelConfig {
                num_classes: Some(0),
                ..Default::default()
            },
            "model.num_classes",
        ),
    ];
    for (config, key) in cases {
        let err: ModelError = config.resolve().unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with(key), "{message} should name {key}");
    }
}

/// The analytic FLOP count of `small` equals what torch's FlopCounterMode counts on the PyTorch
/// peer (convolutions, linear layers and attention matmuls; a multiply-add is 2 FLOPs):
/// `python bench/peer/torch_unet.py --steps 1 --warmup 0` prints "forward FLOPs / image
/// 3,174,891,520 (torch FlopCounterMode)" (torch 2.15; `pip install torch`, bench/README.md).
#[test]
fn small_forward_flops_match_torch_flop_counter() {
    let device = Device::flex();
    let config = Preset::Small.config();
    let model = config.init(&device);
    let flops = model.forward_flops(config.image_size);
    assert_eq!(flops.total(), 3_174_891_520);
    // Convolutions dominate, as the benchmark notes assume.
    assert!(flops.convolution as f64 > 0.8 * flops.total() as f64);
}
