#!/usr/bin/env python3
"""Tiny random diffusers `UNet2DModel`s and their outputs, for oxidiff's parity test.

Run from the repository root (with torch, diffusers and safetensors installed):

    /opt/refenv/bin/python tools/reference/unet2d_golden.py

It writes, under crates/oxidiff-models/tests/fixtures/:

- tiny_unet2d/: the layout of diffusers' DDPM pipeline test UNet (DownBlock2D then
  AttnDownBlock2D, 2 resnets per level, attention_head_dim 8, positional time embedding,
  additive time injection) at half its width — block_out_channels (16, 32) and 8 GroupNorm
  groups instead of (32, 64) and 32, which would be a 4 MB fixture — so 4 heads of 8;
  3 -> 3 channels, sample_size 8;
- tiny_unet2d_scale_shift/: three levels (8, 16, 16), attention at the middle one only
  (4 heads of 4), 1 resnet per level, resnet_time_scale_shift "scale_shift" with
  attn_norm_num_groups set (so the mid-block attention keeps its GroupNorm), 5 class
  embeddings, time_embedding_dim 40 (not 4 x 8), dropout 0.1, 4 -> 8 channels, sample_size 16.

Each holds `save_pretrained`'s config.json + diffusion_pytorch_model.safetensors, every weight
drawn afresh with a fixed seed by _common.randomise (GroupNorm scales around 1 and non-zero
biases, so a misplaced norm or bias shows in the outputs), and io.safetensors: `x` [3, C, S, S]
standard normal, float `timesteps` [3] (one fractional), int64 `class_labels` [3] for the
class-conditional one, and `out` = `model(x, timesteps, class_labels).sample` in float32, in
eval mode.

`--check-export DIR...` loads each directory oxidiff exported (or each such directory inside
DIR) with `UNet2DModel.from_pretrained`, runs it on the inputs oxidiff stored next to it
(`oxidiff_io.safetensors`: x, timesteps, class_labels when conditional, and oxidiff's own
`out`) and prints the largest absolute difference of diffusers' output from oxidiff's; it
exits non-zero when a tensor is left unused or missing, or a difference exceeds 1e-4.
crates/oxidiff-models/tests/unet2d.rs writes such directories when OXIDIFF_EXPORT_DIR is set.
"""

import argparse
import os
import sys

import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import find_exports, loaded, randomise  # noqa: E402

FIXTURES = "crates/oxidiff-models/tests/fixtures"

CONFIGS = {
    "tiny_unet2d": dict(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=8,
    ),
    "tiny_unet2d_scale_shift": dict(
        sample_size=16,
        in_channels=4,
        out_channels=8,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=4,
        norm_num_groups=4,
        attn_norm_num_groups=4,
        resnet_time_scale_shift="scale_shift",
        num_class_embeds=5,
        time_embedding_dim=40,
        dropout=0.1,
    ),
}


def inputs(config, seed):
    g = torch.Generator().manual_seed(seed)
    size = config["sample_size"]
    x = torch.randn(3, config["in_channels"], size, size, generator=g)
    timesteps = torch.tensor([0.0, 17.5, 999.0])
    io = {"x": x, "timesteps": timesteps}
    if config.get("num_class_embeds"):
        # The last label is oxidiff's "no class" row (num_class_embeds = num_classes + 1).
        io["class_labels"] = torch.tensor([0, 2, config["num_class_embeds"] - 1], dtype=torch.int64)
    return io


def run(model, io):
    with torch.no_grad():
        return model(io["x"], io["timesteps"], class_labels=io.get("class_labels")).sample


def write_fixtures():
    for seed, (name, config) in enumerate(CONFIGS.items()):
        torch.manual_seed(seed)
        model = UNet2DModel(**config).eval()
        randomise(model, seed)
        out_dir = os.path.join(FIXTURES, name)
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir, safe_serialization=True)
        io = inputs(config, 100 + seed)
        io["out"] = run(model, io)
        save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out_dir, "io.safetensors"))
        n = sum(p.numel() for p in model.parameters())
        print(f"wrote {out_dir}: {n} parameters, |out| max {io['out'].abs().max().item():.3g}")


def check_export(dirs):
    found = find_exports(dirs, "config.json")
    if not found:
        raise SystemExit(f"no exported model (config.json) in {dirs}")
    worst = 0.0
    for d in found:
        model = loaded(UNet2DModel, d)
        io = load_file(os.path.join(d, "oxidiff_io.safetensors"))
        diff = (run(model, io) - io["out"]).abs().max().item()
        worst = max(worst, diff)
        print(f"{d}: max |diffusers - oxidiff| = {diff:.3g} (|out| max {io['out'].abs().max().item():.3g})")
    return worst


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-export", nargs="+", metavar="DIR", help="directories oxidiff exported")
    args = parser.parse_args()
    if args.check_export:
        worst = check_export(args.check_export)
        if worst > 1e-4:
            raise SystemExit(f"diffusers and oxidiff differ by {worst:.3g} > 1e-4")
    else:
        write_fixtures()


if __name__ == "__main__":
    main()
