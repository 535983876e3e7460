#!/usr/bin/env python3
"""Reads a TensorBoard event directory with the real `tensorboard` package and prints it as JSON.

Used by crates/oxidiff-train/tests/tensorboard.rs to check that the files written by
`oxidiff_train::tensorboard::TensorBoardWriter` load in TensorBoard itself. Needs

    python3 -m pip install tensorboard

then, from the repository root:

    python3 tools/reference/read_tensorboard.py RUN_DIR

Output (stdout, one JSON object; every event file in RUN_DIR is merged, as TensorBoard does):

    {"scalars": {tag: [[step, value], ...]},
     "images": {tag: [[step, width, height, len(encoded_image_string)], ...]}}
"""

import json
import sys

from tensorboard.backend.event_processing.event_accumulator import (
    IMAGES,
    SCALARS,
    EventAccumulator,
)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} RUN_DIR")
    # 0 keeps every event; the default reservoir would sample images down to 4 per tag.
    acc = EventAccumulator(sys.argv[1], size_guidance={SCALARS: 0, IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()
    out = {
        "scalars": {
            tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in tags["scalars"]
        },
        "images": {
            tag: [
                [e.step, e.width, e.height, len(e.encoded_image_string)]
                for e in acc.Images(tag)
            ]
            for tag in tags["images"]
        },
    }
    json.dump(out, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
