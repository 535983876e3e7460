#!/usr/bin/env python3
"""PyTorch peer of `oxidiff bench --autoencoder`: diffusers' AutoencoderKL built from the same
config.json oxidiff's preset describes, timed the same way.

Timed, each the median over --steps after --warmup untimed repetitions, inputs drawn before the
clock starts:
- the training step (unless --no-train): encode, a posterior sample, decode, the loss
  sum|x - x_hat| / B + 1e-6 * sum KL / B, backward, one AdamW step (lr 1e-4, betas (0.9, 0.999),
  eps 1e-8, no weight decay);
- encoding (the posterior's mean) and decoding under torch.no_grad().

Needs torch and diffusers (`pip install torch diffusers`). Prints one JSON object with --json.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch


def peak_memory_bytes():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def timed(fn, make, warmup, steps):
    times = []
    for i in range(warmup + steps):
        inputs = make()
        start = time.perf_counter()
        fn(*inputs)
        elapsed = (time.perf_counter() - start) * 1e3
        if i >= warmup:
            times.append(elapsed)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="AutoencoderKL config.json (diffusers' keys)")
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from diffusers import AutoencoderKL

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(args.config) as f:
        config = json.load(f)
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    vae = AutoencoderKL(**config)
    parameters = sum(p.numel() for p in vae.parameters())
    b, c, s = args.batch, config["in_channels"], args.image_size
    f = 2 ** (len(config["block_out_channels"]) - 1)
    latent = (b, config["latent_channels"], s // f, s // f)

    train_ms = None
    if not args.no_train:
        vae.train()
        opt = torch.optim.AdamW(vae.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

        def step(x, noise):
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * noise
            kl = posterior.kl().sum() / b
            x_hat = vae.decode(z).sample
            loss = (x - x_hat).abs().sum() / b + 1e-6 * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        train_ms = timed(
            step,
            lambda: (torch.rand(b, c, s, s) * 2 - 1, torch.randn(*latent)),
            args.warmup,
            args.steps,
        )

    vae.eval()
    with torch.no_grad():
        x = torch.rand(b, c, s, s) * 2 - 1
        z = torch.randn(*latent)
        encode_ms = timed(lambda: vae.encode(x).latent_dist.mean, lambda: (), args.warmup, args.steps)
        decode_ms = timed(lambda: vae.decode(z).sample, lambda: (), args.warmup, args.steps)

    result = {
        "parameters": parameters,
        "batch": b,
        "image_size": s,
        "train_step_ms": train_ms,
        "train_images_per_s": None if train_ms is None else b * 1e3 / train_ms,
        "encode_ms": encode_ms,
        "decode_ms": decode_ms,
        "peak_memory_bytes": peak_memory_bytes(),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
