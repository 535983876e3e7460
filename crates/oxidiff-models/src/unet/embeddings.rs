use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};

/// Sinusoidal embedding of (possibly fractional) timesteps, `cos` half first as in ADM.
///
/// # Shapes
/// - `timesteps`: `[B]`
/// - output: `[B, dim]`
pub fn timestep_embedding(timesteps: Tensor<1>, dim: usize) -> Tensor<2> {
    let device = timesteps.device();
    let half = dim / 2;
    // Transformer positional encoding (Vaswani et al. 2017, §3.5): freq_i = 10000^(-i/half).
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10_000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::<1>::from_data(TensorData::new(freqs, [half]), &device);
    let [batch] = timesteps.dims();
    let args = timesteps.reshape([batch, 1]) * freqs.reshape([1, half]);
    let embedding = Tensor::cat(vec![args.clone().cos(), args.sin()], 1);
    if dim % 2 == 1 {
        // An odd width gets one zero column, so any `dim` is accepted.
        Tensor::cat(vec![embedding, Tensor::zeros([batch, 1], &device)], 1)
    } else {
        embedding
    }
}

/// Sinusoidal features → Linear → SiLU → Linear, the timestep MLP of DDPM/ADM.
#[derive(Module, Debug)]
pub struct TimeEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
    pub sinusoidal_dim: usize,
}

impl TimeEmbedding {
    pub fn new(sinusoidal_dim: usize, embed_dim: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(sinusoidal_dim, embed_dim).init(device),
            linear_2: LinearConfig::new(embed_dim, embed_dim).init(device),
            sinusoidal_dim,
        }
    }

    /// # Shapes
    /// - `timesteps`: `[B]`
    /// - output: `[B, embed_dim]`
    pub fn forward(&self, timesteps: Tensor<1>) -> Tensor<2> {
        let features = timestep_embedding(timesteps, self.sinusoidal_dim);
        self.linear_2.forward(silu(self.linear_1.forward(features)))
    }
}
