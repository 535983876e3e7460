#!/usr/bin/env python3
"""Whole diffusers pipelines against oxidiff's, both ways: DDIM from a stored initial noise.

Run from the repository root (with torch, diffusers and safetensors installed):

    /opt/refenv/bin/python tools/reference/pipeline_check.py

writes, under crates/oxidiff-train/tests/fixtures/ (diffusers -> oxidiff):

- tiny_ddpm_pipeline/: `DDPMPipeline.save_pretrained` of a tiny random UNet2DModel (1 -> 1
  channels, 8x8, block_out_channels (8, 16), attention at the second level, 4 GroupNorm
  groups) with a DDPMScheduler that is not the default one (squaredcos_cap_v2 betas,
  v_prediction, fixed_large variance, clip_sample, leading spacing);
- tiny_latent_pipeline/: the parts of a latent model, each `save_pretrained` on its own as
  oxidiff exports them (no diffusers pipeline takes an unconditional UNet2DModel with an
  AutoencoderKL): unet/ (2 -> 2 channels, 4x4), vae/ (1-channel 8x8 images, 2 latent
  channels, scaling_factor 0.5) and a DDIMScheduler in scheduler/ (scaled_linear betas,
  epsilon, no clipping, trailing spacing with steps_offset 1, which trailing ignores);

for crates/oxidiff-train/tests/diffusers_import.rs, each with ddim_io.safetensors: `x_T` (standard normal, seeded), `x_0` = DDIM from it
(DDIMScheduler.from_config of the pipeline's scheduler, 10 steps, eta 0,
use_clipped_model_output=True, which is how oxidiff's DDIM uses a clipped x0), and for the
latent one `images` = vae.decode(x_0 / scaling_factor).sample clamped to [-1, 1]. The weights
are drawn by _common.randomise, as in unet2d_golden.py (GroupNorm scales around 1, non-zero
biases).

`--check-export DIR...` (oxidiff -> diffusers) loads each directory oxidiff exported: with
`DDPMPipeline.from_pretrained` when it has model_index.json (and draws a few images with the
pipeline itself, to show it runs), else each part with `from_pretrained(DIR, subfolder=...)`;
runs the same DDIM from the `x_T` oxidiff stored in DIR/oxidiff_ddim.safetensors (with
oxidiff's `x_0`, and `images` for a latent model; the step count in its metadata) and prints
the largest absolute difference from oxidiff's results. It exits non-zero when a tensor is left
unused or missing, or a difference exceeds 1e-4 (x_0 relative to its largest value when that
is above 1: the unclipped latents of an untrained model reach hundreds). crates/oxidiff-train/tests/export.rs writes
such directories when OXIDIFF_EXPORT_DIR is set.
"""

import argparse
import os
import sys

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import find_exports, latent_ddim_scheduler, loaded, randomise, tiny_vae  # noqa: E402

FIXTURES = "crates/oxidiff-train/tests/fixtures"
STEPS = 10
TOLERANCE = 1e-4


def ddim(unet, scheduler_config, x_t, steps):
    """DDIM over `steps` timesteps from `x_t`, the pipeline's UNet, eta 0."""
    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps)
    x = x_t
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(x, t).sample
            x = scheduler.step(out, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    return x


def decode(vae, latents):
    with torch.no_grad():
        return vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1)


def tiny_unet(sample_size, channels):
    """The fixtures' UNet2DModel of `channels` -> `channels` at `sample_size`: block_out_channels
    (8, 16), one resnet per level, attention (one head of 8) at the second, 4 GroupNorm groups."""
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=4,
    ).eval()


def pixel_fixture():
    torch.manual_seed(0)
    unet = tiny_unet(8, 1)
    randomise(unet, 10)
    scheduler = DDPMScheduler(
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        variance_type="fixed_large",
        clip_sample=True,
        timestep_spacing="leading",
    )
    out = os.path.join(FIXTURES, "tiny_ddpm_pipeline")
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(out, safe_serialization=True)
    x_t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(11))
    x_0 = ddim(unet, scheduler.config, x_t, STEPS)
    save_file({"x_T": x_t, "x_0": x_0.contiguous()}, os.path.join(out, "ddim_io.safetensors"))
    print(f"wrote {out}: |x_0| max {x_0.abs().max().item():.3g}")


def latent_fixture():
    torch.manual_seed(1)
    vae = tiny_vae()
    randomise(vae, 12)
    unet = tiny_unet(4, 2)
    randomise(unet, 13)
    scheduler = latent_ddim_scheduler()
    out = os.path.join(FIXTURES, "tiny_latent_pipeline")
    unet.save_pretrained(os.path.join(out, "unet"), safe_serialization=True)
    vae.save_pretrained(os.path.join(out, "vae"), safe_serialization=True)
    scheduler.save_pretrained(os.path.join(out, "scheduler"))
    x_t = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(14))
    x_0 = ddim(unet, scheduler.config, x_t, STEPS)
    images = decode(vae, x_0)
    save_file(
        {"x_T": x_t, "x_0": x_0.contiguous(), "images": images.contiguous()},
        os.path.join(out, "ddim_io.safetensors"),
    )
    print(f"wrote {out}: |x_0| max {x_0.abs().max().item():.3g}, |images| max {images.abs().max().item():.3g}")


def check_export(d):
    path = os.path.join(d, "oxidiff_ddim.safetensors")
    io = load_file(path)
    with safe_open(path, "pt") as f:
        steps = int(f.metadata()["steps"])
    vae = None
    if os.path.isfile(os.path.join(d, "model_index.json")):
        pipe = DDPMPipeline.from_pretrained(d)
        unet, scheduler_config = pipe.unet.eval(), pipe.scheduler.config
        # The pipeline as a user runs it (its own noise): it must run and give images.
        images = pipe(batch_size=2, num_inference_steps=5, output_type="np", generator=torch.manual_seed(0)).images
        print(f"{d}: DDPMPipeline.from_pretrained ran, images {images.shape} in [{images.min():.2f}, {images.max():.2f}]")
        # from_pretrained above would not say a tensor was dropped: check the UNet alone.
        loaded(UNet2DModel, d, subfolder="unet")
    else:
        unet = loaded(UNet2DModel, d, subfolder="unet")
        scheduler_config = DDPMScheduler.from_pretrained(d, subfolder="scheduler").config
        if os.path.isdir(os.path.join(d, "vae")):
            vae = loaded(AutoencoderKL, d, subfolder="vae")
    x_0 = ddim(unet, scheduler_config, io["x_T"], steps)
    diff = (x_0 - io["x_0"]).abs().max().item()
    scale = max(1.0, io["x_0"].abs().max().item())
    print(f"{d}: DDIM {steps} steps, max |diffusers - oxidiff| = {diff:.3g} (|x_0| max {scale:.3g})")
    # Unclipped latents of an untrained model reach hundreds: their difference counts
    # relative to their size.
    worst = diff / scale
    if vae is not None:
        images = decode(vae, x_0)
        diff = (images - io["images"]).abs().max().item()
        print(f"{d}: decoded images, max |diffusers - oxidiff| = {diff:.3g}")
        worst = max(worst, diff)
    return worst


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-export", nargs="+", metavar="DIR", help="directories oxidiff exported")
    args = parser.parse_args()
    if args.check_export:
        dirs = find_exports(args.check_export, "oxidiff_ddim.safetensors")
        if not dirs:
            raise SystemExit(f"no oxidiff export with oxidiff_ddim.safetensors in {args.check_export}")
        worst = max(check_export(d) for d in dirs)
        if worst > TOLERANCE:
            raise SystemExit(f"diffusers and oxidiff differ by {worst:.3g} > {TOLERANCE} (relative to |x_0| above 1)")
    else:
        pixel_fixture()
        latent_fixture()


if __name__ == "__main__":
    main()
