#!/usr/bin/env bash
# GPU check run on a lent device machine (see bench/README.md): 50 training steps of the `small`
# preset at batch 128 with the `vulkan` build, then the PyTorch peer (eager) on the same card.
# Expects .gpu/oxidiff (stripped) built here with `cargo build --release -p oxidiff --features vulkan`
# and the Vulkan loader packages in .gl/ (device tool README).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export XDG_RUNTIME_DIR=/tmp
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# Peak GPU memory of whichever process runs, sampled every 200 ms.
watch_mem() { while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.2; done; }

watch_mem > "$OUT/oxidiff_mem.txt" &
W=$!
python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.gpu/oxidiff.xz'), open('.gpu/oxidiff', 'wb'))" && chmod +x .gpu/oxidiff
timeout 420 .gpu/oxidiff train --device vulkan --out /tmp/gpu-run \
  --set model.preset=small --set train.batch_size=128 --set train.steps=50 \
  --set train.log_every=10 --set train.sample_every=1000 --set train.checkpoint_every=1000 \
  --set sample.num=16 2>&1 | tee "$OUT/oxidiff_train.log" | tail -12
kill $W
cp /tmp/gpu-run/metrics.jsonl "$OUT/oxidiff_metrics.jsonl" 2>/dev/null
cp /tmp/gpu-run/samples/step-0000050.png "$OUT/oxidiff_small_samples.png" 2>/dev/null

watch_mem > "$OUT/torch_mem.txt" &
W=$!
timeout 240 python3 bench/peer/torch_unet.py --device cuda --batch 128 --steps 30 --warmup 10 --json \
  | tee "$OUT/torch.json"
kill $W

python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
m = [json.loads(l) for l in open(f"{out}/oxidiff_metrics.jsonl")]
steady = [x["images_per_sec"] for x in m if x["step"] > 10]
ox = statistics.median(steady)
t = json.loads(open(f"{out}/torch.json").read().strip().splitlines()[-1])
peak = lambda f: max(int(l) for l in open(f) if l.strip().isdigit())
print("| implementation | train img/s (median, steps 11-50) | peak GPU memory (nvidia-smi) |")
print("|---|---|---|")
print(f"| oxidiff vulkan (burn 0.22.1) | {ox:.1f} | {peak(out + '/oxidiff_mem.txt')} MiB |")
print(f"| PyTorch {t['torch_version']} eager | {t['train_images_per_s']:.1f} | {peak(out + '/torch_mem.txt')} MiB |")
print(f"ratio oxidiff / PyTorch: {ox / t['train_images_per_s']:.3f}")
PY
