#!/usr/bin/env bash
# Sample quality against network calls for every sampler, and inpainting and denoising quality,
# on a trained Fashion-MNIST model (by default the `simple` run of objectives_fashion_mnist.sh).
#
#     tools/experiments/samplers_fashion_mnist.sh [RUN_DIR] [SAMPLES]
#
# FD-oxidiff (this project's feature network, not FID) of SAMPLES generated images (default 300)
# against the first SAMPLES Fashion-MNIST test images, for ddim, euler, heun, dpmpp-2m and
# dpmpp-2m-sde at about 10, 20 and 50 network calls (heun at 2·steps − 1), and ddpm at T; then
# inpainting of the centre square (replacement vs RePaint) and denoising at σ = 10, 25, 50.
set -euo pipefail
run=${1:-runs/objectives/simple}
n=${2:-300}
bin=${OXIDIFF:-target/release/oxidiff}
out="$run/samplers"
mkdir -p "$out"
fd() { # sampler steps
  if [ ! -f "$out/$1-$2.json" ]; then
    "$bin" eval --checkpoint "$run" --split test --images "$n" --no-bpd --fd --fd-samples "$n" \
      --sampler "$1" --steps "$2" --json "$out/$1-$2.json" >/dev/null
  fi
  python3 - "$out/$1-$2.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["distance"]
calls = r["sampler"].split(", ")[-1]
print("| {} | {} | {:.1f} | {:.3f} / {:.3f} |".format(sys.argv[2], calls, d["fd_oxidiff"], d["precision"], d["recall"]))
PY
}
echo "| sampler | calls | FD-oxidiff | precision / recall |"
echo "|---|---|---|---|"
for s in ddim euler dpmpp-2m dpmpp-2m-sde; do
  for steps in 10 20 50; do fd "$s" "$steps"; done
done
for steps in 5 10 25; do fd heun "$steps"; done
fd ddpm 1000
"$bin" eval --checkpoint "$run" --split test --images 100 --no-bpd --inpaint --jump-length 5 \
  --resample 3 --denoise-sigmas 10,25,50 --edit-steps 50 --json "$out/edit.json" | grep -E "inpainting|denoising"
