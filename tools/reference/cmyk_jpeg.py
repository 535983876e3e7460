#!/usr/bin/env python3
"""A tiny CMYK JPEG for crates/oxidiff-data/tests/decode.rs (`CMYK_JPEG`).

Run from the repository root and paste the printed array into the test:

    /opt/refenv/bin/python tools/reference/cmyk_jpeg.py

Generated with Pillow 13.0.0. The image is 4×2: the left two columns are pure cyan
(C=255, others 0), the right two pure yellow (Y=255). Pillow writes an Adobe APP14 marker
and stores the channels inverted, as Photoshop does, which is what CMYK JPEGs in the wild
look like. Pillow itself decodes it to RGB (0, 255, 255) and (255, 255, 0) within 1.
"""

import io

from PIL import Image

im = Image.new("CMYK", (4, 2))
px = im.load()
for y in range(2):
    for x in range(4):
        px[x, y] = (255, 0, 0, 0) if x < 2 else (0, 0, 255, 0)
buf = io.BytesIO()
im.save(buf, "JPEG", quality=95)
data = buf.getvalue()

print(f"const CMYK_JPEG: [u8; {len(data)}] = [")
for i in range(0, len(data), 16):
    print("    " + " ".join(f"0x{b:02x}," for b in data[i : i + 16]))
print("];")
