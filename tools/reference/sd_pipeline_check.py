#!/usr/bin/env python3
"""A StableDiffusionPipeline directory oxidiff exported, run by the real diffusers.

    /opt/refenv/bin/python tools/reference/sd_pipeline_check.py --check-export DIR...

For each directory holding `oxidiff_sd.safetensors` (written by
crates/oxidiff-train/tests/stable_diffusion_export.rs with OXIDIFF_EXPORT_DIR set), loads it
with `StableDiffusionPipeline.from_pretrained` (every part checked for missing or unused
tensors first), swaps in a `DDIMScheduler` from the exported scheduler config, and calls the
pipeline as a user does: the stored prompt, negative prompt and guidance scale, the stored
initial latents x_T, the same number of steps, eta 0. It prints the largest absolute
differences of the final latents (relative to their largest value when it exceeds 1: an
untrained UNet's latents can be large) and of the images the VAE decodes from them, and exits
non-zero above 1e-4.
"""

import argparse
import os
import sys

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import find_exports, loaded  # noqa: E402

TOLERANCE = 1e-4


def check_export(d):
    path = os.path.join(d, "oxidiff_sd.safetensors")
    io = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    steps = int(meta["steps"])
    # from_pretrained below would not say a tensor was dropped: check the parts alone.
    loaded(UNet2DConditionModel, d, subfolder="unet")
    loaded(AutoencoderKL, d, subfolder="vae")
    pipe = StableDiffusionPipeline.from_pretrained(d)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    x_t = io["x_T"]
    with torch.no_grad():
        latents = pipe(
            prompt=[meta["prompt"]] * x_t.shape[0],
            negative_prompt=[meta["negative_prompt"]] * x_t.shape[0],
            guidance_scale=float(meta["guidance_scale"]),
            num_inference_steps=steps,
            eta=0.0,
            latents=x_t.clone(),
            height=x_t.shape[2] * pipe.vae_scale_factor,
            width=x_t.shape[3] * pipe.vae_scale_factor,
            output_type="latent",
        ).images
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)
    scale = max(1.0, io["x_0"].abs().max().item())
    diff = (latents - io["x_0"]).abs().max().item()
    print(
        f"{d}: StableDiffusionPipeline, {pipe.text_encoder.__class__.__name__}, DDIM {steps} steps, "
        f"guidance {meta['guidance_scale']}: max |diffusers - oxidiff| latents = {diff:.3g} (|x_0| max {scale:.3g})"
    )
    worst = diff / scale
    diff = (images - io["images"]).abs().max().item()
    print(f"{d}: decoded images, max |diffusers - oxidiff| = {diff:.3g}")
    return max(worst, diff)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-export", nargs="+", metavar="DIR", required=True)
    args = parser.parse_args()
    dirs = find_exports(args.check_export, "oxidiff_sd.safetensors")
    if not dirs:
        raise SystemExit(f"no oxidiff export with oxidiff_sd.safetensors in {args.check_export}")
    worst = max(check_export(d) for d in dirs)
    if worst > TOLERANCE:
        raise SystemExit(f"diffusers and oxidiff differ by {worst:.3g} > {TOLERANCE}")


if __name__ == "__main__":
    main()
