//! Parity with transformers' text encoders: a tiny random `CLIPTextModel` saved by the real
//! transformers (`tests/fixtures/tiny_clip_text/`) loads here and gives transformers' last
//! hidden states and pooled outputs (with and without a padding mask, the legacy end-token
//! rule, GELU instead of quick-GELU); the real all-MiniLM-L6-v2 weights give transformers'
//! `BertModel` outputs and sentence-transformers' embeddings on five sentences
//! (`tests/fixtures/minilm/`, ids and outputs only: the weights come from
//! `./tools/fetch_minilm.sh`, and the test skips with a note where they are absent, or fails
//! with `OXIDIFF_REQUIRE_MINILM=1`). Both fixtures are written by
//!
//! ```text
//! /opt/refenv/bin/python tools/reference/text_encoder_golden.py
//! ```
//!
//! (torch 2.15, transformers 5.24.0, sentence-transformers 6.2.0).
//!
//! The other direction needs python, which CI has not, so it is a step by hand: with
//! `OXIDIFF_EXPORT_DIR` set, `exports_read_back_to_the_same_model` keeps its exports (each with
//! oxidiff's inputs and outputs in `oxidiff_io.safetensors`) for transformers to load and run:
//!
//! ```text
//! OXIDIFF_EXPORT_DIR=/tmp/text_export cargo test --workspace --features oxidiff-train/wgpu --test text_encoder
//! /opt/refenv/bin/python tools/reference/text_encoder_golden.py --check-export /tmp/text_export
//! ```
//!
//! which printed (2026-12-02):
//!
//! ```text
//! /tmp/text_export/oxidiff_bert (bert): max |transformers - oxidiff| = 8.34e-07 (last_hidden_state), 5.96e-08 (pooled); |last_hidden_state| max 3.08
//! /tmp/text_export/oxidiff_clip (clip_text_model): max |transformers - oxidiff| = 5.96e-07 (last_hidden_state), 5.36e-07 (pooled); |last_hidden_state| max 3.47
//! /tmp/text_export/tiny_clip_text (clip_text_model): max |transformers - oxidiff| = 1.67e-06 (last_hidden_state), 7.15e-07 (pooled); |last_hidden_state| max 3.17
//! ```
//!
//! Here (`--nocapture` prints them) the fixtures load within 1.7e-6 of transformers (tiny
//! CLIP: last hidden state, pooled 7.2e-7); all-MiniLM-L6-v2's last hidden state within
//! 3.0e-5 of transformers' float32 (whose own distance from float64 is 4.1e-5; oxidiff's
//! 4.9e-5) and its sentence embedding within 1.3e-7 of sentence-transformers'.

mod common;

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use oxidiff_models::text::{
    Activation, BertConfig, BertModel, ClipTextConfig, ClipTextModel, SentencePooling, TextEncoder,
};
use serde_json::{Value, json};

use common::{TensorFile, fixture};

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar::<f32>()
}

/// Asserts `got` is within `tolerance` of `expected`, printing the difference.
fn assert_close<const D: usize>(what: &str, got: Tensor<D>, expected: Tensor<D>, tolerance: f32) {
    let scale = expected.clone().abs().max().into_scalar::<f32>();
    let diff = max_abs_diff(got, expected);
    eprintln!("{what}: max |oxidiff - expected| = {diff:e} (|expected| max {scale})");
    assert!(diff <= tolerance, "{what}: differs by {diff}");
    // A misplaced weight would show far above the tolerance: the outputs are O(1).
    assert!(scale > 0.1, "{what}: outputs too small to tell");
}

#[test]
fn a_transformers_clip_text_model_gives_transformers_outputs() {
    let device = Device::flex();
    let dir = fixture("tiny_clip_text");
    let io = TensorFile::read(&dir.join("io.safetensors"));
    let (ids, mask) = (
        io.int::<2>("input_ids", &device).unwrap(),
        io.int::<2>("attention_mask", &device).unwrap(),
    );
    let mut model = ClipTextModel::load(&dir, &device).unwrap();
    assert_eq!(model.config().eos_token_id, 999);
    assert_eq!(model.config().hidden_act, Activation::QuickGelu);
    assert_eq!(model.num_params(), 48_106);

    let out = model.forward(ids.clone(), Some(mask.clone()));
    let tolerance = 1e-5;
    let hidden = |name| io.float::<3>(name, &device);
    let pooled = |name| io.float::<2>(name, &device);
    assert_close(
        "last_hidden_state",
        out.last_hidden_state,
        hidden("last_hidden_state"),
        tolerance,
    );
    assert_close(
        "pooler_output",
        out.pooler_output,
        pooled("pooler_output"),
        tolerance,
    );
    let out = model.forward(ids.clone(), None);
    assert_close(
        "last_hidden_state without mask",
        out.last_hidden_state,
        hidden("last_hidden_state_nomask"),
        tolerance,
    );
    assert_close(
        "pooler_output without mask",
        out.pooler_output,
        pooled("pooler_output_nomask"),
        tolerance,
    );

    // The legacy end token (SD 1.x's config): pooled at the first largest id.
    model.config.eos_token_id = 2;
    let out = model.forward(ids.clone(), Some(mask.clone()));
    assert_close(
        "pooler_output, eos_token_id = 2",
        out.pooler_output,
        pooled("pooler_output_legacy"),
        tolerance,
    );
    for layer in &mut model.encoder.layers {
        layer.mlp.activation = Activation::Gelu;
    }
    let out = model.forward(ids.clone(), Some(mask.clone()));
    assert_close(
        "last_hidden_state, hidden_act = gelu",
        out.last_hidden_state,
        hidden("last_hidden_state_gelu"),
        tolerance,
    );

    // The same through the shared type.
    let encoder = TextEncoder::load(&dir, &device).unwrap();
    assert!(matches!(encoder, TextEncoder::Clip(_)));
    assert_eq!((encoder.hidden_size(), encoder.context_length()), (32, 77));
    let out = encoder.forward(ids, Some(mask));
    assert_eq!(out.last_hidden_state.dims(), [3, 12, 32]);
    assert_close(
        "TextEncoder pooled",
        out.pooled,
        pooled("pooler_output"),
        tolerance,
    );
}

/// transformers' `CLIPTextModel(CLIPTextConfig.from_pretrained(SD 1.5's text_encoder))` has
/// 123,060,480 parameters.
#[test]
fn stable_diffusions_text_encoder_has_its_parameter_count() {
    let config = ClipTextConfig::stable_diffusion();
    config.validate().unwrap();
    assert_eq!(
        (
            config.vocab_size,
            config.hidden_size,
            config.num_hidden_layers
        ),
        (49408, 768, 12)
    );
    assert_eq!(
        (
            config.num_attention_heads,
            config.intermediate_size,
            config.max_position_embeddings
        ),
        (12, 3072, 77)
    );
    assert_eq!(config.init(&Device::flex()).num_params(), 123_060_480);
}

#[test]
fn all_minilm_l6_v2_gives_transformers_and_sentence_transformers_outputs() {
    // Where ./tools/fetch_minilm.sh unpacked it ($OXIDIFF_MINILM_DIR or ~/.cache/oxidiff).
    let Some(dir) = oxidiff_models::text::minilm_dir() else {
        if std::env::var("OXIDIFF_REQUIRE_MINILM").is_ok_and(|v| v == "1") {
            panic!("OXIDIFF_REQUIRE_MINILM=1 but no all-MiniLM-L6-v2: run ./tools/fetch_minilm.sh");
        }
        eprintln!(
            "skipped: no all-MiniLM-L6-v2 in $OXIDIFF_MINILM_DIR or ~/.cache/oxidiff \
             (run ./tools/fetch_minilm.sh)"
        );
        return;
    };
    let device = Device::flex();
    let io = TensorFile::read(&fixture("minilm").join("io.safetensors"));
    let (ids, mask) = (
        io.int::<2>("input_ids", &device).unwrap(),
        io.int::<2>("attention_mask", &device).unwrap(),
    );
    let model = BertModel::load(&dir, &device).unwrap();
    assert_eq!(model.config(), &BertConfig::all_minilm_l6_v2());
    assert_eq!(model.pooling, SentencePooling::all_minilm_l6_v2());
    assert_eq!(model.context_length(), 256);
    let out = model.forward(ids.clone(), Some(mask.clone()), None);
    // Six layers of float32 round differently here and in torch: transformers' own float32
    // states are 4.1e-5 from the same model run in float64 (`*_f64`, what both round around),
    // oxidiff's 3.0e-5 to 6.0e-5 depending on the machine's GEMM kernels (AVX2 or AVX-512):
    // 1e-4 is 1.8e-5 of the states' largest value (5.67).
    let hidden_tolerance = 1e-4;
    assert_close(
        "MiniLM last_hidden_state",
        out.last_hidden_state.clone(),
        io.float("last_hidden_state", &device),
        hidden_tolerance,
    );
    assert_close(
        "MiniLM last_hidden_state against float64",
        out.last_hidden_state,
        io.float("last_hidden_state_f64", &device),
        hidden_tolerance,
    );
    let tolerance = 1e-5;
    assert_close(
        "MiniLM pooler_output",
        out.pooler_output.expect("MiniLM has a pooler"),
        io.float("pooler_output", &device),
        tolerance,
    );
    let encoder = TextEncoder::load(&dir, &device).unwrap();
    assert_eq!(
        (encoder.hidden_size(), encoder.context_length()),
        (384, 256)
    );
    let pooled = encoder.forward(ids, Some(mask)).pooled;
    let norms: Vec<f32> = pooled
        .clone()
        .square()
        .sum_dim(1)
        .sqrt()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
    assert_close(
        "MiniLM sentence_embedding (sentence-transformers)",
        pooled.clone(),
        io.float("sentence_embedding", &device),
        tolerance,
    );
    assert_close(
        "MiniLM sentence_embedding against float64",
        pooled,
        io.float("sentence_embedding_f64", &device),
        tolerance,
    );
}

/// Draws every parameter again from a fixed sequence, none of them zero (a fresh model's
/// biases are): vectors in [0.6, 1.4], matrices uniform with variance 1/rows (burn's linear
/// weights are `[in, out]`).
struct Redraw(u64);

impl Redraw {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

impl ModuleMapper for Redraw {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let dims = t.dims();
            let count: usize = dims.iter().product();
            let fan_in = dims[0];
            let values: Vec<f32> = (0..count)
                .map(|_| match D {
                    1 => 1.0 + 0.4 * self.next(),
                    _ => self.next() * (3.0 / fan_in as f32).sqrt(),
                })
                .collect();
            Tensor::from_data(TensorData::new(values, dims), &t.device())
        })
    }
}

fn tiny_bert_config() -> BertConfig {
    BertConfig {
        vocab_size: 120,
        hidden_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 3,
        intermediate_size: 40,
        max_position_embeddings: 20,
        ..BertConfig::default()
    }
}

/// Ids `[2, 9]` under `vocab` with a padded second row, and its mask.
fn inputs(vocab: i64, end: i64, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let mut ids: Vec<i64> = (0..18).map(|i| (i * 37 + 5) % (vocab - 3) + 1).collect();
    ids[6] = end;
    ids[9 + 4] = end;
    let mut mask = vec![1i64; 18];
    for (i, m) in mask.iter_mut().enumerate().skip(9 + 5) {
        *m = 0;
        ids[i] = 0;
    }
    (
        Tensor::from_data(TensorData::new(ids, [2, 9]), device),
        Tensor::from_data(TensorData::new(mask, [2, 9]), device),
    )
}

/// Writes the inputs and oxidiff's outputs as `oxidiff_io.safetensors` in `dir`, for
/// `text_encoder_golden.py --check-export`.
fn write_io(
    dir: &Path,
    ids: Tensor<2, Int>,
    mask: Tensor<2, Int>,
    hidden: Tensor<3>,
    pooled: Tensor<2>,
) {
    let ints = |t: Tensor<2, Int>| {
        let data = t.into_data().convert::<i64>();
        let shape = data.shape().to_vec();
        let bytes: Vec<u8> = data.iter::<i64>().flat_map(|v| v.to_le_bytes()).collect();
        (safetensors::Dtype::I64, shape, bytes)
    };
    let floats = |data: TensorData| {
        let shape = data.shape().to_vec();
        let bytes: Vec<u8> = data
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        (safetensors::Dtype::F32, shape, bytes)
    };
    let tensors = [
        ("input_ids", ints(ids)),
        ("attention_mask", ints(mask)),
        ("last_hidden_state", floats(hidden.into_data())),
        ("pooled", floats(pooled.into_data())),
    ];
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (dtype, shape, bytes))| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap();
            (*name, view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("oxidiff_io.safetensors")).unwrap();
}

/// Where an export goes: kept under `OXIDIFF_EXPORT_DIR` when it is set (for the python check),
/// else in `tmp`.
fn export_dir(tmp: &Path, name: &str) -> PathBuf {
    std::env::var_os("OXIDIFF_EXPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.to_path_buf())
        .join(name)
}

/// Saves `encoder` into `dir`, loads it back, and checks both give the same outputs on
/// `ids`/`mask`; keeps those for python.
fn round_trip(encoder: &TextEncoder, dir: &Path, ids: Tensor<2, Int>, mask: Tensor<2, Int>) {
    let device = Device::flex();
    encoder.save(dir).unwrap();
    // Written twice into the same directory: the second replaces the first.
    encoder.save(dir).unwrap();
    let reloaded = TextEncoder::load(dir, &device).unwrap();
    let ours = encoder.forward(ids.clone(), Some(mask.clone()));
    let again = reloaded.forward(ids.clone(), Some(mask.clone()));
    assert_eq!(
        max_abs_diff(again.last_hidden_state, ours.last_hidden_state.clone()),
        0.0
    );
    assert_eq!(max_abs_diff(again.pooled, ours.pooled.clone()), 0.0);
    assert!(
        ours.last_hidden_state
            .clone()
            .abs()
            .max()
            .into_scalar::<f32>()
            > 0.1
    );
    write_io(dir, ids, mask, ours.last_hidden_state, ours.pooled);
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn exports_read_back_to_the_same_model() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();

    // transformers' own model, written back: the config.json keys it wrote, the same values.
    let dir = fixture("tiny_clip_text");
    let io = TensorFile::read(&dir.join("io.safetensors"));
    let clip = ClipTextModel::load(&dir, &device).unwrap();
    let out = export_dir(tmp.path(), "tiny_clip_text");
    let config = clip.config().clone();
    round_trip(
        &TextEncoder::Clip(clip),
        &out,
        io.int::<2>("input_ids", &device).unwrap(),
        io.int::<2>("attention_mask", &device).unwrap(),
    );
    let read = |d: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap()
    };
    let (ours, theirs) = (read(&out), read(&dir));
    for (key, value) in theirs.as_object().unwrap() {
        assert_eq!(ours.get(key), Some(value), "{key}");
    }
    assert_eq!(
        ClipTextConfig::from_config_json(&ours, &out.join("config.json")).unwrap(),
        config
    );

    // Models built by oxidiff: a CLIP with the legacy end token and GELU, and a BERT with a
    // pooler whose sentence embedding is normalised.
    let clip_config = ClipTextConfig {
        vocab_size: 150,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        max_position_embeddings: 12,
        hidden_act: Activation::Gelu,
        pad_token_id: Some(1),
        bos_token_id: Some(148),
        eos_token_id: 2,
        ..ClipTextConfig::small()
    };
    let clip = clip_config.init(&device).map(&mut Redraw(7));
    let (ids, mask) = inputs(150, 149, &device);
    round_trip(
        &TextEncoder::Clip(clip),
        &export_dir(tmp.path(), "oxidiff_clip"),
        ids,
        mask,
    );

    let pooling = SentencePooling {
        normalize: true,
        ..SentencePooling::default()
    };
    let bert =
        BertModel::new(tiny_bert_config(), true, pooling.clone(), &device).map(&mut Redraw(11));
    let (ids, mask) = inputs(120, 3, &device);
    let out = export_dir(tmp.path(), "oxidiff_bert");
    round_trip(&TextEncoder::Bert(bert), &out, ids, mask);
    let reloaded = BertModel::load(&out, &device).unwrap();
    assert_eq!(reloaded.pooling, pooling);
    assert!(reloaded.pooler.is_some());
    assert_eq!(reloaded.config(), &tiny_bert_config());
}

/// A backward pass from `out` reaches `weight` with a non-zero gradient. (Through a probe: a
/// plain sum of a LayerNorm's output does not depend on its input while its scale is one.)
fn assert_trains(out: Tensor<2>, weight: &Param<Tensor<2>>) {
    let probe = Tensor::random(out.dims(), Distribution::Normal(0.0, 1.0), &out.device());
    let grads = (out * probe).sum().backward();
    let grad = weight
        .grad(&grads)
        .expect("a gradient reaches the embedding");
    assert!(grad.abs().sum().into_scalar::<f32>() > 0.0);
}

#[test]
fn a_bert_ignores_padding_and_trains() {
    let device = Device::flex();
    let bert = BertModel::new(
        tiny_bert_config(),
        false,
        SentencePooling::default(),
        &device,
    )
    .map(&mut Redraw(3));
    let (ids, mask) = inputs(120, 3, &device);
    let out = bert.forward(ids.clone(), Some(mask.clone()), None);
    assert_eq!(out.last_hidden_state.dims(), [2, 9, 24]);
    assert!(out.pooler_output.is_none());
    // The padded row's first five tokens alone give the same states.
    let short = bert.forward(ids.slice([1..2, 0..5]), None, None);
    let diff = max_abs_diff(
        out.last_hidden_state.clone().slice([1..2, 0..5]),
        short.last_hidden_state,
    );
    assert!(diff < 1e-5, "padding leaks into the tokens: {diff}");

    // Trained (with dropout, on an autodiff device) from random weights.
    let device = Device::flex().autodiff();
    let bert = BertModel::new(
        tiny_bert_config(),
        true,
        SentencePooling::default(),
        &device,
    );
    let (ids, mask) = inputs(120, 3, &device);
    let out = bert.forward(ids, Some(mask.clone()), None);
    let pooled = bert.sentence_embedding(out.last_hidden_state, Some(mask));
    assert_trains(pooled, &bert.embeddings.word_embeddings.weight);
}

#[test]
fn a_clip_text_model_is_causal_and_trains() {
    let device = Device::flex();
    let config = ClipTextConfig {
        vocab_size: 150,
        max_position_embeddings: 16,
        ..ClipTextConfig::small()
    };
    let clip = config.init(&device).map(&mut Redraw(5));
    let (ids, _) = inputs(150, 149, &device);
    let out = clip.forward(ids.clone(), None);
    // A later token changes nothing before it.
    let prefix = clip.forward(ids.slice([0..2, 0..4]), None);
    let diff = max_abs_diff(
        out.last_hidden_state.clone().slice([0..2, 0..4]),
        prefix.last_hidden_state,
    );
    assert!(diff < 1e-5, "not causal: {diff}");

    let device = Device::flex().autodiff();
    let clip = config.init(&device);
    let (ids, mask) = inputs(150, 149, &device);
    let out = clip.forward(ids, Some(mask));
    assert_trains(
        out.pooler_output,
        &clip.embeddings.position_embedding.weight,
    );
}

/// Copies the tiny CLIP fixture into a temporary directory with `edit` applied to its
/// config.json; loads it and returns the error's text.
fn load_edited(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("text_encoder");
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("tiny_clip_text");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    TextEncoder::load(&dir, &Device::flex())
        .expect_err("refused")
        .to_string()
}

#[test]
fn bad_configs_are_refused_naming_file_key_and_value() {
    let err = load_edited(|c| {
        c.insert("hidden_act".into(), json!("mish"));
    });
    assert!(
        err.contains("config.json")
            && err.contains("hidden_act = \"mish\"")
            && err.contains("quick_gelu"),
        "{err}"
    );
    let err = load_edited(|c| {
        c.insert("eos_token_id".into(), json!([999, 998]));
    });
    assert!(err.contains("eos_token_id"), "{err}");
    let err = load_edited(|c| {
        c.insert("model_type".into(), json!("t5"));
    });
    assert!(
        err.contains("\"t5\"") && err.contains("not a text encoder"),
        "{err}"
    );
    let err = load_edited(|c| {
        c.insert(
            "architectures".into(),
            json!(["CLIPTextModelWithProjection"]),
        );
    });
    assert!(err.contains("architectures"), "{err}");
    let err = load_edited(|c| {
        c.insert("num_attention_heads".into(), json!(5));
    });
    assert!(err.contains("num_attention_heads = 5"), "{err}");

    let bert_json = |extra: Value| {
        let mut config = tiny_bert_config().to_config_json();
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        BertConfig::from_config_json(&config, Path::new("bert/config.json"))
            .unwrap_err()
            .to_string()
    };
    let err = bert_json(json!({"is_decoder": true}));
    assert!(
        err.contains("bert/config.json") && err.contains("is_decoder = true"),
        "{err}"
    );
    let err = bert_json(json!({"position_embedding_type": "relative_key"}));
    assert!(err.contains("position_embedding_type"), "{err}");
}

/// A copy of the tiny CLIP fixture in `dir` with its tensors renamed by `rename` (dropped
/// where it gives `None`) and `extra` tensors added.
fn write_renamed(
    dir: &Path,
    rename: impl Fn(&str) -> Option<String>,
    extra: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)],
) {
    let src = fixture("tiny_clip_text");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter_map(|(name, view)| rename(&name).map(|n| (n, view)))
        .collect();
    for (name, dtype, shape, data) in extra {
        let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
        views.push((name.to_string(), view));
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

/// SD 1.x's file layout: every name under `text_model.`, and the `position_ids` buffer that
/// transformers saved before 4.31.
#[test]
fn weights_under_text_model_with_position_ids_load_alike() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("text_encoder");
    let position_ids: Vec<u8> = (0..77i64).flat_map(|i| i.to_le_bytes()).collect();
    write_renamed(
        &dir,
        |name| Some(format!("text_model.{name}")),
        &[(
            "text_model.embeddings.position_ids",
            safetensors::Dtype::I64,
            vec![1, 77],
            position_ids,
        )],
    );
    let io = TensorFile::read(&fixture("tiny_clip_text").join("io.safetensors"));
    let model = ClipTextModel::load(&dir, &device).unwrap();
    let out = model.forward(
        io.int::<2>("input_ids", &device).unwrap(),
        Some(io.int::<2>("attention_mask", &device).unwrap()),
    );
    assert_close(
        "text_model.-prefixed last_hidden_state",
        out.last_hidden_state,
        io.float("last_hidden_state", &device),
        1e-5,
    );

    // Missing a tensor, the error names it as the file would.
    let dir = tmp.path().join("missing");
    let dropped = "text_model.encoder.layers.1.mlp.fc2.bias";
    write_renamed(
        &dir,
        |name| Some(format!("text_model.{name}")).filter(|n| n != dropped),
        &[],
    );
    let err = ClipTextModel::load(&dir, &device)
        .expect_err("refused")
        .to_string();
    assert!(err.contains(&format!("missing `{dropped}`")), "{err}");

    // A tensor of another model is no buffer to pass over.
    let dir = tmp.path().join("extra");
    let bytes: Vec<u8> = [0f32; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_renamed(
        &dir,
        |name| Some(format!("text_model.{name}")),
        &[(
            "text_projection.weight",
            safetensors::Dtype::F32,
            vec![2, 2],
            bytes,
        )],
    );
    let err = ClipTextModel::load(&dir, &device)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("unexpected `text_projection.weight`"), "{err}");
}

#[test]
fn weights_with_a_missing_or_misshaped_tensor_are_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("text_encoder");
    let dropped = "encoder.layers.1.mlp.fc2.bias";
    write_renamed(
        &dir,
        |name| (name != dropped).then(|| name.to_string()),
        &[],
    );
    let err = ClipTextModel::load(&dir, &Device::flex())
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains(&format!("missing `{dropped}`")),
        "{err}"
    );

    // A config.json that does not match the weights: every MLP tensor has the wrong shape.
    let err = load_edited(|c| {
        c.insert("intermediate_size".into(), json!(38));
    });
    assert!(
        err.contains("`encoder.layers.0.mlp.fc1") && err.contains("shape"),
        "{err}"
    );

    // No weights at all.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = TextEncoder::load(&dir, &Device::flex())
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("missing"),
        "{err}"
    );
}
