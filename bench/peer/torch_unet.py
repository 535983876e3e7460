#!/usr/bin/env python3
"""PyTorch peer of oxidiff's benchmark model "bench-small" (preset `small`).

The network mirrors crates/oxidiff-models/src/unet/*.rs layer for layer (DESIGN.md, section
"Benchmarks"): 6,472,195 parameters, 3x32x32 inputs, one attention head at 16x16, DDPM skip
order. The script times a full training step (forward, eps-MSE loss, backward, AdamW step) and a
no-grad forward pass, and reports the median of each.

    python3 bench/peer/torch_unet.py [--batch 16] [--steps 10] [--warmup 3]
        [--device cpu|cuda] [--threads N] [--json] [--compile]

Requires only torch and the standard library.
"""

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

# oxidiff's `small` preset (crates/oxidiff-models/src/presets.rs); checked by
# `oxidiff model --preset small`.
EXPECTED_PARAMETERS = 6_472_195
IMAGE_SIZE = 32
IN_CHANNELS = 3
OUT_CHANNELS = 3
MODEL_CHANNELS = 64
CHANNEL_MULT = (1, 2, 2)
NUM_RES_BLOCKS = 2
ATTENTION_RESOLUTIONS = (16,)
NORM_GROUPS = 32
TIME_EMBED_DIM = 256
DROPOUT = 0.0
NUM_TIMESTEPS = 1000


def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, 3, stride=stride, padding=1)


def zero_(module):
    """ADM's zero_module: the layer starts at zero (weights and bias), as oxidiff's Initializer::Zeros."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t, dim):
    """Sinusoidal embedding, cos half first, freq_i = exp(-ln(10000) * i / half) (embeddings.rs)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2 == 1:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class TimeEmbedding(nn.Module):
    def __init__(self, sinusoidal_dim, embed_dim):
        super().__init__()
        self.sinusoidal_dim = sinusoidal_dim
        self.linear_1 = nn.Linear(sinusoidal_dim, embed_dim)
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, t):
        return self.linear_2(F.silu(self.linear_1(timestep_embedding(t, self.sinusoidal_dim))))


class ResBlock(nn.Module):
    """GN, SiLU, conv3x3, + Linear(SiLU(emb)); GN, SiLU, dropout, conv3x3 (zero); skip (resblock.rs)."""

    def __init__(self, i, o, embed_dim=TIME_EMBED_DIM, groups=NORM_GROUPS, dropout=DROPOUT):
        super().__init__()
        self.norm_1 = nn.GroupNorm(groups, i)
        self.conv_1 = conv3x3(i, o)
        self.emb_proj = nn.Linear(embed_dim, o)
        self.norm_2 = nn.GroupNorm(groups, o)
        self.dropout = nn.Dropout(dropout)
        self.conv_2 = zero_(conv3x3(o, o))
        self.skip = nn.Conv2d(i, o, 1) if i != o else None

    def forward(self, x, emb):
        h = self.conv_1(F.silu(self.norm_1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv_2(self.dropout(F.silu(self.norm_2(h))))
        skip = self.skip(x) if self.skip is not None else x
        return skip + h


class AttentionBlock(nn.Module):
    """GN; q, k, v, out = Linear(c, c); one head, softmax(QK^T/sqrt(c))V; residual (attention.rs)."""

    def __init__(self, c, groups=NORM_GROUPS):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.query = nn.Linear(c, c)
        self.key = nn.Linear(c, c)
        self.value = nn.Linear(c, c)
        self.proj_out = zero_(nn.Linear(c, c))

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x).reshape(b, c, hh * ww).transpose(1, 2)  # [B, HW, C]
        q, k, v = self.query(h), self.key(h), self.value(h)
        scores = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(c)
        attended = torch.matmul(torch.softmax(scores, dim=-1), v)
        out = self.proj_out(attended).transpose(1, 2).reshape(b, c, hh, ww)
        return x + out


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = conv3x3(c, c, stride=2)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = conv3x3(c, c)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResAttn(nn.Module):
    def __init__(self, i, o, attn):
        super().__init__()
        self.res = ResBlock(i, o)
        self.attn = AttentionBlock(o) if attn else None

    def forward(self, x, emb):
        h = self.res(x, emb)
        return self.attn(h) if self.attn is not None else h


class Level(nn.Module):
    def __init__(self, blocks, resample):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


class UNet(nn.Module):
    """ADM-style UNet; skips pushed after conv_in, every down block and every downsample (model.rs)."""

    def __init__(self):
        super().__init__()
        mc = MODEL_CHANNELS
        self.time_embed = TimeEmbedding(mc, TIME_EMBED_DIM)
        self.conv_in = conv3x3(IN_CHANNELS, mc)

        skip_channels = [mc]
        channels, resolution = mc, IMAGE_SIZE
        down = []
        for level, mult in enumerate(CHANNEL_MULT):
            out = mc * mult
            blocks = []
            for _ in range(NUM_RES_BLOCKS):
                blocks.append(ResAttn(channels, out, resolution in ATTENTION_RESOLUTIONS))
                channels = out
                skip_channels.append(channels)
            downsample = None
            if level + 1 < len(CHANNEL_MULT):
                skip_channels.append(channels)
                resolution //= 2
                downsample = Downsample(channels)
            down.append(Level(blocks, downsample))
        self.down = nn.ModuleList(down)

        self.mid_res_1 = ResBlock(channels, channels)
        self.mid_attn = AttentionBlock(channels)
        self.mid_res_2 = ResBlock(channels, channels)

        up = []
        for level, mult in reversed(list(enumerate(CHANNEL_MULT))):
            out = mc * mult
            blocks = []
            for _ in range(NUM_RES_BLOCKS + 1):
                skip = skip_channels.pop()
                blocks.append(ResAttn(channels + skip, out, resolution in ATTENTION_RESOLUTIONS))
                channels = out
            upsample = None
            if level > 0:
                resolution *= 2
                upsample = Upsample(channels)
            up.append(Level(blocks, upsample))
        self.up = nn.ModuleList(up)
        assert not skip_channels

        self.out_norm = nn.GroupNorm(NORM_GROUPS, channels)
        self.out_conv = zero_(conv3x3(channels, OUT_CHANNELS))

    def forward(self, x, t):
        emb = self.time_embed(t)
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for block in level.blocks:
                h = block(h, emb)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)
        h = self.mid_res_1(h, emb)
        h = self.mid_attn(h)
        h = self.mid_res_2(h, emb)
        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if level.resample is not None:
                h = level.resample(h)
        return self.out_conv(F.silu(self.out_norm(h)))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def peak_memory_bytes(device):
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return int(rss if sys.platform == "darwin" else rss * 1024)


def forward_flops_per_image(model, device):
    """FLOPs of one forward pass of one image, as torch's FlopCounterMode counts them
    (convolutions and matmuls, a multiply-add = 2). oxidiff's analytic count must equal it."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, device=device)
    t = torch.zeros(1, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t)
    return int(counter.get_total_flops())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batch(batch, device):
    x_t = torch.randn(batch, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, device=device)
    t = torch.randint(0, NUM_TIMESTEPS, (batch,), device=device).float()
    noise = torch.randn_like(x_t)
    return x_t, t, noise


def timed(fn, warmup, steps, batch, device):
    """Median wall time (ms) of `fn` over `steps` calls after `warmup` untimed ones, and the
    cores those calls kept busy (process CPU time over wall time, summed over the timed calls).

    Inputs are drawn before the clock starts; CUDA is synchronised on both sides of each call.
    """
    times, cpu = [], 0.0
    for i in range(warmup + steps):
        inputs = make_batch(batch, device)
        sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(*inputs)
        sync(device)
        elapsed = (time.perf_counter() - start) * 1e3
        if i >= warmup:
            times.append(elapsed)
            cpu += time.process_time() - start_cpu
    return statistics.median(times), cpu * 1e3 / sum(times)


def ddim_step_of(eps_of):
    """One deterministic DDIM step (eta = 0) from t = 500 to 480 on the linear DDPM schedule, as
    oxidiff's bench times it: the model call `eps_of(x_t, t)` plus the update, without x0
    clipping. Takes (x_t, t, noise) as the timed functions do; t and noise are not used."""
    betas = torch.linspace(1e-4, 0.02, NUM_TIMESTEPS, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    a_t, a_prev = float(alphas_cumprod[500]), float(alphas_cumprod[480])

    def ddim_step(x_t, _t, _noise):
        with torch.no_grad():
            t = torch.full((x_t.shape[0],), 500.0, device=x_t.device)
            eps = eps_of(x_t, t)
            x0 = (x_t - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
            return math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * eps

    return ddim_step


def add_timing_args(p):
    """The options every UNet peer takes (also bench/peer/diffusers_unet.py's)."""
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (default: eager)")
    p.add_argument("--seed", type=int, default=0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_args(p)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        p.error("--steps and --batch must be >= 1, --warmup >= 0")

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    device = torch.device(args.device)
    cudnn_benchmark = False
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda but torch.cuda.is_available() is False")
        torch.backends.cudnn.benchmark = True
        cudnn_benchmark = True
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = cpu_name()

    model = UNet().to(device)
    parameters = count_parameters(model)
    assert parameters == EXPECTED_PARAMETERS, (
        f"parameter count {parameters} != {EXPECTED_PARAMETERS} (oxidiff preset `small`)"
    )
    net = torch.compile(model) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, eps=1e-8)

    def train_step(x_t, t, noise):
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(net(x_t, t), noise)
        loss.backward()
        optimizer.step()
        return loss

    def forward(x_t, t, _noise):
        with torch.no_grad():
            return net(x_t, t)

    ddim_step = ddim_step_of(net)

    forward_flops = forward_flops_per_image(model, device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    model.train()
    train_ms, train_cores = timed(train_step, args.warmup, args.steps, args.batch, device)
    model.eval()
    forward_ms, _ = timed(forward, args.warmup, args.steps, args.batch, device)
    ddim_ms, _ = timed(ddim_step, args.warmup, args.steps, args.batch, device)
    peak = peak_memory_bytes(device)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf32_conv = bool(torch.backends.cudnn.allow_tf32)
        tf32_matmul = bool(torch.backends.cuda.matmul.allow_tf32)

    result = {
        "parameters": parameters,
        "train_step_ms": round(train_ms, 3),
        "train_images_per_s": round(args.batch * 1e3 / train_ms, 3),
        "train_cpu_cores": round(train_cores, 3),
        "forward_ms": round(forward_ms, 3),
        "ddim_step_ms": round(ddim_ms, 3),
        "forward_flops_per_image": forward_flops,
        "peak_memory_bytes": peak,
        "device": device_name,
        "torch_version": torch.__version__,
        "batch": args.batch,
        # Context beyond the required keys.
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "warmup": args.warmup,
        "compiled": args.compile,
        "cudnn_benchmark": cudnn_benchmark,
    }
    if device.type == "cuda":
        result["tf32_conv"] = tf32_conv
        result["tf32_matmul"] = tf32_matmul

    if args.json:
        print(json.dumps(result))
        return

    mem_label = "peak memory (max_memory_allocated)" if device.type == "cuda" else "peak memory (ru_maxrss)"
    rows = [
        ("model", "bench-small (oxidiff preset `small`), 3x32x32, fp32"),
        ("parameters", f"{parameters:,}"),
        ("batch", str(args.batch)),
        ("steps / warmup", f"{args.steps} / {args.warmup}"),
        ("median train step", f"{train_ms:.1f} ms"),
        ("train throughput", f"{args.batch * 1e3 / train_ms:.1f} images/s"),
        ("median forward (no_grad)", f"{forward_ms:.1f} ms"),
        ("median DDIM step", f"{ddim_ms:.1f} ms"),
        ("forward FLOPs / image", f"{forward_flops:,} (torch FlopCounterMode)"),
        (mem_label, f"{peak / 2**20:.1f} MiB ({peak} bytes)"),
        ("device", f"{device.type}: {device_name}"),
        ("torch", torch.__version__),
        ("threads", str(torch.get_num_threads())),
        ("mode", "torch.compile" if args.compile else "eager"),
    ]
    if device.type == "cuda":
        rows.append(("cudnn.benchmark", str(cudnn_benchmark)))
        rows.append(("tf32 (conv / matmul)", f"{tf32_conv} / {tf32_matmul}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
