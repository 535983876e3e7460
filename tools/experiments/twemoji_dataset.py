#!/usr/bin/env python3
"""Turns the npm package emoji-datasource-twitter@16.0.0 into a captioned image folder that
oxidiff reads as `data.source = "folder"` with `data.captions = "metadata"`:

    OUT/<category>/<image>.png     64×64 RGBA Twemoji (CC-BY 4.0, Twitter, Inc. and contributors)
    OUT/metadata.jsonl             {"file_name": "<category>/<image>.png", "text": [captions]}
    OUT/LICENSE.txt                the credits

The sub-folders make the emoji's category its class label (for a prompt-following score: a
classifier of category); the captions are its CLDR name and short names in words, with the
skin tone for skin-tone variants ("waving hand, medium skin tone").

Usage (standard library only):
    npm pack emoji-datasource-twitter@16.0.0
    python3 tools/experiments/twemoji_dataset.py emoji-datasource-twitter-16.0.0.tgz OUT
"""

import json
import os
import sys
import tarfile

SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}

CREDIT = """Twemoji images: Copyright 2019 Twitter, Inc and other contributors, CC-BY 4.0
(https://creativecommons.org/licenses/by/4.0/), as packaged in the npm package
emoji-datasource-twitter@16.0.0 (emoji.json: MIT, Copyright (c) 2013 Cal Henderson).
"""


def slug(category):
    words = "".join(c if c.isalnum() else " " for c in category.lower()).split()
    return "-".join(words)


def captions(entry, tones=None):
    words = [entry["name"].lower()]
    words += [s.replace("_", " ").replace("-", " ") for s in entry.get("short_names", [])]
    seen, out = set(), []
    for w in words:
        if w and w not in seen:
            seen.add(w)
            out.append(w)
    if tones:
        tone = ", ".join(SKIN_TONES.get(t, t) for t in tones)
        out = [f"{c}, {tone}" for c in out]
    return out


def main(tgz, out):
    with tarfile.open(tgz) as tar:
        emoji = json.load(tar.extractfile("package/emoji.json"))
        members = {m.name: m for m in tar.getmembers()}
        rows = []

        def add(entry, image, tones=None):
            member = members.get(f"package/img/twitter/64/{image}")
            if member is None:
                return
            category = slug(entry["category"])
            os.makedirs(os.path.join(out, category), exist_ok=True)
            name = f"{category}/{image}"
            with open(os.path.join(out, name), "wb") as f:
                f.write(tar.extractfile(member).read())
            rows.append({"file_name": name, "text": captions(entry, tones)})

        for entry in emoji:
            if entry.get("has_img_twitter"):
                add(entry, entry["image"])
            for key, variant in (entry.get("skin_variations") or {}).items():
                if variant.get("has_img_twitter"):
                    add(entry, variant["image"], key.split("-"))
    with open(os.path.join(out, "metadata.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "LICENSE.txt"), "w") as f:
        f.write(CREDIT)
    print(f"{len(rows)} images in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
