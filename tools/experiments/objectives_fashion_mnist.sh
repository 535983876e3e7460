#!/usr/bin/env bash
# Trains the same small UNet on Fashion-MNIST (28×28, 2% of the training set held out) with the
# three objectives — L_simple, hybrid (learned variance, λ = 0.001) and the pure VLB (learned
# variance, loss-second-moment importance sampling of t, as in Nichol & Dhariwal 2021) — for
# the same number of steps, then evaluates each on the first images of the Fashion-MNIST test
# set: NLL bound in bits/dim, ε-MSE per band of t, FD-oxidiff with precision/recall.
#
# Needs `apt-get install dataset-fashion-mnist` and a release build:
#     cargo build --release && tools/experiments/objectives_fashion_mnist.sh [OUT_DIR]
# Extra arguments after OUT_DIR are passed to every `train` (e.g. --set train.steps=300).
set -euo pipefail
out=${1:-runs/objectives}
shift || true
bin=${OXIDIFF:-target/release/oxidiff}
base=tools/experiments/fashion_mnist_base.toml
images=${EVAL_IMAGES:-500}
mkdir -p "$out"
declare -A objective=(
  [simple]="--set diffusion.loss=simple"
  [hybrid]="--set diffusion.loss=hybrid --set diffusion.variance_type=learned"
  [vlb]="--set diffusion.loss=vlb --set diffusion.variance_type=learned --set train.timestep_draw=loss-second-moment"
)
for name in simple hybrid vlb; do
  if [ ! -d "$out/$name/checkpoints" ]; then
    # shellcheck disable=SC2086
    "$bin" train --config "$base" --out "$out/$name" ${objective[$name]} "$@" 2>&1 \
      | grep -v '^step ' | tee "$out/$name.train.log"
  fi
  # --spacing leading: the spacing docs/objectives.md was measured with (then the default)
  "$bin" eval --checkpoint "$out/$name" --split test --images "$images" --stride 40 \
    --fd --fd-samples "$images" --spacing leading --json "$out/$name.eval.json" \
    | tee "$out/$name.eval.txt"
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = []
for name in ["simple", "hybrid", "vlb"]:
    r = json.load(open(f"{out}/{name}.eval.json"))
    n, b, d = r["nll"], r["band_mse"], r["distance"]
    rows.append((name, f"{n['bpd']:.3f} ± {n['bpd_stderr']:.3f}",
                 " / ".join(f"{m:.4f}" for m in b["mse"]),
                 f"{d['fd_oxidiff']:.2f}", f"{d['precision']:.3f} / {d['recall']:.3f}"))
print("| objective | test bits/dim (stride 40) | ε-MSE by t band (4 quarters) | FD-oxidiff | precision / recall |")
print("|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")
PY
