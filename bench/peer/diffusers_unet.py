#!/usr/bin/env python3
"""PyTorch peer of `oxidiff bench` for any UNet: diffusers' UNet2DModel, or UNet2DConditionModel
for a text-conditioned one (`latent-text`), built from the config.json oxidiff writes for the same
network (`_class_name` says which), a conditioned one attending to random text states of the same
shape, timed as torch_unet.py times the `small` peer.

    python3 bench/peer/diffusers_unet.py --config unet_config.json [--context-tokens 77]
        [--batch 16] [--steps 10] [--warmup 3] [--device cpu|cuda] [--threads N] [--json]
        [--compile]

Timed, each the median over --steps after --warmup untimed repetitions, inputs drawn before the
clock starts: the training step (forward, eps-MSE loss, backward, one AdamW step: lr 1e-4,
betas (0.9, 0.999), eps 1e-8, no weight decay), the forward pass under torch.no_grad(), and one
DDIM step (t = 500 to 480, the model call plus the update). The context is one fixed
N(0, 1) tensor [batch, tokens, cross_attention_dim], as a frozen encoder's cached states are.
Attention is diffusers' default (torch's scaled_dot_product_attention).

Needs torch and diffusers (`pip install torch diffusers`).
"""

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from torch_unet import add_timing_args, cpu_name, ddim_step_of, peak_memory_bytes, sync

NUM_TIMESTEPS = 1000


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--config", required=True, help="the UNet2DModel's or UNet2DConditionModel's config.json"
    )
    p.add_argument("--context-tokens", type=int, default=77)
    add_timing_args(p)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.context_tokens < 1:
        p.error("--steps, --batch and --context-tokens must be >= 1, --warmup >= 0")

    import diffusers
    from diffusers import UNet2DConditionModel, UNet2DModel

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda but torch.cuda.is_available() is False")
        torch.backends.cudnn.benchmark = True
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = cpu_name()

    with open(args.config) as f:
        config = json.load(f)
    conditioned = config.get("_class_name", "UNet2DModel") == "UNet2DConditionModel"
    model_class = UNet2DConditionModel if conditioned else UNet2DModel
    model = model_class.from_config(config).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    compiled = torch.compile(model) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, eps=1e-8)
    channels, size = model.config.in_channels, model.config.sample_size
    if conditioned:
        context = torch.randn(
            args.batch, args.context_tokens, model.config.cross_attention_dim, device=device
        )

        def net(x_t, t):
            return compiled(x_t, t, encoder_hidden_states=context).sample
    else:

        def net(x_t, t):
            return compiled(x_t, t).sample

    def make_batch():
        x_t = torch.randn(args.batch, channels, size, size, device=device)
        t = torch.randint(0, NUM_TIMESTEPS, (args.batch,), device=device)
        return x_t, t, torch.randn_like(x_t)

    def timed(fn):
        """Median wall ms over the timed calls, and the cores they kept busy (process CPU time
        over wall time, summed over the timed calls)."""
        times, cpu = [], 0.0
        for i in range(args.warmup + args.steps):
            inputs = make_batch()
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(*inputs)
            sync(device)
            if i >= args.warmup:
                times.append((time.perf_counter() - start) * 1e3)
                cpu += time.process_time() - start_cpu
        return statistics.median(times), cpu * 1e3 / sum(times)

    def train_step(x_t, t, noise):
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(net(x_t, t), noise)
        loss.backward()
        optimizer.step()

    def forward(x_t, t, _noise):
        with torch.no_grad():
            return net(x_t, t)

    ddim_step = ddim_step_of(net)

    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        one, t0 = make_batch()[0][:1], torch.zeros(1, device=device)
        if conditioned:
            model(one, t0, encoder_hidden_states=context[:1])
        else:
            model(one, t0)
    forward_flops = int(counter.get_total_flops())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    train_ms, train_cores = timed(train_step)
    model.eval()
    forward_ms, _ = timed(forward)
    ddim_ms, _ = timed(ddim_step)

    result = {
        "parameters": parameters,
        "train_step_ms": round(train_ms, 3),
        "train_images_per_s": round(args.batch * 1e3 / train_ms, 3),
        "train_cpu_cores": round(train_cores, 3),
        "forward_ms": round(forward_ms, 3),
        "ddim_step_ms": round(ddim_ms, 3),
        "forward_flops_per_image": forward_flops,
        "peak_memory_bytes": peak_memory_bytes(device),
        "device": device_name,
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "batch": args.batch,
        "context_tokens": args.context_tokens if conditioned else None,
        "model_class": model_class.__name__,
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "warmup": args.warmup,
        "compiled": args.compile,
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
