#!/usr/bin/env python3
"""Golden SSIM values for crates/oxidiff-train/src/eval/ssim.rs from scikit-image.

Run from the repository root:

    /opt/refenv/bin/pip install scikit-image   # once
    /opt/refenv/bin/python tools/reference/ssim_golden.py

It writes crates/oxidiff-train/tests/golden/ssim.json: image pairs in [-1, 1] (an image and a
noisy, blurred or shifted copy) with `structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1, win_size=2r+1)` of the pixels mapped to [0, 1],
r = min(5, (size-1)//2): the 11x11 window, or the largest that fits a smaller image (the
Gaussian itself always has 11 taps, the image reflected at its borders).
"""
import json
import pathlib

import numpy as np
import skimage
from skimage.metrics import structural_similarity

rng = np.random.default_rng(20261202)
cases = []
for size, channels, kind in [
    (16, 3, "noise"),
    (16, 1, "blur"),
    (12, 2, "shift"),
    (8, 1, "noise"),
    (32, 1, "noise"),
]:
    a = np.clip(rng.normal(0, 0.5, (channels, size, size)), -1, 1)
    # Smooth structure so SSIM is far from 0 and 1.
    a = np.clip(a + np.linspace(-0.5, 0.5, size)[None, None, :], -1, 1)
    if kind == "noise":
        b = np.clip(a + rng.normal(0, 0.2, a.shape), -1, 1)
    elif kind == "blur":
        b = (a + np.roll(a, 1, axis=2) + np.roll(a, 1, axis=1)) / 3
    else:
        b = np.roll(a, 1, axis=2)
    r = min(5, (size - 1) // 2)
    value = structural_similarity(
        (a + 1) / 2,
        (b + 1) / 2,
        channel_axis=0,
        gaussian_weights=True,
        sigma=1.5,
        win_size=2 * r + 1,
        use_sample_covariance=False,
        data_range=1.0,
    )
    cases.append(
        {
            "size": size,
            "channels": channels,
            "kind": kind,
            "a": [round(float(v), 6) for v in a.astype(np.float32).ravel()],
            "b": [round(float(v), 6) for v in b.astype(np.float32).ravel()],
            "ssim": float(value),
        }
    )

out = pathlib.Path("crates/oxidiff-train/tests/golden/ssim.json")
out.write_text(json.dumps({"skimage": skimage.__version__, "cases": cases}) + "\n")
print(f"wrote {out}: " + ", ".join(f"{c['size']}x{c['channels']} {c['kind']} {c['ssim']:.6f}" for c in cases))
