#!/usr/bin/env python3
"""A tiny random diffusers `AutoencoderKL` and its outputs, for oxidiff's parity test.

Run from the repository root (with torch, diffusers and safetensors installed):

    /opt/refenv/bin/python tools/reference/vae_golden.py

It writes crates/oxidiff-models/tests/fixtures/tiny_vae/:

- config.json + diffusion_pytorch_model.safetensors: `AutoencoderKL.save_pretrained` of a
  2-level model (8/16 channels, 4 GroupNorm groups, 1 resnet per level, 4 latent channels) with
  diffusers' own random initialisation, seed 0;
- io.safetensors: inputs and outputs in float32 — `x` [2, 3, 16, 16] uniform in [-1, 1],
  the posterior's `mean` and `logvar` of `encode(x)`, `decoded` = `decode(mean)`, and
  `sampled` = `decode(mean + std * noise)` with the stored standard normal `noise`.

`python tools/reference/vae_golden.py --check DIR` loads a directory oxidiff exported with
`from_pretrained` and prints the largest difference of its outputs from the fixture's
(oxidiff's test writes its export of the fixture to DIR when OXIDIFF_EXPORT_DIR is set).
"""

import argparse
import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

OUT = "crates/oxidiff-models/tests/fixtures/tiny_vae"


def build():
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=[8, 16],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    ).eval()


def outputs(vae, x, noise):
    with torch.no_grad():
        posterior = vae.encode(x).latent_dist
        decoded = vae.decode(posterior.mean).sample
        sampled = vae.decode(posterior.mean + posterior.std * noise).sample
    return posterior.mean, posterior.logvar, decoded, sampled


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", help="a directory oxidiff exported")
    args = parser.parse_args()
    if args.check:
        io = load_file(os.path.join(OUT, "io.safetensors"))
        vae = AutoencoderKL.from_pretrained(args.check).eval()
        got = outputs(vae, io["x"], io["noise"])
        for name, value in zip(["mean", "logvar", "decoded", "sampled"], got):
            print(f"{name}: max |diffusers - fixture| = {(value - io[name]).abs().max().item():.3g}")
        return
    vae = build()
    os.makedirs(OUT, exist_ok=True)
    vae.save_pretrained(OUT, safe_serialization=True)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(2, 4, 8, 8, generator=g)
    mean, logvar, decoded, sampled = outputs(vae, x, noise)
    save_file(
        {
            "x": x.contiguous(),
            "noise": noise.contiguous(),
            "mean": mean.contiguous(),
            "logvar": logvar.contiguous(),
            "decoded": decoded.contiguous(),
            "sampled": sampled.contiguous(),
        },
        os.path.join(OUT, "io.safetensors"),
    )
    n = sum(p.numel() for p in vae.parameters())
    print(f"wrote {OUT}: {n} parameters")


if __name__ == "__main__":
    main()
