#!/usr/bin/env bash
# check_report.sh: renders a run's report.html in headless Chromium and checks the screenshot.
#
# What it checks:
#   1. The page is self-contained: no src=/href=/url() pointing at http(s):// or //host (it must
#      open offline), and it says how many images are embedded as data: URLs.
#   2. Chromium renders it: a screenshot is written, is a PNG of exactly the window size
#      (1280x2000), and is not blank (many distinct colours, a real share of pixels not the
#      background colour), which a page whose images or text failed to render would not be.
# It prints one verdict line ("check_report: OK: ..." or "check_report: FAIL: ...") and exits
# non-zero on failure.
#
# Needs Debian's chromium (`apt-get install -y chromium`; override the binary with $CHROMIUM) and
# python3 (standard library only; Pillow is used when importable, for speed).
#
# Usage: tools/check_report.sh RUN_DIR/report.html [OUT.png]
#   OUT.png defaults to RUN_DIR/report.screenshot.png. Look at it to judge the page by eye.
set -euo pipefail

usage() {
    echo "usage: $0 RUN_DIR/report.html [OUT.png]" >&2
    exit 2
}
fail() {
    echo "check_report: FAIL: $*"
    exit 1
}

[[ $# -ge 1 && $# -le 2 ]] || usage
report=$1
[[ -f $report ]] || fail "$report: no such file"
report_abs=$(realpath -- "$report")
out=${2:-${report_abs%.html}.screenshot.png}
out_abs=$(realpath -m -- "$out")
width=1280
height=2000

chromium=${CHROMIUM:-chromium}
command -v "$chromium" >/dev/null 2>&1 ||
    fail "'$chromium' not found; install it with: apt-get install -y chromium"

# 1. Self-contained: nothing fetched from elsewhere. (Escaped text in <pre> cannot match: its
# quotes are &quot;.)
if grep -Eqi '(src|href)[[:space:]]*=[[:space:]]*["'"'"']?[[:space:]]*(https?:)?//|url\([[:space:]]*["'"'"']?[[:space:]]*(https?:)?//' "$report_abs"; then
    fail "$report refers to external URLs; the page must be self-contained"
fi
images=$({ grep -o 'data:image/png;base64,' "$report_abs" || true; } | wc -l)

# 2. Render it.
profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf -- "$profile" "$log"' EXIT
rm -f -- "$out_abs"
mkdir -p -- "$(dirname -- "$out_abs")"
if ! timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$profile" --screenshot="$out_abs" --window-size="$width,$height" \
    "file://$report_abs" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    fail "chromium failed to render $report (log above)"
fi
[[ -s $out_abs ]] || { tail -n 20 "$log" >&2; fail "chromium wrote no screenshot at $out_abs"; }

# 3. Check the screenshot.
python3 - "$out_abs" "$width" "$height" "$images" <<'PY'
import struct
import sys
import zlib
from collections import Counter

path, want_w, want_h, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def fail(msg):
    print(f"check_report: FAIL: {msg}")
    sys.exit(1)


def pixels_pillow(path):
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        return im.size, Counter(dict((c, n) for n, c in im.getcolors(im.width * im.height)))


def pixels_stdlib(path):
    """Decodes an 8-bit, non-interlaced PNG with zlib; returns (size, Counter of pixels)."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path} is not a PNG")
    pos, idat, ihdr, palette = 8, [], None, None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None:
        fail(f"{path} has no IHDR")
    w, h, depth, colour, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if depth != 8 or interlace != 0 or channels is None:
        fail(f"{path}: PNG format not supported without Pillow (depth {depth}, colour type {colour}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    bpp, stride = channels, w * channels
    prev = bytearray(stride)
    counts = Counter()
    for y in range(h):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if ftype == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ftype == 2:  # Up
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif ftype == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ftype == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        elif ftype != 0:
            fail(f"{path}: bad PNG filter type {ftype} in row {y}")
        row = bytes(line)
        if colour == 3:
            if palette is None:
                fail(f"{path}: palette PNG without PLTE")
            counts.update(palette[3 * i : 3 * i + 3] for i in row)
        else:
            counts.update(row[i : i + channels] for i in range(0, stride, channels))
        prev = line
    return (w, h), counts


try:
    import PIL  # noqa: F401

    (w, h), counts = pixels_pillow(path)
except ImportError:
    (w, h), counts = pixels_stdlib(path)

if (w, h) != (want_w, want_h):
    fail(f"{path} is {w}x{h}, expected {want_w}x{want_h}")
total = w * h
distinct = len(counts)
background = counts.most_common(1)[0][1] if counts else total
inked = 100.0 * (total - background) / total
# A blank or text-only page has a handful of colours and little ink; a page with plots has
# hundreds of colours (anti-aliased text, lines, sample grids).
if distinct < 64 or inked < 1.0:
    fail(f"{path} looks blank: {distinct} distinct colours, {inked:.1f}% non-background pixels")
print(
    f"check_report: OK: {path} is {w}x{h} with {distinct} distinct colours, "
    f"{inked:.1f}% non-background pixels; report embeds {images} PNG image(s), no external URLs"
)
PY
