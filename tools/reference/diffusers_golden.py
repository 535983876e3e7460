#!/usr/bin/env python3
"""Golden values for crates/oxidiff-diffusion from Hugging Face diffusers.

Run from the repository root:

    /opt/refenv/bin/python tools/reference/diffusers_golden.py

It writes three small JSON files into crates/oxidiff-diffusion/tests/golden/:

- schedules.json: betas and alphas_cumprod (a subset of indices for T = 1000) for every beta
  schedule, and DDIMScheduler.set_timesteps for several step counts and spacings;
- ddpm.json: DDPMScheduler.add_noise / get_velocity on fixed tensors and DDPMScheduler.step for
  the three prediction types, both fixed variances, with and without clipping; and the step of
  a respaced chain (after set_timesteps(n), also with a learned_range variance);
- ddim.json: DDIMScheduler.step with eta = 0 and eta > 0 (explicit variance_noise) for the three
  prediction types, including a zero-terminal-SNR schedule.

All inputs are generated here from fixed seeds (as float32) and stored next to the outputs, so
the Rust tests need nothing but the JSON.

Precision: schedules.json holds diffusers' own float32 schedules. For the tensor goldens
(ddpm.json, ddim.json) the schedulers' state is promoted to float64 (same formulas, see
`promote`) and the float32 inputs are run through diffusers' unchanged step code in float64.
diffusers in float32 forms quantities such as 1 - alphas_cumprod[t] ~ 1e-4 at small t by
cancellation, and its float32 run is up to 5e-5 away from the float64 one here (DDPM step at
t = 1; 1.3e-5 for DDIM at t = 20, eta = 1); the float64 run is a reference accurate to the final
float32 rounding, which is what the Rust tests' 1e-5 tolerance checks. The script prints the
float32 run's distance for every case.
"""

import json
import math
import pathlib

import diffusers
import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.schedulers import scheduling_ddpm
from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr
from diffusers.utils.torch_utils import randn_tensor

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "oxidiff-diffusion" / "tests" / "golden"
SHAPE = (2, 2, 2, 2)
# Indices kept from T = 1000 schedules: both ends, and a spread in between.
INDICES = [0, 1, 2, 10, 50, 100, 250, 500, 750, 900, 990, 998, 999]
PREDICTIONS = {"epsilon": "epsilon", "sample": "sample", "v_prediction": "velocity"}


def flat(t: torch.Tensor) -> list:
    # The shortest decimal that reads back as the same float32 keeps the files small.
    return [float(str(v)) for v in t.detach().reshape(-1).to(torch.float32).numpy()]


def randn(seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g, dtype=torch.float32) * scale


def promote(sch, rescale: bool = False):
    """Recomputes a linear-schedule scheduler's state in float64 with diffusers' own formulas."""
    c = sch.config
    assert c.beta_schedule == "linear"
    betas = torch.linspace(c.beta_start, c.beta_end, c.num_train_timesteps, dtype=torch.float64)
    if rescale:
        betas = rescale_zero_terminal_snr(betas)
    sch.betas = betas
    sch.alphas = 1.0 - betas
    sch.alphas_cumprod = torch.cumprod(sch.alphas, dim=0)
    sch.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(sch, "final_alpha_cumprod"):
        # set_alpha_to_one=True
        sch.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return sch


def ddpm_step_with_noise(sch, model_output, t, x_t, variance_noise, dtype=torch.float64):
    """DDPMScheduler.step with its variance noise injected: step draws it with the module's
    randn_tensor, which is swapped for one returning `variance_noise` during the call."""
    module = scheduling_ddpm
    original = module.randn_tensor
    module.randn_tensor = lambda shape, **kw: variance_noise.to(kw["dtype"])
    try:
        return sch.step(model_output.to(dtype), t, x_t.to(dtype))
    finally:
        module.randn_tensor = original


def f64(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64)


def dumps(obj, indent: int = 0) -> str:
    """JSON with one line per list of numbers, so the files stay short and diff well."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1).lstrip()}' for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return pad + "[\n" + ",\n".join(dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return pad + json.dumps(obj)


def write(name: str, payload: dict) -> None:
    payload = {
        "generator": "tools/reference/diffusers_golden.py",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        **payload,
    }
    path = OUT / name
    path.write_text(dumps(payload) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def schedules() -> None:
    cases = [
        # (label, our schedule name, diffusers name, beta_start, beta_end, T, rescale)
        ("linear", "linear", "linear", 1e-4, 0.02, 1000, False),
        ("scaled-linear", "scaled-linear", "scaled_linear", 0.00085, 0.012, 1000, False),
        ("cosine", "cosine", "squaredcos_cap_v2", 1e-4, 0.02, 1000, False),
        ("sigmoid", "sigmoid", "sigmoid", 1e-4, 0.02, 1000, False),
        ("linear-zero-snr", "linear", "linear", 1e-4, 0.02, 1000, True),
        ("scaled-linear-zero-snr", "scaled-linear", "scaled_linear", 0.00085, 0.012, 1000, True),
        ("linear-t10", "linear", "linear", 1e-4, 0.02, 10, False),
        ("cosine-t10", "cosine", "squaredcos_cap_v2", 1e-4, 0.02, 10, False),
        ("sigmoid-t10", "sigmoid", "sigmoid", 1e-4, 0.02, 10, False),
    ]
    out = []
    for label, ours, theirs, start, end, steps, rescale in cases:
        s = DDPMScheduler(
            num_train_timesteps=steps,
            beta_schedule=theirs,
            beta_start=start,
            beta_end=end,
            rescale_betas_zero_snr=rescale,
        )
        idx = INDICES if steps == 1000 else list(range(steps))
        out.append(
            {
                "label": label,
                "beta_schedule": ours,
                "beta_start": start,
                "beta_end": end,
                "num_train_timesteps": steps,
                "rescale_zero_terminal_snr": rescale,
                "indices": idx,
                "betas": flat(s.betas[idx]),
                "alphas_cumprod": flat(s.alphas_cumprod[idx]),
            }
        )
        # How far float32 drifts from float64 here (sets the Rust tolerance).
        b64 = s.betas.double().numpy()
        ac64 = np.cumprod(1.0 - b64)
        rel = np.abs(s.alphas_cumprod.double().numpy() - ac64) / np.maximum(ac64, 1e-30)
        rel = rel[ac64 > 0]
        print(f"  {label}: max rel |ac_f32 - cumprod_f64(betas_f32)| = {rel.max():.2e}")

    spacings = []
    for steps, n, spacing in [
        (1000, 10, "leading"),
        (1000, 10, "trailing"),
        (1000, 10, "linspace"),
        (1000, 50, "leading"),
        (1000, 50, "trailing"),
        (1000, 50, "linspace"),
        (1000, 61, "trailing"),  # numpy arange yields 62 values here; diffusers ends on -1
        (15, 13, "trailing"),
        (10, 10, "linspace"),
        (1000, 7, "linspace"),
        (1000, 3, "trailing"),
    ]:
        s = DDIMScheduler(num_train_timesteps=steps, timestep_spacing=spacing, steps_offset=0)
        s.set_timesteps(n)
        spacings.append(
            {
                "num_train_timesteps": steps,
                "num_inference_steps": n,
                "timestep_spacing": spacing,
                "timesteps": [int(v) for v in s.timesteps.tolist()],
            }
        )
    write("schedules.json", {"schedules": out, "respace": spacings})


def ddpm() -> None:
    x_start = randn(1).clamp(-1, 1)
    noise = randn(2)
    model_output = randn(3)
    x_t = randn(4)
    timesteps = [10, 900]
    s = promote(DDPMScheduler(num_train_timesteps=1000))
    add_noise = s.add_noise(f64(x_start), f64(noise), torch.tensor(timesteps))
    velocity = s.get_velocity(f64(x_start), f64(noise), torch.tensor(timesteps))

    steps = []
    cases = []
    for pred in PREDICTIONS:
        for t in (0, 50, 999):
            cases.append((pred, "fixed_small", True, t))
        cases.append((pred, "fixed_large", False, 500))
    cases.append(("epsilon", "fixed_small", False, 999))
    cases.append(("epsilon", "fixed_large", True, 1))
    for seed, (pred, variance, clip, t) in enumerate(cases, start=100):
        kwargs = dict(num_train_timesteps=1000, prediction_type=pred, variance_type=variance, clip_sample=clip)
        variance_noise = randn(seed)
        result = ddpm_step_with_noise(promote(DDPMScheduler(**kwargs)), model_output, t, x_t, variance_noise)
        f32_run = ddpm_step_with_noise(DDPMScheduler(**kwargs), model_output, t, x_t, variance_noise, torch.float32)
        drift = (f32_run.prev_sample.double() - result.prev_sample).abs().max().item()
        print(f"  ddpm {pred} {variance} clip={clip} t={t}: the float32 run differs by {drift:.1e}")
        if t > 0:
            # The injected noise is what the step added, scaled by the configured sigma_t.
            sch = promote(DDPMScheduler(**kwargs))
            mean = ddpm_step_with_noise(sch, model_output, t, x_t, torch.zeros(SHAPE)).prev_sample
            sigma = sch._get_variance(t) ** 0.5
            assert torch.allclose(result.prev_sample - mean, sigma * f64(variance_noise), atol=1e-12)
        steps.append(
            {
                "prediction": PREDICTIONS[pred],
                "ddpm_variance": variance.replace("_", "-"),
                "clip_sample": clip,
                "t": t,
                "variance_noise": flat(variance_noise),
                "pred_original_sample": flat(result.pred_original_sample),
                "prev_sample": flat(result.prev_sample),
            }
        )
    respaced = []
    # (prediction, variance, clip, spacing, num_inference_steps, t): DDPMScheduler after
    # set_timesteps, so the step goes from t to t - T // n with beta' = 1 - abar_t / abar_prev.
    respaced_cases = [
        ("epsilon", "fixed_small", True, "leading", 10, 900),
        ("epsilon", "fixed_small", True, "leading", 10, 100),
        ("epsilon", "fixed_small", True, "leading", 10, 0),
        ("sample", "fixed_large", False, "leading", 50, 500),
        ("v_prediction", "fixed_small", True, "trailing", 10, 999),
        ("epsilon", "learned_range", True, "leading", 10, 900),
        ("epsilon", "learned_range", False, "leading", 25, 40),
    ]
    for seed, (pred, variance, clip, spacing, n, t) in enumerate(respaced_cases, start=200):
        kwargs = dict(
            num_train_timesteps=1000,
            prediction_type=pred,
            variance_type=variance,
            clip_sample=clip,
            timestep_spacing=spacing,
        )
        sch = promote(DDPMScheduler(**kwargs))
        sch.set_timesteps(n)
        assert t in sch.timesteps.tolist()
        learned = variance == "learned_range"
        output = torch.cat([model_output, randn(seed + 50).clamp(-1, 1)], dim=1) if learned else model_output
        variance_noise = randn(seed)
        result = ddpm_step_with_noise(sch, output, t, x_t, variance_noise)
        respaced.append(
            {
                "prediction": PREDICTIONS[pred],
                "ddpm_variance": "fixed-large" if variance == "fixed_large" else "fixed-small",
                "learned_variance": learned,
                "clip_sample": clip,
                "timestep_spacing": spacing,
                "num_inference_steps": n,
                "t": t,
                "prev_t": int(sch.previous_timestep(t)),
                "model_output": flat(output),
                "variance_noise": flat(variance_noise),
                "prev_sample": flat(result.prev_sample),
            }
        )
    write(
        "ddpm.json",
        {
            "shape": list(SHAPE),
            "x_start": flat(x_start),
            "noise": flat(noise),
            "timesteps": timesteps,
            "add_noise": flat(add_noise),
            "velocity": flat(velocity),
            "model_output": flat(model_output),
            "x_t": flat(x_t),
            "steps": steps,
            "respaced_steps": respaced,
        },
    )


def ddim() -> None:
    model_output = randn(5)
    x_t = randn(6)
    variance_noise = randn(7)
    cases = []
    for pred in PREDICTIONS:
        # (prediction, num_inference_steps, spacing, t, eta, clip, rescale)
        cases.append((pred, 50, "leading", 980, 0.0, False, False))
        cases.append((pred, 50, "leading", 0, 0.0, False, False))
        cases.append((pred, 50, "leading", 500, 0.5, False, False))
        cases.append((pred, 50, "leading", 20, 1.0, True, False))
    cases.append(("epsilon", 50, "leading", 980, 0.0, True, False))
    cases.append(("v_prediction", 10, "trailing", 999, 0.0, False, True))
    cases.append(("v_prediction", 10, "trailing", 999, 0.5, True, True))
    cases.append(("sample", 10, "trailing", 999, 0.0, False, True))
    steps = []
    for pred, n, spacing, t, eta, clip, rescale in cases:
        sch = DDIMScheduler(
            num_train_timesteps=1000,
            prediction_type=pred,
            clip_sample=clip,
            set_alpha_to_one=True,
            steps_offset=0,
            timestep_spacing=spacing,
            rescale_betas_zero_snr=rescale,
        )
        promote(sch, rescale=rescale)
        sch.set_timesteps(n)
        result = sch.step(
            f64(model_output),
            t,
            f64(x_t),
            eta=eta,
            # Re-derive eps from the clipped x0 as GLIDE/ADM do (what oxidiff implements).
            use_clipped_model_output=True,
            variance_noise=f64(variance_noise) if eta > 0 else None,
        )
        f32_run = DDIMScheduler(**sch.config)
        f32_run.set_timesteps(n)
        f32_run = f32_run.step(
            model_output, t, x_t, eta=eta, use_clipped_model_output=True,
            variance_noise=variance_noise if eta > 0 else None,
        )
        drift = (f32_run.prev_sample.double() - result.prev_sample).abs().max().item()
        print(f"  ddim {pred} t={t} eta={eta} clip={clip} zero-snr={rescale}: the float32 run differs by {drift:.1e}")
        prev_t = t - 1000 // n
        assert not torch.isnan(result.prev_sample).any()
        steps.append(
            {
                "prediction": PREDICTIONS[pred],
                "timestep_spacing": spacing,
                "num_inference_steps": n,
                "rescale_zero_terminal_snr": rescale,
                "clip_sample": clip,
                "t": t,
                "prev_t": prev_t if prev_t >= 0 else None,
                "eta": eta,
                "pred_original_sample": flat(result.pred_original_sample),
                "prev_sample": flat(result.prev_sample),
            }
        )
    write(
        "ddim.json",
        {
            "shape": list(SHAPE),
            "model_output": flat(model_output),
            "x_t": flat(x_t),
            "variance_noise": flat(variance_noise),
            "steps": steps,
        },
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    schedules()
    ddpm()
    ddim()
    assert math.isclose(DDIMScheduler().final_alpha_cumprod.item(), 1.0)


if __name__ == "__main__":
    main()
