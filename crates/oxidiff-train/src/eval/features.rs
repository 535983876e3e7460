//! FD-oxidiff, this project's sample-quality distance: the Fréchet distance (and k-NN
//! precision/recall) between features of real held-out images and of generated ones.
//!
//! Why not FID: FID is defined by the features of one particular InceptionV3, whose weights
//! cannot be downloaded on these machines. So the features come from a small network trained
//! here on the run's own training images — a classifier where the data has labels (features
//! that separate the classes, as Inception's separate ImageNet's), an auto-encoder otherwise —
//! and cached next to the run. The numbers are comparable between models evaluated with the
//! same feature network (same data, size and seed), never with anybody's FID; every output
//! names them "FD-oxidiff".

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::activation::silu;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use oxidiff_data::{Augment, Dataset, EpochOrder};
use serde::{Deserialize, Serialize};

use super::frechet::{FeatureStats, frechet_distance, precision_recall};
use crate::TrainError;
use crate::run_dir::write_atomic;

/// Length of a feature vector.
pub const FEATURE_DIM: usize = 64;

/// Neighbours that define the k-NN manifolds of precision/recall (Kynkäänniemi et al. 2019
/// use 3).
pub const PR_NEIGHBOURS: usize = 3;

/// What the feature network is trained to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureTask {
    /// Predict the label (the data has more than one class).
    Classifier { classes: usize },
    /// Reconstruct the image from the features (unlabelled data).
    AutoEncoder,
}

/// Three convolutions (the last two strided), global average pooling and a projection to
/// [`FEATURE_DIM`]; a head on top for the training task.
#[derive(Module, Debug)]
pub struct FeatureNet {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    proj: Linear,
    head: Linear,
}

impl FeatureNet {
    fn new(channels: usize, size: usize, task: FeatureTask, device: &Device) -> Self {
        let conv = |i: usize, o: usize, stride: usize| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let head_out = match task {
            FeatureTask::Classifier { classes } => classes,
            FeatureTask::AutoEncoder => channels * size * size,
        };
        Self {
            conv1: conv(channels, 32, 1),
            conv2: conv(32, 64, 2),
            conv3: conv(64, 64, 2),
            proj: LinearConfig::new(64, FEATURE_DIM).init(device),
            head: LinearConfig::new(FEATURE_DIM, head_out).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[B, C, S, S]` in [-1, 1]
    /// - returns `[B, FEATURE_DIM]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let h = silu(self.conv1.forward(x));
        let h = silu(self.conv2.forward(h));
        let h = silu(self.conv3.forward(h));
        let [b, c, _, _] = h.dims();
        self.proj.forward(h.mean_dims(&[2, 3]).reshape([b, c]))
    }

    /// The task head on the features.
    ///
    /// # Shapes
    /// - `x`: `[B, C, S, S]`
    /// - returns `[B, classes]` (logits) or `[B, C·S·S]` (reconstruction)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(silu(self.features(x)))
    }
}

/// How the feature network is trained; part of its cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureNetConfig {
    pub task: FeatureTask,
    pub channels: usize,
    pub size: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// The data it was trained on, in words (`DataConfig::describe_source`) and the number of
    /// training images.
    pub source: String,
    pub images: usize,
}

impl FeatureNetConfig {
    /// The defaults for `data`: a classifier when it has several classes; 800 Adam steps of 64.
    pub fn for_data(data: &Dataset, train_images: usize, source: String, seed: u64) -> Self {
        Self {
            task: if data.num_classes > 1 {
                FeatureTask::Classifier {
                    classes: data.num_classes,
                }
            } else {
                FeatureTask::AutoEncoder
            },
            channels: data.channels,
            size: data.size,
            steps: 800,
            batch_size: 64,
            lr: 2e-3,
            seed,
            source,
            images: train_images,
        }
    }
}

/// Trains a feature network on the images of `data` at `indices` (centre crops).
///
/// # Errors
/// A streamed image that cannot be read.
pub fn train_feature_net(
    config: &FeatureNetConfig,
    data: &Dataset,
    indices: &[usize],
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<FeatureNet, TrainError> {
    let ad = device.clone().autodiff();
    ad.seed(config.seed);
    let mut net = FeatureNet::new(config.channels, config.size, config.task, &ad);
    let mut optim = AdamConfig::new().init();
    let order = EpochOrder::new(indices.len(), config.batch_size, config.seed);
    let cross_entropy = CrossEntropyLossConfig::new().init(&ad);
    for step in 0..config.steps {
        let picks: Vec<usize> = order
            .batch_indices(step as u64)
            .into_iter()
            .map(|k| indices[k])
            .collect();
        let batch = data.assemble(&picks, Augment::default(), |_| None)?;
        let x = batch.to_tensor(&ad);
        let out = net.forward(x.clone());
        let loss = match config.task {
            FeatureTask::Classifier { .. } => {
                let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
                let n = labels.len();
                let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &ad);
                cross_entropy.forward(out, targets)
            }
            FeatureTask::AutoEncoder => {
                let [b, ..] = x.dims();
                (out - x.reshape([b as i32, -1])).square().mean()
            }
        };
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(config.lr, net, grads);
        progress(step + 1, config.steps);
    }
    Ok(net.valid())
}

const NET_FILE: &str = "feature_net.bpk";
const NET_CONFIG_FILE: &str = "feature_net.json";

/// The feature network cached in `dir` when it was trained with `config`, else a new one
/// trained and saved there (atomically) for next time.
///
/// # Errors
/// The cache cannot be written; a streamed image cannot be read.
pub fn load_or_train(
    dir: &Path,
    config: &FeatureNetConfig,
    data: &Dataset,
    indices: &[usize],
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(FeatureNet, bool), TrainError> {
    if let Some(net) = load_cached(dir, config, device) {
        return Ok((net, true));
    }
    let net = train_feature_net(config, data, indices, device, progress)?;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let path = dir.join(NET_FILE);
    let bytes = net
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::RunFile {
            path: path.clone(),
            message: format!("cannot serialise the feature network: {e}"),
        })?;
    write_atomic(&path, &bytes)?;
    let meta = serde_json::to_vec_pretty(config).expect("FeatureNetConfig serialises");
    write_atomic(&dir.join(NET_CONFIG_FILE), &meta)?;
    Ok((net, false))
}

/// The cached network, if its config matches and its weights load (anything else retrains).
fn load_cached(dir: &Path, config: &FeatureNetConfig, device: &Device) -> Option<FeatureNet> {
    let meta = std::fs::read(dir.join(NET_CONFIG_FILE)).ok()?;
    let saved: FeatureNetConfig = serde_json::from_slice(&meta).ok()?;
    if &saved != config {
        return None;
    }
    let bytes = std::fs::read(dir.join(NET_FILE)).ok()?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).ok()?;
    let net = FeatureNet::new(config.channels, config.size, config.task, device);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| net.try_load_record(record)))
        .ok()?
        .ok()
}

/// Features of `images` (batches of `batch`).
///
/// # Shapes
/// - `images`: `[N, C, S, S]`
/// - returns `[N, FEATURE_DIM]` row-major
pub fn features_of(net: &FeatureNet, images: Tensor<4>, batch: usize) -> Vec<f32> {
    let n = images.dims()[0];
    let mut out = Vec::with_capacity(n * FEATURE_DIM);
    let mut start = 0;
    while start < n {
        let len = batch.max(1).min(n - start);
        let chunk = images.clone().narrow(0, start, len);
        let f = net.features(chunk).into_data().convert::<f32>();
        out.extend(f.try_to_vec::<f32>().unwrap_or_default());
        start += len;
    }
    out
}

/// FD-oxidiff and k-NN precision/recall between real and generated feature sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleDistance {
    /// Fréchet distance between Gaussians fitted to the two feature sets.
    pub fd_oxidiff: f64,
    pub precision: f64,
    pub recall: f64,
    pub real: usize,
    pub generated: usize,
    /// How often the feature network, when it is a classifier, labels the real images right:
    /// features from a network that cannot tell the classes apart would measure little.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_accuracy: Option<f64>,
}

/// The share of `labels` the classifier `net` predicts on `images`; `None` for an
/// auto-encoder.
///
/// # Shapes
/// - `images`: `[N, C, S, S]`; `labels`: `[N]`
pub fn classifier_accuracy(
    net: &FeatureNet,
    task: FeatureTask,
    images: Tensor<4>,
    labels: &[usize],
    batch: usize,
) -> Option<f64> {
    let FeatureTask::Classifier { .. } = task else {
        return None;
    };
    let predicted = classify(net, images, batch);
    let right = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    Some(right as f64 / predicted.len().max(1) as f64)
}

/// The class the classifier `net` predicts for each of `images` (batches of `batch`).
///
/// # Shapes
/// - `images`: `[N, C, S, S]`; returns `[N]`
pub fn classify(net: &FeatureNet, images: Tensor<4>, batch: usize) -> Vec<usize> {
    let n = images.dims()[0];
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let len = batch.max(1).min(n - start);
        let logits = net.forward(images.clone().narrow(0, start, len));
        let predicted = logits.argmax(1).into_data().convert::<i64>();
        out.extend(
            predicted
                .try_to_vec::<i64>()
                .unwrap_or_default()
                .into_iter()
                .map(|p| p as usize),
        );
        start += len;
    }
    out
}

/// Compares feature sets (`[N, FEATURE_DIM]` each, row-major).
///
/// # Errors
/// Fewer than two vectors on a side, or non-finite features (a diverged model).
pub fn sample_distance(real: &[f32], generated: &[f32]) -> Result<SampleDistance, TrainError> {
    let stats_error = |e: super::frechet::StatsError| TrainError::Eval {
        message: format!("FD-oxidiff: {e}"),
    };
    let a = FeatureStats::from_features(real, FEATURE_DIM).map_err(stats_error)?;
    let b = FeatureStats::from_features(generated, FEATURE_DIM).map_err(stats_error)?;
    let fd = frechet_distance(&a, &b).map_err(stats_error)?;
    let pr = precision_recall(real, generated, FEATURE_DIM, PR_NEIGHBOURS).map_err(stats_error)?;
    Ok(SampleDistance {
        fd_oxidiff: fd,
        precision: pr.precision,
        recall: pr.recall,
        real: a.count,
        generated: b.count,
        feature_accuracy: None,
    })
}
