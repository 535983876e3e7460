//! Times the CPU convolution kernels on the layer shapes of the `small` preset at batch 16:
//! forward, input gradient and weight gradient, each as GFLOP/s (median of 7).
//!
//! `cargo run --release -p oxidiff-models --example conv_kernels`

mod common;

use common::median_ms;
use oxidiff_models::cpu::{
    ConvGeometry, conv2d_forward, conv2d_weight_backward, conv2d_x_backward,
};

fn main() {
    // (C_in, C_out, kernel, stride, H) of small's convolutions, with how often each occurs.
    let layers = [
        (64, 64, 3, 1, 32, 5),
        (192, 64, 3, 1, 32, 1),
        (128, 64, 3, 1, 32, 2),
        (128, 128, 3, 1, 32, 1),
        (64, 128, 3, 1, 16, 1),
        (128, 128, 3, 1, 16, 7),
        (256, 128, 3, 1, 16, 2),
        (192, 128, 3, 1, 16, 1),
        (128, 128, 3, 1, 8, 10),
        (256, 128, 3, 1, 8, 3),
        (64, 64, 3, 2, 32, 1),
        (192, 64, 1, 1, 32, 1),
        (256, 128, 1, 1, 16, 2),
    ];
    let batch = 16;
    println!("layer                      fwd GF/s   dx GF/s   dW GF/s   ms/step(all 3 x count)");
    let mut total = 0.0;
    for (c_in, c_out, k, s, h) in layers.map(|(a, b, c, d, e, _)| (a, b, c, d, e)) {
        let count = layers
            .iter()
            .find(|l| (l.0, l.1, l.2, l.3, l.4) == (c_in, c_out, k, s, h))
            .unwrap()
            .5;
        let p = k / 2;
        let g = ConvGeometry::new([batch, c_in, h, h], [c_out, c_in, k, k], s, p).unwrap();
        let x = vec![0.5f32; batch * g.in_image()];
        let w = vec![0.25f32; c_out * g.col_rows()];
        let b = vec![0.0f32; c_out];
        let grad = vec![1.0f32; batch * g.out_image()];
        let flops = 2.0 * (batch * c_out * g.col_rows() * g.out_plane()) as f64;
        let f = median_ms(|| drop(conv2d_forward(&g, &x, &w, Some(&b))));
        let dx = median_ms(|| drop(conv2d_x_backward(&g, &w, &grad)));
        let dw = median_ms(|| drop(conv2d_weight_backward(&g, &x, &grad)));
        let gf = |ms: f64| flops / ms / 1e6;
        total += (f + dx + dw) * count as f64;
        println!(
            "{c_in:>3}->{c_out:<3} k{k} s{s} {h:>2}x{h:<2} x{count:<2}   {:>8.1} {:>9.1} {:>9.1}   {:>8.1}",
            gf(f),
            gf(dx),
            gf(dw),
            (f + dx + dw) * count as f64
        );
    }
    println!("total convolution time per training step: {total:.0} ms");
}
