"""What the reference scripts share: drawing a diffusers model's weights afresh, finding the
directories oxidiff exported, loading a model that must take every tensor of its file, the
tiny autoencoder of the latent pipelines, and CLIP's byte → symbol table.

Imported by unet2d_golden.py, pipeline_check.py, sd_pipeline_check.py and tokenizer_golden.py
(run from the repository root).
"""

import math
import os


def randomise(model, seed):
    """Draws every parameter again: weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1²), GroupNorm
    scales ~ 1 + N(0, 0.2²), class embeddings ~ N(0, 0.5²)."""
    # torch is imported here, not above: tokenizer_golden.py imports this module in an
    # environment without it.
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            norm = "norm" in name.split(".")[-2]
            if norm and name.endswith("weight"):
                p.copy_(1 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif name.startswith("class_embedding"):
                p.copy_(0.5 * noise)
            else:
                fan_in = math.prod(p.shape[1:])
                p.copy_(noise / math.sqrt(fan_in))


def find_exports(dirs, marker):
    """Each of `dirs` that holds the file `marker`, else each directory inside it that does."""
    found = []
    for d in dirs:
        if os.path.isfile(os.path.join(d, marker)):
            found.append(d)
        else:
            found += sorted(
                os.path.join(d, e)
                for e in os.listdir(d)
                if os.path.isfile(os.path.join(d, e, marker))
            )
    return found


def loaded(cls, d, **kw):
    """`cls.from_pretrained(d, **kw)` in eval mode, refusing weights left unused or missing."""
    model, info = cls.from_pretrained(d, output_loading_info=True, low_cpu_mem_usage=False, **kw)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        where = f"{d} {kw}" if kw else d
        raise SystemExit(f"{where}: from_pretrained did not take every tensor: {bad}")
    return model.eval()


def tiny_vae():
    """The latent fixtures' AutoencoderKL: 1-channel 8x8 images, 2 latent channels, f = 2,
    scaling_factor 0.5 (weights as diffusers draws them; randomise them after)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=[8, 16],
        layers_per_block=1,
        latent_channels=2,
        norm_num_groups=4,
        sample_size=8,
        scaling_factor=0.5,
    ).eval()


# Stable Diffusion 1.5's scheduler/scheduler_config.json (PNDMScheduler), but its
# _diffusers_version and the clip_sample it carries for DDIMScheduler.from_config.
SD15_SCHEDULER = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def latent_ddim_scheduler():
    """The latent fixtures' DDIMScheduler: SD's scaled_linear betas, epsilon, no clipping,
    trailing spacing (with steps_offset 1, which trailing ignores)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=1,
        timestep_spacing="trailing",
    )


def bytes_to_unicode():
    """GPT-2's byte → symbol table, in its own order (the vocabulary's first 256 entries)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]
