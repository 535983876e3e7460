//! What the CLIP and BERT encoders share below the layer: transformers' `hidden_act`
//! activations, multi-head scaled dot-product attention with additive masks, and the masks.

use burn::nn::{Dropout, Initializer, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::cpu::attention_tokens;

/// What a masked attention score gets before the softmax. Finite, so that a row with every key
/// masked gives a (meaningless) average rather than NaN; exp of it is 0 in f32 next to any
/// unmasked score.
pub(crate) const MASKED: f32 = -1e9;

/// transformers' `hidden_act` values the encoders compute (`ACT2FN`'s names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// x·σ(1.702x) (CLIP's original, Radford et al. 2021).
    QuickGelu,
    /// x·Φ(x), the exact (erf) form (Hendrycks & Gimpel 2016); BERT's.
    Gelu,
    /// GELU's tanh approximation, as `gelu_new` names it.
    GeluNew,
    /// The same tanh approximation, as `gelu_pytorch_tanh` names it.
    GeluPytorchTanh,
}

impl Activation {
    const ALL: [Self; 4] = [
        Self::QuickGelu,
        Self::Gelu,
        Self::GeluNew,
        Self::GeluPytorchTanh,
    ];

    /// transformers' name.
    pub fn name(self) -> &'static str {
        match self {
            Self::QuickGelu => "quick_gelu",
            Self::Gelu => "gelu",
            Self::GeluNew => "gelu_new",
            Self::GeluPytorchTanh => "gelu_pytorch_tanh",
        }
    }

    /// The activation transformers calls `name`, if oxidiff has it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Every name [`Self::from_name`] takes, for messages.
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    /// Applies the activation elementwise.
    ///
    /// # Shapes
    /// - `x`, output: any, the same
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            // CLIP's sigmoid approximation of GELU.
            Self::QuickGelu => x.clone() * sigmoid(x * 1.702),
            Self::Gelu => gelu(x),
            Self::GeluNew | Self::GeluPytorchTanh => gelu_approximate(x),
        }
    }
}

/// A linear layer with bias, its weight drawn from N(0, std²) and its bias zero (transformers'
/// `_init_weights` for these encoders).
pub(crate) fn linear(d_in: usize, d_out: usize, std: f64, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device);
    layer.bias = Some(Initializer::Zeros.init([d_out], device));
    layer
}

/// Multi-head scaled dot-product attention over already projected queries, keys and values:
/// softmax(q kᵀ/√d + bias) v per head (Vaswani et al. 2017, eq. 1), heads split from the
/// channels in order, `dropout` on the probabilities (active only while training). On the CPU
/// it runs on [`attention_tokens`]'s kernel wherever the dropout does not act.
///
/// # Shapes
/// - `q`, `k`, `v`: `[B, L, D]`, D = heads · d
/// - `bias`: broadcastable to `[B, heads, L, L]` (`[B, 1, 1, L]` for padding, `[1, 1, L, L]`
///   causal, or their sum `[B, 1, L, L]`)
/// - output: `[B, L, D]`
pub(crate) fn multi_head_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    bias: Option<Tensor<4>>,
    dropout: &Dropout,
) -> Tensor<3> {
    // The kernels have no dropout on the probabilities; where it acts (training, p > 0) the
    // attention runs on burn's operations.
    let dropout_acts =
        dropout.prob > 0.0 && dropout.training.is_enabled() && q.device().is_autodiff();
    if !dropout_acts {
        return attention_tokens(q, k, v, heads, bias);
    }
    let [batch, tokens, channels] = q.dims();
    let head_dim = channels / heads;
    let split = |t: Tensor<3>| t.reshape([batch, tokens, heads, head_dim]).swap_dims(1, 2);
    let (q, k, v) = (split(q), split(k), split(v));
    let scores = q.matmul(k.swap_dims(2, 3)) / (head_dim as f64).sqrt();
    let scores = match bias {
        Some(bias) => scores + bias,
        None => scores,
    };
    let probs = dropout.forward(softmax(scores, 3));
    probs
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([batch, tokens, channels])
}

/// The additive bias of a padding mask: 0 where `mask` is non-zero (a token), [`MASKED`]
/// where it is 0 (padding), over the keys.
///
/// # Shapes
/// - `mask`: `[B, L]`
/// - output: `[B, 1, 1, L]`
pub(crate) fn padding_bias(mask: Tensor<2, Int>) -> Tensor<4> {
    let [batch, tokens] = mask.dims();
    mask.equal_elem(0)
        .float()
        .mul_scalar(MASKED)
        .reshape([batch, 1, 1, tokens])
}

/// The additive bias of a causal mask: query i sees keys j ≤ i.
///
/// # Shapes
/// - output: `[1, 1, L, L]`
pub(crate) fn causal_bias(tokens: usize, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = (0..tokens * tokens)
        .map(|n| if n % tokens > n / tokens { MASKED } else { 0.0 })
        .collect();
    Tensor::from_data(TensorData::new(values, [1, 1, tokens, tokens]), device)
}

/// The positions `0..L` as token ids.
///
/// # Shapes
/// - output: `[1, L]`
pub(crate) fn positions(tokens: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<1, Int>::arange(0..tokens as i64, device).reshape([1, tokens])
}

/// The first position in each row where `hit` is true, 0 where it is nowhere (what torch's
/// `argmax` of a 0/1 row gives: its first maximum). Scored so the maximum is unique whatever
/// way a backend breaks ties: hits score L + (L − 1 − i), the rest L − 1 − i.
///
/// # Shapes
/// - `hit`: `[B, L]` (0 or 1)
/// - output: `[B]`
pub(crate) fn first_position(hit: Tensor<2, Int>) -> Tensor<1, Int> {
    let [batch, tokens] = hit.dims();
    let countdown = Tensor::<1, Int>::arange(0..tokens as i64, &hit.device())
        .neg()
        .add_scalar(tokens as i64 - 1)
        .reshape([1, tokens]);
    let score = hit.mul_scalar(tokens as i64) + countdown;
    score.argmax(1).reshape([batch])
}

/// Row `index[b]` of each `x[b]`.
///
/// # Shapes
/// - `x`: `[B, L, D]`, `index`: `[B]`
/// - output: `[B, D]`
pub(crate) fn gather_rows(x: Tensor<3>, index: Tensor<1, Int>) -> Tensor<2> {
    let [batch, _, channels] = x.dims();
    let index = index.reshape([batch, 1, 1]).repeat_dim(2, channels);
    x.gather(1, index).reshape([batch, channels])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(values: Vec<i64>, shape: [usize; 2]) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(values, shape), &Device::flex())
    }

    #[test]
    fn the_first_hit_wins_and_no_hit_gives_zero() {
        let hit = ints(vec![0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1], [3, 4]);
        let first: Vec<i64> = first_position(hit)
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        assert_eq!(first, [1, 0, 0]);
    }

    #[test]
    fn the_causal_mask_hides_later_keys_only() {
        let bias: Vec<f32> = causal_bias(3, &Device::flex())
            .into_data()
            .try_to_vec()
            .unwrap();
        let m = MASKED;
        assert_eq!(bias, [0.0, m, m, 0.0, 0.0, m, 0.0, 0.0, 0.0]);
        let padding: Vec<f32> = padding_bias(ints(vec![1, 1, 0], [1, 3]))
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(padding, [0.0, 0.0, m]);
    }

    #[test]
    fn masked_keys_get_no_weight() {
        let device = Device::flex();
        let x = Tensor::<3>::random(
            [2, 3, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let dropout = burn::nn::DropoutConfig::new(0.0).init();
        let mask = ints(vec![1, 1, 0, 1, 1, 1], [2, 3]);
        let bias = padding_bias(mask);
        let out = multi_head_attention(x.clone(), x.clone(), x.clone(), 2, Some(bias), &dropout);
        // Changing the masked token's key and value changes nothing.
        let mut changed: Vec<f32> = x.to_data().try_to_vec().unwrap();
        for c in 0..8 {
            changed[2 * 8 + c] = 100.0;
        }
        let kv = Tensor::<3>::from_data(TensorData::new(changed, [2, 3, 8]), &device);
        let again = multi_head_attention(
            x.clone(),
            kv.clone(),
            kv,
            2,
            Some(padding_bias(ints(vec![1, 1, 0, 1, 1, 1], [2, 3]))),
            &dropout,
        );
        let diff = (out.slice([0..1, 0..3]) - again.slice([0..1, 0..3]))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert_eq!(diff, 0.0);
    }
}
