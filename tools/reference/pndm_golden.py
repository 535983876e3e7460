#!/usr/bin/env python3
"""Golden values for Stable Diffusion 1.x's scheduler settings in crates/oxidiff-diffusion, from
Hugging Face diffusers.

Run from the repository root:

    /opt/refenv/bin/python tools/reference/pndm_golden.py

It writes crates/oxidiff-diffusion/tests/golden/pndm.json with whole sampling runs of

- PNDMScheduler with skip_prk_steps = True (PLMS): Stable Diffusion 1.5's own scheduler config
  (scaled_linear 0.00085 to 0.012, set_alpha_to_one = False, steps_offset = 1, leading spacing)
  at 1, 3 and 10 steps, and a v-prediction run with linear betas, trailing spacing (5 steps,
  where diffusers' t - T//n is the next trailing timestep) and set_alpha_to_one = True;
- DDIMScheduler (eta = 0) from the same Stable Diffusion config, as `DDIMScheduler.from_config(
  pipe.scheduler.config)` makes it (clip_sample = False): leading timesteps shifted by
  steps_offset and a last step to alphas_cumprod[0] instead of 1.

The model is replaced by a list of stored outputs, one per network call (float32 values from
seeded torch generators), so the Rust test replays them in order and checks that it asks for the
timesteps the scheduler visits (PLMS visits its second timestep twice). Each run stores the
sample after every scheduler call. As in sampler_golden.py, the schedulers' alphas_cumprod and
final_alpha_cumprod are recomputed in float64 with diffusers' formulas and the runs are in
float64 on float32 inputs; the float32 run's distance is printed.
"""

import os
import pathlib
import sys

import diffusers
import torch
from diffusers import DDIMScheduler, PNDMScheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SD15_SCHEDULER as SD15  # noqa: E402
from sampler_golden import betas64, drift, dumps, flat, randn  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "oxidiff-diffusion" / "tests" / "golden"
SHAPE = (2, 2, 2, 2)
PREDICTIONS = {"epsilon": "epsilon", "v_prediction": "velocity"}
SCHEDULES = {"linear": "linear", "scaled_linear": "scaled-linear"}


def promote(sch):
    """alphas_cumprod and final_alpha_cumprod in float64, by diffusers' formulas."""
    sch.betas = betas64(sch.config)
    sch.alphas = 1.0 - sch.betas
    sch.alphas_cumprod = torch.cumprod(sch.alphas, dim=0)
    sch.final_alpha_cumprod = (
        torch.tensor(1.0, dtype=torch.float64) if sch.config.set_alpha_to_one else sch.alphas_cumprod[0]
    )
    return sch


def run(sch, steps: int, seed: int, promoted: bool):
    """The scheduler's loop with the stored model outputs; returns (timesteps, x_T, outputs,
    samples after each call)."""
    if promoted:
        promote(sch)
    sch.set_timesteps(steps)
    dtype = torch.float64 if promoted else torch.float32
    x = randn(seed, shape=SHAPE).to(dtype)
    x_start = x.clone()
    outputs, samples = [], []
    for k, t in enumerate(sch.timesteps):
        out = randn(seed + 1 + k, shape=SHAPE).to(dtype)
        outputs.append(out)
        x = sch.step(out, int(t), x).prev_sample
        samples.append(x)
    return [int(t) for t in sch.timesteps], x_start, outputs, samples


def case(name, cls, config: dict, steps: int, seed: int) -> dict:
    timesteps, x_start, outputs, samples = run(cls(**config), steps, seed, True)
    _, _, _, samples32 = run(cls(**config), steps, seed, False)
    print(f"{name}: {len(timesteps)} calls, float32 diffusers off by {drift(samples[-1], samples32[-1]):.2e}")
    full = cls(**config).config
    return {
        "name": name,
        "scheduler": cls.__name__,
        "beta_schedule": SCHEDULES[full.beta_schedule],
        "beta_start": full.beta_start,
        "beta_end": full.beta_end,
        "num_train_timesteps": full.num_train_timesteps,
        "prediction": PREDICTIONS[full.prediction_type],
        "timestep_spacing": full.timestep_spacing,
        "steps_offset": full.steps_offset,
        "set_alpha_to_one": full.set_alpha_to_one,
        "num_inference_steps": steps,
        "timesteps": timesteps,
        "x_t": flat(x_start),
        "outputs": [flat(o) for o in outputs],
        "samples": [flat(s) for s in samples],
    }


def main() -> None:
    cases = [
        case("sd15 pndm 10 steps", PNDMScheduler, SD15, 10, 100),
        case("sd15 pndm 3 steps", PNDMScheduler, SD15, 3, 200),
        case("sd15 pndm 1 step", PNDMScheduler, SD15, 1, 300),
        case(
            "pndm v-prediction trailing",
            PNDMScheduler,
            {
                "beta_schedule": "linear",
                "skip_prk_steps": True,
                "set_alpha_to_one": True,
                "prediction_type": "v_prediction",
                "timestep_spacing": "trailing",
            },
            # 5 divides T: diffusers' PNDM steps to t - T//n, which is the next trailing
            # timestep only then (oxidiff always steps to the next one, as its DDIM).
            5,
            400,
        ),
    ]
    # DDIMScheduler.from_config(PNDM's config), as a diffusers user swaps SD's scheduler; SD
    # 1.5's scheduler_config.json carries clip_sample = false for that.
    ddim_config = {k: v for k, v in SD15.items() if k != "skip_prk_steps"}
    ddim_config["clip_sample"] = False
    cases.append(case("sd15 ddim 10 steps", DDIMScheduler, ddim_config, 10, 500))
    payload = {
        "generator": f"tools/reference/pndm_golden.py (diffusers {diffusers.__version__}, torch {torch.__version__})",
        "shape": list(SHAPE),
        "runs": cases,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "pndm.json").write_text(dumps(payload) + "\n")
    print(f"wrote {OUT / 'pndm.json'}")


if __name__ == "__main__":
    main()
