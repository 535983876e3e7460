"""What the reference scripts share: drawing a diffusers model's weights afresh, finding the
directories oxidiff exported, and loading a model that must take every tensor of its file.

Imported by unet2d_golden.py and pipeline_check.py (run from the repository root).
"""

import math
import os

import torch


def randomise(model, seed):
    """Draws every parameter again: weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1²), GroupNorm
    scales ~ 1 + N(0, 0.2²), class embeddings ~ N(0, 0.5²)."""
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
