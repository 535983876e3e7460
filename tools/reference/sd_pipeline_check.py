#!/usr/bin/env python3
"""StableDiffusionPipeline directories both ways, with the real diffusers.

    /opt/refenv/bin/python tools/reference/sd_pipeline_check.py

writes crates/oxidiff-train/tests/fixtures/tiny_sd_pipeline/ (diffusers -> oxidiff):
`StableDiffusionPipeline.save_pretrained` of a tiny random pipeline and `sd_io.safetensors`
with the pipeline's own guided DDIM run (x_T, the final latents x_0, the decoded images; the
prompt, negative prompt, guidance scale and steps in its metadata):

- tokenizer/: CLIP's BPE cut to its first 250 merges (the 256 byte symbols, their end-of-word
  forms, 250 merges, <|startoftext|> 762 and <|endoftext|> 763), built from open_clip's
  bpe_simple_vocab_16e6.txt.gz as CLIP's SimpleTokenizer builds it, 16 tokens of context;
- text_encoder/: a random CLIPTextModel (764 tokens, 32 wide, 2 layers of 4 heads);
- unet/: a random UNet2DConditionModel (2 -> 2 channels, 4x4, block_out_channels (8, 16), a
  cross-attention level and a plain one, cross_attention_dim 32, 2 heads, 4 GroupNorm groups);
- vae/: a random AutoencoderKL (1-channel 8x8 images, 2 latent channels, scaling_factor 0.5);
- scheduler/: a DDIMScheduler (scaled_linear betas, no clipping, trailing spacing);

weights drawn by _common.randomise. Beside it, fixtures/tiny_sd_pipeline_pndm/ holds Stable
Diffusion 1.5's own scheduler config (a PNDMScheduler: PLMS, leading spacing with steps_offset
1, set_alpha_to_one false) as `save_pretrained` writes it, and the same pipeline's guided run
with that scheduler in its `sd_io.safetensors`. crates/oxidiff-train/tests/stable_diffusion_pipeline.rs
samples it with oxidiff and compares.

    /opt/refenv/bin/python tools/reference/sd_pipeline_check.py --check-export DIR...

For each directory holding `oxidiff_sd.safetensors` (written by
crates/oxidiff-train/tests/stable_diffusion_pipeline.rs with OXIDIFF_EXPORT_DIR set), loads it
with `StableDiffusionPipeline.from_pretrained` (every part checked for missing or unused
tensors first), swaps in a `DDIMScheduler` from the exported scheduler config, and calls the
pipeline as a user does: the stored prompt, negative prompt and guidance scale, the stored
initial latents x_T, the same number of steps, eta 0. It prints the largest absolute
differences of the final latents (relative to their largest value when it exceeds 1: an
untrained UNet's latents can be large) and of the images the VAE decodes from them, and exits
non-zero above 1e-4.
"""

import argparse
import gzip
import json
import os
import sys
import tempfile

import torch
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SD15_SCHEDULER, bytes_to_unicode, find_exports, latent_ddim_scheduler, loaded, randomise, tiny_vae  # noqa: E402

TOLERANCE = 1e-4
FIXTURE = "crates/oxidiff-train/tests/fixtures/tiny_sd_pipeline"
PNDM_FIXTURE = "crates/oxidiff-train/tests/fixtures/tiny_sd_pipeline_pndm"
VOCAB = "assets/clip/bpe_simple_vocab_16e6.txt.gz"
MERGES = 250
CONTEXT = 16
PROMPT = "a red cat"
NEGATIVE = "blurry"
GUIDANCE = 4.0
STEPS = 10


def tiny_tokenizer(dir):
    """vocab.json + merges.txt of CLIP's BPE cut to its first MERGES merges."""
    lines = gzip.open(VOCAB).read().decode("utf-8").split("\n")[1 : MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    vocab = bytes_to_unicode()
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(dir, "vocab.json"), "w") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f)
    with open(os.path.join(dir, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return CLIPTokenizer(
        os.path.join(dir, "vocab.json"),
        os.path.join(dir, "merges.txt"),
        pad_token="<|endoftext|>",
        model_max_length=CONTEXT,
    ), len(vocab)


def fixture():
    torch.manual_seed(3)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, vocab_size = tiny_tokenizer(tmp)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=CONTEXT,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    ).eval()
    randomise(text_encoder, 31)
    unet = UNet2DConditionModel(
        sample_size=4,
        in_channels=2,
        out_channels=2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=4,
    ).eval()
    randomise(unet, 32)
    vae = tiny_vae()
    randomise(vae, 33)
    scheduler = latent_ddim_scheduler()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(FIXTURE, safe_serialization=True)
    x_t = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(34))
    latents = guided_run(pipe, x_t, os.path.join(FIXTURE, "sd_io.safetensors"))
    print(f"wrote {FIXTURE}: |x_0| max {latents.abs().max().item():.3g}, ids of {PROMPT!r}: {tokenizer(PROMPT).input_ids}")
    pipe.scheduler = PNDMScheduler(**SD15_SCHEDULER)
    pipe.scheduler.save_pretrained(PNDM_FIXTURE)
    latents = guided_run(pipe, x_t, os.path.join(PNDM_FIXTURE, "sd_io.safetensors"))
    print(f"wrote {PNDM_FIXTURE}: PNDM, |x_0| max {latents.abs().max().item():.3g}")


def guided_run(pipe, x_t, path):
    """The pipeline's guided run from latents x_t, saved to `path` with the decoded images."""
    with torch.no_grad():
        latents = pipe(
            prompt=[PROMPT] * 2,
            negative_prompt=[NEGATIVE] * 2,
            guidance_scale=GUIDANCE,
            num_inference_steps=STEPS,
            eta=0.0,
            latents=x_t.clone(),
            height=8,
            width=8,
            output_type="latent",
        ).images
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)
    metadata = {"steps": str(STEPS), "prompt": PROMPT, "negative_prompt": NEGATIVE, "guidance_scale": str(GUIDANCE)}
    save_file({"x_T": x_t, "x_0": latents.contiguous(), "images": images.contiguous()}, path, metadata=metadata)
    return latents


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
    parser.add_argument("--check-export", nargs="+", metavar="DIR")
    args = parser.parse_args()
    if not args.check_export:
        fixture()
        return
    dirs = find_exports(args.check_export, "oxidiff_sd.safetensors")
    if not dirs:
        raise SystemExit(f"no oxidiff export with oxidiff_sd.safetensors in {args.check_export}")
    worst = max(check_export(d) for d in dirs)
    if worst > TOLERANCE:
        raise SystemExit(f"diffusers and oxidiff differ by {worst:.3g} > {TOLERANCE}")


if __name__ == "__main__":
    main()
