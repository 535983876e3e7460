#!/usr/bin/env python3
"""Tiny random diffusers `UNet2DConditionModel`s and their outputs, for oxidiff's parity test.

Run from the repository root (with torch, diffusers and safetensors installed):

    /opt/refenv/bin/python tools/reference/unet2d_condition_golden.py [--full DIR]

It writes, under crates/oxidiff-models/tests/fixtures/:

- tiny_unet2d_condition/: the layout of diffusers' own UNet2DConditionModel test config
  (DownBlock2D then CrossAttnDownBlock2D, 2 resnets per level, cross_attention_dim 32,
  attention_head_dim 8 — in this class the number of heads —, 1x1-convolution projections,
  4 -> 4 channels) at a quarter of its width, block_out_channels (8, 16) with 4 GroupNorm
  groups instead of (32, 64) with 32, which would be a 5.7 MB fixture; sample_size 16;
- tiny_unet2d_condition_linear/: three levels (8, 16, 16) with cross-attention at the first
  two, 1 resnet per level, use_linear_projection, transformer_layers_per_block 2,
  attention_head_dim (2, 4, 8) (so the mid block has the last level's 8 heads, a level without
  attention), cross_attention_dim 12, resnet_time_scale_shift "scale_shift", 3 class
  embeddings, time_embedding_dim 40.

`--full DIR` also writes diffusers' test config itself, full width (block_out_channels
(32, 64), norm_num_groups 32), as DIR/tiny_unet2d_condition_full: not committed (5.7 MB); the
test loads it when OXIDIFF_UNET2D_CONDITION_FULL=DIR/tiny_unet2d_condition_full is set.

Each holds `save_pretrained`'s config.json + diffusion_pytorch_model.safetensors, every weight
drawn afresh with a fixed seed by _common.randomise (norm scales around 1, non-zero biases and
output projections, so a misplaced weight shows in the outputs), and io.safetensors: `x`
[2, 4, 16, 16] standard normal, float `timesteps` [2] (one fractional), `encoder_hidden_states`
[2, 7, cross_attention_dim] standard normal, int64 `class_labels` [2] for the class-conditional
one, and `out` = `model(x, timesteps, encoder_hidden_states, class_labels).sample` in float32,
in eval mode.

`--check-export DIR...` loads each directory oxidiff exported (or each such directory inside
DIR) with `UNet2DConditionModel.from_pretrained`, runs it on the inputs oxidiff stored next to
it (`oxidiff_io.safetensors`: the inputs above and oxidiff's own `out`) and prints the largest
absolute difference of diffusers' output from oxidiff's; it exits non-zero when a tensor is
left unused or missing, or a difference exceeds 1e-4. crates/oxidiff-models/tests/
unet2d_condition.rs writes such directories when OXIDIFF_EXPORT_DIR is set.
"""

import argparse
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import find_exports, loaded, randomise  # noqa: E402

FIXTURES = "crates/oxidiff-models/tests/fixtures"

# diffusers' own test config (tests/models/unets/test_models_unet_2d_condition.py).
DIFFUSERS_TEST = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=32,
)

CONFIGS = {
    "tiny_unet2d_condition": dict(DIFFUSERS_TEST, block_out_channels=(8, 16), norm_num_groups=4),
    "tiny_unet2d_condition_linear": dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=12,
        attention_head_dim=(2, 4, 8),
        norm_num_groups=4,
        use_linear_projection=True,
        transformer_layers_per_block=2,
        resnet_time_scale_shift="scale_shift",
        num_class_embeds=3,
        time_embedding_dim=40,
    ),
}


def inputs(config, seed):
    g = torch.Generator().manual_seed(seed)
    size = config["sample_size"]
    x = torch.randn(2, config["in_channels"], size, size, generator=g)
    context = torch.randn(2, 7, config["cross_attention_dim"], generator=g)
    io = {"x": x, "timesteps": torch.tensor([3.0, 621.5]), "encoder_hidden_states": context}
    if config.get("num_class_embeds"):
        # The last label is oxidiff's "no class" row (num_class_embeds = num_classes + 1).
        io["class_labels"] = torch.tensor([0, config["num_class_embeds"] - 1], dtype=torch.int64)
    return io


def run(model, io):
    with torch.no_grad():
        return model(
            io["x"],
            io["timesteps"],
            encoder_hidden_states=io["encoder_hidden_states"],
            class_labels=io.get("class_labels"),
        ).sample


def write_fixture(out_dir, config, seed):
    torch.manual_seed(seed)
    model = UNet2DConditionModel(**config).eval()
    randomise(model, seed)
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
        model = loaded(UNet2DConditionModel, d)
        io = load_file(os.path.join(d, "oxidiff_io.safetensors"))
        diff = (run(model, io) - io["out"]).abs().max().item()
        worst = max(worst, diff)
        print(f"{d}: max |diffusers - oxidiff| = {diff:.3g} (|out| max {io['out'].abs().max().item():.3g})")
    return worst


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-export", nargs="+", metavar="DIR", help="directories oxidiff exported")
    parser.add_argument("--full", metavar="DIR", help="also write diffusers' test config, full width, here")
    args = parser.parse_args()
    if args.check_export:
        worst = check_export(args.check_export)
        if worst > 1e-4:
            raise SystemExit(f"diffusers and oxidiff differ by {worst:.3g} > 1e-4")
        return
    for seed, (name, config) in enumerate(CONFIGS.items()):
        write_fixture(os.path.join(FIXTURES, name), config, seed)
    if args.full:
        write_fixture(os.path.join(args.full, "tiny_unet2d_condition_full"), DIFFUSERS_TEST, 7)


if __name__ == "__main__":
    main()
