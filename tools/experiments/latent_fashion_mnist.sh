#!/usr/bin/env bash
# The measured comparison of docs/latent.md: on Fashion-MNIST at 32×32, a UNet trained on the
# pixels against the same UNet (equal parameter count but for conv_in/conv_out) trained on the
# latents of an oxidiff autoencoder (f = 4, 4×8×8 latents), each for the same wall-clock
# budget; then FD-oxidiff of 500 samples each against 500 held-out images, sample grids, and
# the autoencoder's reconstruction scores. FD and reconstructions are measured on the first 500
# Fashion-MNIST test images.
#
#   apt-get install dataset-fashion-mnist        # once
#   cargo build --release -p oxidiff
#   tools/experiments/latent_fashion_mnist.sh [SECONDS_PER_UNET] [AUTOENCODER_STEPS]   # 240, 1000
#
# A run stopped by its budget (SIGINT) checkpoints the step under way, which is what is
# evaluated. Writes runs under $OUT (default /tmp/latent-vs-pixel) and the grids into
# docs/latent/.
set -euo pipefail
BUDGET=${1:-240}
AE_STEPS=${2:-1000}
OUT=${OUT:-runs/latent-fashion-mnist}
BIN=${BIN:-target/release/oxidiff}
mkdir -p "$OUT" docs/latent
DATA=(--set data.source=fashion-mnist --set data.image_size=32 --set data.channels=1)
UNET=(--set model.preset=small --set model.model_channels=32 --set "model.channel_mult=[1, 2, 2]"
      --set model.num_res_blocks=2 --set model.num_heads=1
      --set train.batch_size=32 --set train.lr=2e-4 --set train.lr_schedule=constant
      --set train.warmup_steps=200 --set train.steps=1000000 --set train.checkpoint_every=1000000
      --set train.sample_every=1000000 --set train.eval_every=0 --set train.bpd_every=0)

echo "== autoencoder: small preset, f = 4, $AE_STEPS steps"
# Runs already made are kept (delete $OUT to start over).
[ -d "$OUT/vae/checkpoints" ] || /usr/bin/time -f "autoencoder: %e s wall, %M KiB peak" "$BIN" train "${DATA[@]}" \
  --set task=autoencoder --set autoencoder.in_channels=1 --set autoencoder.image_size=32 \
  --set train.steps="$AE_STEPS" --set train.batch_size=16 --set train.eval_every=250 \
  --out "$OUT/vae" 2>&1 | grep -v "^step" | tail -4
"$BIN" eval --checkpoint "$OUT/vae" --split test --fd --images 500 | tee "$OUT/vae-eval.txt"
cp "$OUT/vae/samples/step-$(printf %07d "$AE_STEPS").png" docs/latent/reconstructions.png

echo "== pixel UNet, $BUDGET s"
[ -d "$OUT/pixel/checkpoints" ] || /usr/bin/time -f "pixel: %e s wall, %M KiB peak" timeout -s INT "$BUDGET" "$BIN" train "${DATA[@]}" \
  "${UNET[@]}" --set model.image_size=32 --set model.in_channels=1 --set "model.attention_resolutions=[8]" \
  --out "$OUT/pixel" 2>&1 | grep -v "^step" | tail -3 || true

echo "== latent UNet, $BUDGET s (after encoding the images once)"
/usr/bin/time -f "latent encoding: %e s wall" "$BIN" train "${DATA[@]}" "${UNET[@]}" \
  --set latent.autoencoder=\""$OUT/vae"\" --set diffusion.clip_sample=false \
  --set "model.attention_resolutions=[2]" --set train.steps=1 --out "$OUT/encode-only" 2>&1 \
  | grep -E "^(latent|error)" || true
cp "$OUT/encode-only/latents.safetensors" "$OUT/latents.safetensors.keep"
mkdir -p "$OUT/latent" && cp "$OUT/latents.safetensors.keep" "$OUT/latent/latents.safetensors"
/usr/bin/time -f "latent: %e s wall, %M KiB peak" timeout -s INT "$BUDGET" "$BIN" train "${DATA[@]}" \
  "${UNET[@]}" --set latent.autoencoder=\""$OUT/vae"\" --set diffusion.clip_sample=false \
  --set "model.attention_resolutions=[2]" --out "$OUT/latent" 2>&1 | grep -v "^step" | tail -4 || true

for run in pixel latent; do
  echo "== $run: training rate, FD-oxidiff of 500 samples (DDIM 50)"
  python3 - "$OUT/$run/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"images_per_sec"' in l]
rates = [r["images_per_sec"] for r in rows[10:]]
print(f"steps {rows[-1]['step']}, median {statistics.median(rates):.1f} images/s")
PY
  "$BIN" model --config "$OUT/$run/config.toml" | grep parameters
  "$BIN" eval --checkpoint "$OUT/$run" --split test --no-bpd --fd --fd-samples 500 --images 500 \
    | tee "$OUT/$run-eval.txt"
  "$BIN" sample --checkpoint "$OUT/$run" --num 64 --out "docs/latent/$run-samples.png"
done
