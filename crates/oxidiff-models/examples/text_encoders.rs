//! Times the text encoders on the CPU: latent-diffusion's jointly trained CLIP text transformer
//! (oxidiff's `text.encoder = "scratch"`: 256 wide, 4 layers of 4 heads, 77 tokens) for a
//! training step's forward + backward at batch 16, and all-MiniLM-L6-v2's shape (BERT, 384
//! wide, 6 layers of 12 heads, 32 tokens) encoding 64 captions, as a frozen encoder caches them.
//! Median of 7 after one warm-up. Run it twice to see what the CPU kernels bring:
//!
//! `cargo run --release -p oxidiff-models --example text_encoders`
//! `OXIDIFF_CPU_KERNELS=0 cargo run --release -p oxidiff-models --example text_encoders`

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::median_ms;
use oxidiff_models::cpu::on_pool;
use oxidiff_models::text::{BertConfig, BertModel, ClipTextConfig, SentencePooling};

/// Token ids in `1..vocab` and a mask keeping the first 3/4 of each row (the rest padding).
fn tokens(batch: usize, length: usize, vocab: usize, device: &Device) -> [Tensor<2, Int>; 2] {
    let ids: Vec<i64> = (0..batch * length)
        .map(|i| 1 + (i * 7919 % (vocab - 1)) as i64)
        .collect();
    let mask: Vec<i64> = (0..batch * length)
        .map(|i| i64::from(i % length < 3 * length / 4))
        .collect();
    [ids, mask].map(|v| Tensor::from_data(TensorData::new(v, [batch, length]), device))
}

fn main() {
    on_pool(|| {
        let kernels = if oxidiff_models::cpu::kernels_enabled() {
            "on"
        } else {
            "off (OXIDIFF_CPU_KERNELS=0)"
        };
        println!("CPU kernels {kernels}; median of 7 after one warm-up");

        let device = Device::flex().autodiff();
        let clip = ClipTextConfig {
            hidden_size: 256,
            intermediate_size: 1024,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            projection_dim: None,
            ..ClipTextConfig::default()
        }
        .init(&device);
        let [ids, mask] = tokens(16, 77, 49408, &device);
        let step = median_ms(|| {
            let out = clip.forward(ids.clone(), Some(mask.clone()));
            let loss = out.last_hidden_state.square().mean();
            let _ = loss.backward();
        });
        println!("CLIP 256x4 (scratch), batch 16 x 77 tokens, forward + backward: {step:.1} ms");

        let device = Device::flex();
        let bert = BertModel::new(
            BertConfig::all_minilm_l6_v2(),
            false,
            SentencePooling::all_minilm_l6_v2(),
            &device,
        );
        let [ids, mask] = tokens(64, 32, 30522, &device);
        let encode = median_ms(|| {
            let out = bert.forward(ids.clone(), Some(mask.clone()), None);
            let _ = out.last_hidden_state.into_data();
        });
        println!("MiniLM-L6 shape, 64 captions x 32 tokens, forward: {encode:.1} ms");
    });
}
