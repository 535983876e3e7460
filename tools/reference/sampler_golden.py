#!/usr/bin/env python3
"""Golden values for the σ-space samplers of crates/oxidiff-diffusion from Hugging Face diffusers.

Run from the repository root:

    /opt/refenv/bin/python tools/reference/sampler_golden.py

It writes crates/oxidiff-diffusion/tests/golden/samplers.json with

- schedules: the sigmas and timesteps that EulerDiscreteScheduler, HeunDiscreteScheduler and
  DPMSolverMultistepScheduler.set_timesteps compute for a few step counts, spacings and beta
  schedules, with and without Karras sigmas (Heun's interleaved lists are de-interleaved);
- euler: EulerDiscreteScheduler.step for epsilon, v and sample prediction at the first, a middle
  and the last step, with Karras sigmas, and with s_churn > 0 (its noise injected explicitly);
- heun: both half-calls of HeunDiscreteScheduler.step (first-order, then the correction, for two
  given model outputs), discrete and Karras sigmas, with and without clip_sample, and the last
  step (a single Euler call to sigma = 0);
- dpm_solver: two consecutive DPMSolverMultistepScheduler.step calls (solver_order = 2,
  solver_type = "midpoint", final_sigmas_type = "zero") for "dpmsolver++" and
  "sde-dpmsolver++" (explicit variance_noise): from the first step (first order, then second
  order), in the middle, and ending on the last step (lower_order_final: first order), plus
  Karras sigmas and a learned-variance output.

All inputs are float32 values generated here from seeded torch generators and stored next to the
outputs, together with the exact sigmas each step used, so the Rust tests need nothing but the
JSON and compare every step on identical sigmas.

Precision. The schedulers' alphas_cumprod is recomputed in float64 with diffusers' formulas
(`promote`): in float32, 1 - alphas_cumprod[0] = 1e-4 cancels and sigma_0 is off by ~1e-4
relative (the script prints it), far above the 1e-6 the Rust test checks. set_timesteps still
casts its sigmas to float32 at the end (6e-8 relative), which is kept. For the steps, the state is
promoted the same way and, during every scheduler call, the scheduler module's `torch.float32`
means float64 (`float64_torch`): Euler and DPM-Solver cast the sample to float32 "to avoid
precision issues" and would otherwise do scalar-times-sample products in float32. The inputs are
float32 values, so nothing is lost in the cast itself. The float64 run is then a reference
accurate to the final float32 rounding; the float32 run's distance is printed for every case.
"""

import contextlib
import json
import math
import pathlib

import diffusers
import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler
from diffusers.schedulers import (
    scheduling_dpmsolver_multistep,
    scheduling_euler_discrete,
    scheduling_heun_discrete,
)
from diffusers.schedulers.scheduling_euler_discrete import rescale_zero_terminal_snr

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "oxidiff-diffusion" / "tests" / "golden"
SHAPE = (2, 2, 2, 2)
PREDICTIONS = {"epsilon": "epsilon", "sample": "sample", "v_prediction": "velocity"}
SCHEDULES = {"linear": "linear", "scaled_linear": "scaled-linear", "squaredcos_cap_v2": "cosine"}
MODULES = {
    EulerDiscreteScheduler: scheduling_euler_discrete,
    HeunDiscreteScheduler: scheduling_heun_discrete,
    DPMSolverMultistepScheduler: scheduling_dpmsolver_multistep,
}


def flat(t: torch.Tensor) -> list:
    # The shortest decimal that reads back as the same float32 keeps the file small.
    return [float(str(v)) for v in t.detach().reshape(-1).to(torch.float32).numpy()]


def f32(t: torch.Tensor) -> torch.Tensor:
    """Rounds to float32 (the value a float32 JSON entry holds), kept as float64."""
    return t.to(torch.float32).to(torch.float64)


def scalar(t) -> float:
    return float(t)


def randn(seed: int, scale: float = 1.0, shape=SHAPE) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32) * scale


def betas64(c) -> torch.Tensor:
    """diffusers' betas for config `c`, computed in float64."""
    n = c.num_train_timesteps
    if c.beta_schedule == "linear":
        return torch.linspace(c.beta_start, c.beta_end, n, dtype=torch.float64)
    if c.beta_schedule == "scaled_linear":
        return torch.linspace(c.beta_start**0.5, c.beta_end**0.5, n, dtype=torch.float64) ** 2
    if c.beta_schedule == "squaredcos_cap_v2":
        # betas_for_alpha_bar, whose Python floats are float64 until its final float32 tensor.
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return torch.tensor([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)], dtype=torch.float64)
    raise ValueError(c.beta_schedule)


def promote(sch):
    """Recomputes the scheduler's betas / alphas_cumprod (and DPM-Solver's alpha_t, sigma_t,
    lambda_t) in float64 with diffusers' own formulas, before set_timesteps."""
    c = sch.config
    betas = betas64(c)
    if getattr(c, "rescale_betas_zero_snr", False):
        betas = rescale_zero_terminal_snr(betas)
    sch.betas = betas
    sch.alphas = 1.0 - betas
    sch.alphas_cumprod = torch.cumprod(sch.alphas, dim=0)
    if getattr(c, "rescale_betas_zero_snr", False):
        sch.alphas_cumprod[-1] = 2**-24
    if isinstance(sch, DPMSolverMultistepScheduler):
        sch.alpha_t = torch.sqrt(sch.alphas_cumprod)
        sch.sigma_t = torch.sqrt(1 - sch.alphas_cumprod)
        sch.lambda_t = torch.log(sch.alpha_t) - torch.log(sch.sigma_t)
    return sch


class _Float64Torch:
    """`torch`, except that `float32` is float64."""

    def __getattr__(self, name):
        return torch.float64 if name == "float32" else getattr(torch, name)


@contextlib.contextmanager
def float64_torch(sch, noise=None):
    """Runs the scheduler's module with torch.float32 meaning float64 and, when `noise` is given,
    with its randn_tensor returning `noise` (Euler's churn draws it there)."""
    module = MODULES[type(sch)]
    saved = {k: getattr(module, k) for k in ("torch", "randn_tensor") if hasattr(module, k)}
    module.torch = _Float64Torch()
    if noise is not None:
        module.randn_tensor = lambda shape, **kw: noise.to(kw["dtype"])
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(module, k, v)


@contextlib.contextmanager
def injected_noise(sch, noise):
    """Plain float32 run with randn_tensor returning `noise`."""
    module = MODULES[type(sch)]
    saved = getattr(module, "randn_tensor", None)
    if noise is not None:
        module.randn_tensor = lambda shape, **kw: noise.to(kw["dtype"])
    try:
        yield
    finally:
        if saved is not None:
            module.randn_tensor = saved


def make(cls, promoted=True, **kwargs):
    sch = cls(**kwargs)
    return promote(sch) if promoted else sch


def dumps(obj, indent: int = 0) -> str:
    """JSON with one line per list of numbers, so the file stays short and diffs well."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1).lstrip()}' for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return pad + "[\n" + ",\n".join(dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return pad + json.dumps(obj)


def drift(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


# ---------------------------------------------------------------------------------------------
# Schedules


def schedules() -> list:
    cases = []
    base = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    sl = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    cos = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    runs = []
    for n in (10, 7, 25):
        for spacing in ("leading", "trailing", "linspace"):
            runs.append(("euler", base, spacing, n, False, False))
    for n in (10, 25, 4):
        runs.append(("euler", base, "linspace", n, True, False))
    runs.append(("euler", sl, "linspace", 7, False, False))
    runs.append(("euler", sl, "linspace", 7, True, False))
    runs.append(("euler", sl, "leading", 13, False, False))
    runs.append(("euler", base, "trailing", 10, False, True))  # zero terminal SNR (v-pred)
    runs.append(("euler", base, "linspace", 10, True, True))
    runs.append(("heun", base, "linspace", 10, False, False))
    runs.append(("heun", base, "leading", 7, False, False))
    runs.append(("heun", base, "linspace", 10, True, False))
    runs.append(("heun", sl, "linspace", 20, True, False))
    for n in (10, 20):
        for spacing in ("leading", "trailing", "linspace"):
            runs.append(("dpm_solver", base, spacing, n, False, False))
    runs.append(("dpm_solver", dict(base, num_train_timesteps=20), "leading", 19, False, False))  # n = T - 1
    for n in (10, 20):
        runs.append(("dpm_solver", base, "linspace", n, True, False))
    runs.append(("dpm_solver", sl, "linspace", 15, True, False))
    runs.append(("dpm_solver", cos, "linspace", 10, True, False))  # timesteps not rounded
    runs.append(("dpm_solver", cos, "trailing", 10, False, False))
    runs.append(("dpm_solver", base, "trailing", 10, False, True))
    classes = {"euler": EulerDiscreteScheduler, "heun": HeunDiscreteScheduler, "dpm_solver": DPMSolverMultistepScheduler}
    for family, cfg, spacing, n, karras, zero_snr in runs:
        kwargs = dict(cfg, timestep_spacing=spacing, use_karras_sigmas=karras)
        if zero_snr:
            kwargs.update(rescale_betas_zero_snr=True, prediction_type="v_prediction")
        sch = make(classes[family], **kwargs)
        sch.set_timesteps(n)
        sigmas, timesteps = sch.sigmas.double(), sch.timesteps.double()
        if family == "heun":
            # Heun repeats every sigma but the first and last, and every timestep but the first.
            sigmas = torch.cat([sigmas[:1], sigmas[1::2]])
            timesteps = torch.cat([timesteps[:1], timesteps[1::2]])
        assert len(sigmas) == n + 1 and len(timesteps) == n and sigmas[-1] == 0, (family, spacing, n)
        # How far diffusers' own float32 schedule is (why the state is promoted).
        plain = classes[family](**kwargs)
        plain.set_timesteps(n)
        plain_sigmas = plain.sigmas.double()
        if family == "heun":
            plain_sigmas = torch.cat([plain_sigmas[:1], plain_sigmas[1::2]])
        rel = ((plain_sigmas - sigmas).abs() / sigmas.clamp(min=1e-30))[:-1].max().item()
        print(f"  {family} {cfg['beta_schedule']} {spacing} n={n} karras={karras} zero-snr={zero_snr}: "
              f"float32 state moves sigmas by up to {rel:.1e} relative")
        cases.append(
            {
                "scheduler": family,
                "beta_schedule": SCHEDULES[cfg["beta_schedule"]],
                "beta_start": cfg.get("beta_start", 1e-4),
                "beta_end": cfg.get("beta_end", 0.02),
                "num_train_timesteps": cfg["num_train_timesteps"],
                "rescale_zero_terminal_snr": zero_snr,
                "timestep_spacing": spacing,
                "karras_sigmas": karras,
                "num_inference_steps": n,
                # Both are float32 in diffusers.
                "sigmas": flat(sigmas),
                "timesteps": flat(timesteps),
            }
        )
    return cases


# ---------------------------------------------------------------------------------------------
# Euler


def euler() -> list:
    cases = []
    seed = 1000
    n = 10
    runs = []
    for pred in PREDICTIONS:
        for i in (0, 5, 9):
            runs.append((pred, "linspace", False, i, dict()))
        runs.append((pred, "linspace", True, 2, dict()))
    churn = dict(s_churn=1.0, s_tmin=0.0, s_tmax=None, s_noise=1.003)
    for pred in ("epsilon", "sample"):
        runs.append((pred, "linspace", False, 3, churn))
        runs.append((pred, "leading", False, 6, dict(s_churn=2.5, s_tmin=0.05, s_tmax=50.0, s_noise=1.0)))
    # Outside [s_tmin, s_tmax]: no churn (sigma_0 = 157 > s_tmax).
    runs.append(("epsilon", "linspace", False, 0, dict(s_churn=1.0, s_tmin=0.0, s_tmax=10.0, s_noise=1.0)))
    runs.append(("v_prediction", "trailing", False, 1, dict()))
    for pred, spacing, karras, i, opts in runs:
        seed += 10
        kwargs = dict(num_train_timesteps=1000, prediction_type=pred, timestep_spacing=spacing, use_karras_sigmas=karras)
        sch = make(EulerDiscreteScheduler, **kwargs)
        sch.set_timesteps(n)
        sigma, sigma_next = sch.sigmas[i].double(), sch.sigmas[i + 1].double()
        x0 = randn(seed, 0.5).clamp(-1, 1)
        x = (x0 + scalar(sigma) * randn(seed + 1)).to(torch.float32)
        model_output = randn(seed + 2, 0.6 if pred == "sample" else 1.0)
        noise = randn(seed + 3)
        step_kwargs = dict(opts)
        if "s_tmax" in step_kwargs and step_kwargs["s_tmax"] is None:
            step_kwargs["s_tmax"] = float("inf")

        def run(sch, promoted):
            sch.set_timesteps(n)
            if promoted:
                # The float32 sigma values, with float64 arithmetic on them (sigma_hat, dt).
                sch.sigmas = sch.sigmas.double()
            sch._step_index = i
            sch.is_scale_input_called = True
            ctx = float64_torch(sch, noise.double()) if promoted else injected_noise(sch, noise)
            with ctx:
                mo, xx = (model_output.double(), x.double()) if promoted else (model_output, x)
                return sch.step(mo, sch.timesteps[i], xx, **step_kwargs)

        result = run(sch, True)
        f32_run = run(EulerDiscreteScheduler(**kwargs), False)
        s_churn = step_kwargs.get("s_churn", 0.0)
        s_tmin, s_tmax = step_kwargs.get("s_tmin", 0.0), step_kwargs.get("s_tmax", float("inf"))
        gamma = min(s_churn / (len(sch.sigmas) - 1), 2**0.5 - 1) if s_tmin <= scalar(sigma) <= s_tmax else 0.0
        print(f"  euler {pred} {spacing} karras={karras} i={i} gamma={gamma:.3f}: float32 run differs by "
              f"{drift(f32_run.prev_sample, result.prev_sample):.1e}")
        cases.append(
            {
                "prediction": PREDICTIONS[pred],
                "timestep_spacing": spacing,
                "karras_sigmas": karras,
                "num_inference_steps": n,
                "step_index": i,
                "s_churn": s_churn,
                "s_tmin": s_tmin,
                "s_tmax": None if math.isinf(s_tmax) else s_tmax,
                "s_noise": step_kwargs.get("s_noise", 1.0),
                "gamma": gamma,
                "sigma": scalar(sigma),
                "sigma_next": scalar(sigma_next),
                "x": flat(x),
                "model_output": flat(model_output),
                "noise": flat(noise),
                "pred_original_sample": flat(result.pred_original_sample),
                "prev_sample": flat(result.prev_sample),
            }
        )
    return cases


# ---------------------------------------------------------------------------------------------
# Heun


def heun() -> list:
    cases = []
    seed = 2000
    n = 10
    runs = []
    for pred in PREDICTIONS:
        for i in (0, 4, 9):
            runs.append((pred, False, False, i))
        runs.append((pred, True, False, 3))
    runs.append(("v_prediction", False, True, 2))
    runs.append(("epsilon", True, True, 8))
    for pred, karras, clip, i in runs:
        seed += 10
        kwargs = dict(
            num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
            prediction_type=pred, use_karras_sigmas=karras, clip_sample=clip, timestep_spacing="linspace",
        )
        sch = make(HeunDiscreteScheduler, **kwargs)
        sch.set_timesteps(n)
        k = 2 * i  # Heun's sigmas: [s0, s1, s1, s2, s2, ..., s_{n-1}, s_{n-1}, 0]
        sigma, sigma_next = sch.sigmas[k].double(), sch.sigmas[k + 1].double()
        x0 = randn(seed, 0.5).clamp(-1, 1)
        x = (x0 + scalar(sigma) * randn(seed + 1)).to(torch.float32)
        scale = 0.6 if pred == "sample" else (3.0 if clip else 1.0)
        out1, out2 = randn(seed + 2, scale), randn(seed + 3, scale)

        def run(sch, promoted):
            sch.set_timesteps(n)
            if promoted:
                sch.sigmas = sch.sigmas.double()
            sch._step_index = k
            conv = (lambda t: t.double()) if promoted else (lambda t: t)
            ctx = float64_torch(sch) if promoted else contextlib.nullcontext()
            with ctx:
                first = sch.step(conv(out1), sch.timesteps[k], conv(x))
                if sigma_next == 0:
                    return first, None, None
                # The second call gets the first's result as a float32 value, as the Rust test.
                mid = f32(first.prev_sample) if promoted else first.prev_sample
                second = sch.step(conv(out2), sch.timesteps[k + 1], mid)
                return first, mid, second

        first, mid, second = run(sch, True)
        f1, _, f2 = run(HeunDiscreteScheduler(**kwargs), False)
        last = second if second is not None else first
        print(f"  heun {pred} karras={karras} clip={clip} i={i}: float32 run differs by "
              f"{drift((f2 or f1).prev_sample, last.prev_sample):.1e}")
        case = {
            "prediction": PREDICTIONS[pred],
            "karras_sigmas": karras,
            "clip_sample": clip,
            "num_inference_steps": n,
            "step_index": i,
            "sigma": scalar(sigma),
            "sigma_next": scalar(sigma_next),
            "x": flat(x),
            "model_output": flat(out1),
            "pred_original_sample": flat(first.pred_original_sample),
            "prev_sample": flat(first.prev_sample),
        }
        if second is not None:
            case.update(
                {
                    "model_output_2": flat(out2),
                    "pred_original_sample_2": flat(second.pred_original_sample),
                    "prev_sample_2": flat(second.prev_sample),
                }
            )
        cases.append(case)
    return cases


# ---------------------------------------------------------------------------------------------
# DPM-Solver++(2M)


def dpm_solver() -> list:
    cases = []
    seed = 3000
    n = 10
    runs = []
    for algorithm in ("dpmsolver++", "sde-dpmsolver++"):
        for pred in PREDICTIONS:
            for first in (0, 4, 8):  # 8: the second call is the last step (to sigma = 0)
                runs.append((algorithm, pred, "linspace", False, first, False))
        runs.append((algorithm, "epsilon", "linspace", True, 3, False))
        runs.append((algorithm, "v_prediction", "leading", False, 7, False))
    runs.append(("dpmsolver++", "epsilon", "trailing", False, 1, True))  # learned variance
    for algorithm, pred, spacing, karras, first, learned in runs:
        seed += 10
        kwargs = dict(
            num_train_timesteps=1000, prediction_type=pred, algorithm_type=algorithm, solver_order=2,
            solver_type="midpoint", final_sigmas_type="zero", lower_order_final=True,
            timestep_spacing=spacing, use_karras_sigmas=karras,
        )
        shape = SHAPE
        if learned:
            # diffusers keeps the first 3 channels of a learned-variance epsilon output.
            kwargs["variance_type"] = "learned_range"
            shape = (2, 3, 2, 2)
        sch = make(DPMSolverMultistepScheduler, **kwargs)
        sch.set_timesteps(n)
        sig = [scalar(sch.sigmas[j].double()) for j in (first, first + 1, first + 2)]
        inputs = []
        for j, s in enumerate(sig[:2]):
            alpha = 1 / math.sqrt(s * s + 1)
            x0 = randn(seed + 5 * j, 0.5, shape).clamp(-1, 1)
            x = (alpha * x0 + s * alpha * randn(seed + 5 * j + 1, 1.0, shape)).to(torch.float32)
            out_shape = (shape[0], 2 * shape[1], *shape[2:]) if learned else shape
            out = randn(seed + 5 * j + 2, 0.6 if pred == "sample" else 1.0, out_shape)
            noise = randn(seed + 5 * j + 3, 1.0, shape)
            inputs.append((x, out, noise))

        def run(sch, promoted):
            sch.set_timesteps(n)
            if promoted:
                sch.sigmas = sch.sigmas.double()
            sch._step_index = first
            sch.lower_order_nums = 0
            sch.model_outputs = [None] * sch.config.solver_order
            conv = (lambda t: t.double()) if promoted else (lambda t: t)
            sde = algorithm.startswith("sde")
            results, x0s = [], []
            ctx = float64_torch(sch) if promoted else contextlib.nullcontext()
            with ctx:
                for j, (x, out, noise) in enumerate(inputs):
                    x0s.append(sch.convert_model_output(conv(out), sample=conv(x)))
                    results.append(
                        sch.step(conv(out), sch.timesteps[first + j], conv(x),
                                 variance_noise=conv(noise) if sde else None).prev_sample
                    )
            return results, x0s

        (prev1, prev2), (x01, x02) = run(sch, True)
        (p1, p2), _ = run(DPMSolverMultistepScheduler(**kwargs), False)
        print(f"  dpm {algorithm} {pred} {spacing} karras={karras} learned={learned} steps {first},{first + 1}: "
              f"float32 run differs by {max(drift(p1, prev1), drift(p2, prev2)):.1e}")
        sde = algorithm.startswith("sde")
        (x1, o1, n1), (x2, o2, n2) = inputs
        cases.append(
            {
                "algorithm": algorithm,
                "prediction": PREDICTIONS[pred],
                "timestep_spacing": spacing,
                "karras_sigmas": karras,
                "learned_variance": learned,
                "num_inference_steps": n,
                "step_index": first,
                "shape": list(shape),
                "sigmas": sig,
                "x": flat(x1),
                "model_output": flat(o1),
                "noise": flat(n1) if sde else None,
                "x0_pred": flat(x01),
                "prev_sample": flat(prev1),
                "x_2": flat(x2),
                "model_output_2": flat(o2),
                "noise_2": flat(n2) if sde else None,
                "x0_pred_2": flat(x02),
                "prev_sample_2": flat(prev2),
            }
        )
    return cases


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    payload = {
        "generator": "tools/reference/sampler_golden.py",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "shape": list(SHAPE),
        "schedules": schedules(),
        "euler": euler(),
        "heun": heun(),
        "dpm_solver": dpm_solver(),
    }
    path = OUT / "samplers.json"
    path.write_text(dumps(payload) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
