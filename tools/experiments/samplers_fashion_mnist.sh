#!/usr/bin/env bash
# Sample quality against network calls for every sampler, and inpainting and denoising quality,
# on a trained Fashion-MNIST model (by default the `simple` run of objectives_fashion_mnist.sh).
#
#     tools/experiments/samplers_fashion_mnist.sh [RUN_DIR] [SAMPLES] [SPACING] [CALLS...]
#
# FD-oxidiff (this project's feature network, not FID) of SAMPLES generated images (default 300)
# against the first SAMPLES Fashion-MNIST test images, for every sampler at each budget of
# network calls in CALLS (default 10 20 50 100 1000; heun takes (calls + 1)/2 steps, so one call
# fewer), cheapest budget first, with timestep spacing SPACING (default trailing); then
# inpainting of the centre square (replacement vs RePaint) and denoising at σ = 10, 25, 50.
# Results are cached per run in RUN_DIR/samplers/*.json, so an interrupted run resumes.
set -euo pipefail
run=${1:-runs/objectives/simple}
n=${2:-300}
spacing=${3:-trailing}
shift $(($# < 3 ? $# : 3))
calls=("$@")
[ ${#calls[@]} -gt 0 ] || calls=(10 20 50 100 1000)
bin=${OXIDIFF:-target/release/oxidiff}
out="$run/samplers"
mkdir -p "$out"
fd() { # sampler steps
  local json="$out/$1-$2-$spacing.json"
  if [ ! -f "$json" ]; then
    "$bin" eval --checkpoint "$run" --split test --images "$n" --no-bpd --fd --fd-samples "$n" \
      --sampler "$1" --steps "$2" --spacing "$spacing" --json "$json.tmp" >/dev/null
    mv "$json.tmp" "$json"
  fi
  python3 - "$json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["distance"]
calls = r["sampler"].split(", ")[-1]
print("| {} | {} | {:.1f} | {:.3f} / {:.3f} |".format(sys.argv[2], calls, d["fd_oxidiff"], d["precision"], d["recall"]), flush=True)
PY
}
echo "| sampler | calls ($spacing spacing) | FD-oxidiff | precision / recall |"
echo "|---|---|---|---|"
for c in "${calls[@]}"; do
  # the deterministic solvers first: at 1,000 calls they are the slowest rows to wait for
  for s in ddim dpmpp-2m dpmpp-2m-sde ddpm; do fd "$s" "$c"; done
  fd heun $(((c + 1) / 2))
  fd euler "$c"
done
if [ ! -f "$out/edit-$spacing.json" ]; then
  "$bin" eval --checkpoint "$run" --split test --images 100 --no-bpd --inpaint --jump-length 5 \
    --resample 3 --denoise-sigmas 10,25,50 --edit-steps 50 --spacing "$spacing" \
    --json "$out/edit-$spacing.json" | grep -E "inpainting|denoising"
fi
