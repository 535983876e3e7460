"""Golden values for the likelihood maths of oxidiff-diffusion (likelihood.rs), written from the
papers' equations in float64 numpy/scipy — not from any diffusion library:

- normal_kl: KL between two diagonal Gaussians (closed form);
- discretized Gaussian log-likelihood of 8-bit data in [-1, 1] (Ho et al. 2020, eq. 13);
- the bound's terms L_{t-1} (KL of posterior vs model step) and L_0 (decoder), in bits/dim,
  for epsilon prediction with the fixed small variance and with a learned variance
  (Nichol & Dhariwal 2021, eq. 15), and the prior term L_T;
- a sanity case whose whole bound is analytic: data holding each of the 256 levels once, a
  model that always predicts x0 = 0, T = 2 with betas (0.5, 0.9).

Inputs are float32 (as the Rust side holds them) and written into the JSON with the outputs.

Run from the repository root:

    /opt/refenv/bin/python tools/reference/likelihood_golden.py

(numpy and scipy; venv set-up in tools/reference/README.md) →
crates/oxidiff-diffusion/tests/golden/likelihood.json
"""

import json
import math
import os

import numpy as np
from scipy.special import log_ndtr, ndtr

OUT = "crates/oxidiff-diffusion/tests/golden/likelihood.json"
LN2 = math.log(2.0)
HALF_BIN = 1.0 / 255.0


def f32(a):
    return np.asarray(a, dtype=np.float32)


def det(shape, a, b, c):
    """Deterministic float32 values in about [-1, 1] (no RNG, so nothing depends on numpy's)."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    return f32((np.sin(a * i + b) * np.cos(c * i * i + 0.3)).reshape(shape))


def normal_kl(m1, lv1, m2, lv2):
    # KL(N(m1, e^lv1) || N(m2, e^lv2)) = 1/2 (-1 + lv2 - lv1 + e^(lv1 - lv2) + (m1 - m2)^2 e^-lv2)
    return 0.5 * (-1.0 + lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 * np.exp(-lv2))


def discretized_log_likelihood(x, mean, log_scale):
    # Ho et al. 2020, eq. 13: the Gaussian's mass on [x - 1/255, x + 1/255]; the end levels take
    # the whole tail. Float64 with scipy's ndtr / log_ndtr (accurate in the tails).
    x, mean, log_scale = np.broadcast_arrays(
        np.asarray(x, np.float64), np.asarray(mean, np.float64), np.asarray(log_scale, np.float64)
    )
    inv = np.exp(-log_scale)
    plus = (x - mean + HALF_BIN) * inv
    minus = (x - mean - HALF_BIN) * inv
    out = np.empty_like(x)
    low = x < -0.999
    high = x > 0.999
    mid = ~(low | high)
    out[low] = log_ndtr(plus[low])
    out[high] = log_ndtr(-minus[high])
    # Mass of the bin, computed on the side of the mean where it does not cancel.
    delta = np.where(minus > 0, ndtr(-minus) - ndtr(-plus), ndtr(plus) - ndtr(minus))
    out[mid] = np.log(np.maximum(delta[mid], 1e-300))
    return out


class Schedule:
    def __init__(self, betas):
        self.betas = np.asarray(betas, np.float64)
        self.T = len(self.betas)
        self.alphas = 1.0 - self.betas
        self.ac = np.cumprod(self.alphas)
        self.ac_prev = np.append(1.0, self.ac[:-1])
        # Ho et al. 2020, eq. 7
        self.post_var = self.betas * (1.0 - self.ac_prev) / (1.0 - self.ac)
        self.post_logvar_clipped = np.log(np.append(self.post_var[1], self.post_var[1:]))
        self.coef1 = self.betas * np.sqrt(self.ac_prev) / (1.0 - self.ac)
        self.coef2 = (1.0 - self.ac_prev) * np.sqrt(self.alphas) / (1.0 - self.ac)

    def b(self, arr, t):
        return arr[np.asarray(t)].reshape(-1, 1, 1, 1)

    def posterior_mean(self, x0, xt, t):
        return self.b(self.coef1, t) * x0 + self.b(self.coef2, t) * xt

    def x0_from_eps(self, xt, eps, t):
        return np.sqrt(1.0 / self.b(self.ac, t)) * xt - np.sqrt(1.0 / self.b(self.ac, t) - 1.0) * eps

    def model_logvar(self, t, v=None):
        if v is None:
            return self.b(self.post_logvar_clipped, t)
        frac = (v + 1.0) / 2.0
        # Nichol & Dhariwal 2021, eq. 15
        return frac * self.b(np.log(self.betas), t) + (1.0 - frac) * self.b(self.post_logvar_clipped, t)

    def vlb_terms(self, x0, xt, mean_model, logvar_model, t):
        true_mean = self.posterior_mean(x0, xt, t)
        true_logvar = self.b(self.post_logvar_clipped, t)
        kl = normal_kl(true_mean, true_logvar, mean_model, logvar_model).mean(axis=(1, 2, 3)) / LN2
        nll = -discretized_log_likelihood(x0, mean_model, 0.5 * logvar_model).mean(axis=(1, 2, 3)) / LN2
        return np.where(np.asarray(t) == 0, nll, kl)

    def prior_bpd(self, x0):
        last = self.T - 1
        mean = math.sqrt(self.ac[last]) * x0
        logvar = math.log(1.0 - self.ac[last])
        return normal_kl(mean, logvar, 0.0, 0.0).mean(axis=(1, 2, 3)) / LN2


def levels(n):
    return f32(np.arange(256)[np.arange(n) % 256] * 2.0 / 255.0 - 1.0)


def main():
    out = {}

    # normal_kl on broadcastable shapes.
    shape = [2, 2, 3, 3]
    m1, m2 = det(shape, 0.7, 0.1, 0.05), det(shape, 0.31, 1.2, 0.11)
    lv1 = f32(det(shape, 0.5, 0.4, 0.07) * 3.0 - 2.0)
    lv2 = f32(np.array([-1.5, 0.7], np.float32).reshape(2, 1, 1, 1))
    out["normal_kl"] = {
        "shape": shape,
        "mean1": m1.ravel().tolist(), "logvar1": lv1.ravel().tolist(),
        "mean2": m2.ravel().tolist(), "logvar2_per_sample": lv2.ravel().tolist(),
        "kl": normal_kl(m1.astype(np.float64), lv1.astype(np.float64), m2.astype(np.float64), lv2.astype(np.float64)).ravel().tolist(),
    }

    # Discretised log-likelihood: levels including both ends, means near and far, scales from
    # a fraction of a bin to wider than the range.
    shape = [1, 1, 8, 8]
    x = f32(np.array([0, 1, 2, 127, 128, 200, 254, 255] * 8, np.float64).reshape(shape) * 2.0 / 255.0 - 1.0)
    mean = f32(det(shape, 0.9, 0.2, 0.13) * 1.05)
    log_scale = f32(np.repeat(np.array([-6.0, -4.5, -3.0, -2.0, -1.0, 0.0, -5.5, -3.5]), 8).reshape(shape))
    out["discretized"] = {
        "shape": shape,
        "x": x.ravel().tolist(), "mean": mean.ravel().tolist(), "log_scale": log_scale.ravel().tolist(),
        "log_likelihood": discretized_log_likelihood(x, mean, log_scale).ravel().tolist(),
    }

    # The bound's terms: linear schedule, T = 1000, eps prediction.
    sch = Schedule(np.linspace(1e-4, 0.02, 1000))
    shape = [5, 2, 4, 4]
    t = [0, 1, 10, 500, 999]
    q = np.round((det(shape, 0.37, 0.5, 0.21) + 1.0) * 127.5)
    x0 = f32(q * 2.0 / 255.0 - 1.0)
    noise = det(shape, 0.53, 0.9, 0.17) * 1.7
    xt = f32(np.sqrt(sch.b(sch.ac, t)) * x0 + np.sqrt(1.0 - sch.b(sch.ac, t)) * noise)
    # A model that is close to right but not exactly: the true noise, perturbed.
    eps_hat = f32(noise + 0.2 * det(shape, 0.29, 0.1, 0.07))
    v_hat = f32(np.clip(det(shape, 0.61, 1.4, 0.03) * 1.2, -1.0, 1.0))
    x0d, xtd, epsd, vd = (a.astype(np.float64) for a in (x0, xt, eps_hat, v_hat))
    # The model's mean with the unclipped x0 (training) estimate.
    mean_model = sch.posterior_mean(sch.x0_from_eps(xtd, epsd, t), xtd, t)
    fixed = sch.vlb_terms(x0d, xtd, mean_model, sch.model_logvar(t), t)
    learned = sch.vlb_terms(x0d, xtd, mean_model, sch.model_logvar(t, vd), t)
    out["vlb"] = {
        "shape": shape, "t": t,
        "x_start": x0.ravel().tolist(), "x_t": xt.ravel().tolist(),
        "eps_hat": eps_hat.ravel().tolist(), "v_hat": v_hat.ravel().tolist(),
        "terms_fixed_small": fixed.tolist(),
        "terms_learned": learned.tolist(),
        "prior": sch.prior_bpd(x0d).tolist(),
    }

    # Sanity: the whole bound in closed form. Data = every 8-bit level once ([1, 1, 16, 16]);
    # the model predicts x0 = 0 always; T = 2, betas (0.5, 0.9), fixed small variance.
    s2 = Schedule([0.5, 0.9])
    x = levels(256).reshape(1, 1, 16, 16).astype(np.float64)
    # t = 1: model mean = coef2 x_t (x0_hat = 0); true mean = coef1 x0 + coef2 x_t; same
    # variance, so KL = (coef1 x0)^2 / (2 beta~_1), independent of the noise.
    kl1 = np.mean((s2.coef1[1] * x) ** 2 / (2.0 * s2.post_var[1])) / LN2
    # t = 0: model mean = coef1_0 * 0 + coef2_0 x_1 = 0 (coef2_0 = 0), sigma^2 = beta~_1.
    dec = -np.mean(discretized_log_likelihood(x, 0.0, 0.5 * math.log(s2.post_var[1]))) / LN2
    prior = float(s2.prior_bpd(x.reshape(1, 1, 16, 16))[0])
    out["sanity_uniform_levels"] = {
        "betas": [0.5, 0.9],
        "prior": prior, "decoder": float(dec), "diffusion": float(kl1),
        "total": prior + float(dec) + float(kl1),
        "note": "the data's entropy is 8 bits/dim, so no model may go below it",
    }

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {OUT}; sanity bound {out['sanity_uniform_levels']['total']:.6f} bits/dim")
    print("vlb fixed:", fixed, "learned:", learned)


if __name__ == "__main__":
    main()
