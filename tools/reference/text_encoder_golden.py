#!/usr/bin/env python3
"""Text encoders in transformers, for oxidiff's parity tests (crates/oxidiff-models/tests/text_encoder.rs).

Run from the repository root (torch, transformers, sentence-transformers, safetensors):

    /opt/refenv/bin/python tools/reference/text_encoder_golden.py

It writes, under crates/oxidiff-models/tests/fixtures/:

- tiny_clip_text/: a tiny random `CLIPTextModel` saved by `save_pretrained` (config.json +
  model.safetensors, whose names transformers 5 writes bare, without the `text_model.` of
  earlier releases; the test loads both): transformers' test configuration (hidden 32, 2 layers, 4 heads,
  intermediate 37, quick_gelu) with a vocabulary of 1000 and 77 positions, end token 999;
  every weight drawn afresh by _common.randomise (LayerNorm scales around 1, non-zero biases,
  so a misplaced norm or bias shows). io.safetensors holds int64 `input_ids` and
  `attention_mask` [3, 12] (a sequence padded with the end token, as SD's tokenizer pads; one
  padded with id 0 and masked; one with no end token) and the float32 outputs: with the mask
  `last_hidden_state`, `pooler_output`; without it `last_hidden_state_nomask`,
  `pooler_output_nomask`; the legacy rule (`eos_token_id = 2`: pooled at the largest id)
  `pooler_output_legacy`; and with `hidden_act = "gelu"` (the same weights)
  `last_hidden_state_gelu`.
- minilm/io.safetensors: the real sentence-transformers all-MiniLM-L6-v2 (weights from
  ./tools/fetch_minilm.sh, in $OXIDIFF_MINILM_DIR or ~/.cache/oxidiff/all-MiniLM-L6-v2; they
  stay outside the repository) on five sentences tokenised by its tokenizer.json and padded:
  `input_ids`, `attention_mask` (int64), `BertModel`'s `last_hidden_state` and
  `pooler_output`, and `SentenceTransformer.encode`'s `sentence_embedding` (mean pooling over
  the mask, L2-normalised); and `last_hidden_state_f64`, `sentence_embedding_f64`: the same
  model run in float64 (stored as float32), the exact values both float32 runs round around.

`--check-export DIR...` loads each text encoder oxidiff saved (or each such directory inside
DIR) with `CLIPTextModel.from_pretrained` or `BertModel.from_pretrained` (by config.json's
model_type), refusing a tensor left unused or missing, runs it on the inputs oxidiff stored
next to it (`oxidiff_io.safetensors`: input_ids, attention_mask, and oxidiff's own
last_hidden_state and pooled) and prints the largest absolute differences; a BERT's pooled
vector is sentence-transformers' mean pooling + L2 normalisation, computed here as
`sentence_transformers.models.Pooling` and `Normalize` do (checked against
SentenceTransformer itself on the real model above). It exits non-zero when a difference
exceeds 1e-4. crates/oxidiff-models/tests/text_encoder.rs writes such directories when
OXIDIFF_EXPORT_DIR is set.
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import BertModel, CLIPTextConfig, CLIPTextModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import find_exports, randomise  # noqa: E402

FIXTURES = "crates/oxidiff-models/tests/fixtures"

TINY_CLIP = dict(
    vocab_size=1000,
    hidden_size=32,
    intermediate_size=37,
    projection_dim=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    bos_token_id=998,
    eos_token_id=999,
    pad_token_id=0,
)

SENTENCES = [
    "a photo of a cat",
    "A smiling face with heart-shaped eyes!",
    "rocket",
    "Two dogs play in the snow, next to a red car.",
    "café crème, naïve résumé",
]


def minilm_dir():
    return os.environ.get("OXIDIFF_MINILM_DIR") or os.path.expanduser("~/.cache/oxidiff/all-MiniLM-L6-v2")


def clip_inputs():
    g = torch.Generator().manual_seed(5)
    length = 12
    ids = torch.randint(3, 998, (3, length), generator=g)
    mask = torch.ones(3, length, dtype=torch.int64)
    # bos, 6 tokens, eos, then padded with eos (SD's tokenizer pads with <|endoftext|>).
    ids[0, 0] = 998
    ids[0, 7:] = 999
    # bos, 4 tokens, eos, then id 0 masked out.
    ids[1, 0] = 998
    ids[1, 5] = 999
    ids[1, 6:] = 0
    mask[1, 6:] = 0
    # No end token at all: transformers pools at position 0 (argmax of an all-zero row).
    ids[2, 0] = 998
    return ids, mask


def run_clip(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.last_hidden_state, out.pooler_output


def write_clip():
    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(**TINY_CLIP)).eval()
    randomise(model, 0)
    out_dir = os.path.join(FIXTURES, "tiny_clip_text")
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    ids, mask = clip_inputs()
    io = {"input_ids": ids, "attention_mask": mask}
    io["last_hidden_state"], io["pooler_output"] = run_clip(model, ids, mask)
    io["last_hidden_state_nomask"], io["pooler_output_nomask"] = run_clip(model, ids, None)
    for name, config in [("legacy", dict(eos_token_id=2)), ("gelu", dict(hidden_act="gelu"))]:
        other = CLIPTextModel(CLIPTextConfig(**{**TINY_CLIP, **config})).eval()
        other.load_state_dict(model.state_dict())
        hidden, pooled = run_clip(other, ids, mask)
        io["pooler_output_legacy" if name == "legacy" else "last_hidden_state_gelu"] = (
            pooled if name == "legacy" else hidden
        )
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out_dir, "io.safetensors"))
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out_dir}: {n} parameters, |last_hidden_state| max {io['last_hidden_state'].abs().max().item():.3g}")


def sentence_pooling(hidden, mask):
    """sentence-transformers' Pooling (mean over the mask) then Normalize."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, p=2, dim=1)


def write_minilm():
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    d = minilm_dir()
    if not os.path.isfile(os.path.join(d, "model.safetensors")):
        raise SystemExit(f"{d}: no all-MiniLM-L6-v2 (run ./tools/fetch_minilm.sh)")
    tokenizer = AutoTokenizer.from_pretrained(d)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    model = BertModel.from_pretrained(d).eval()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    st = SentenceTransformer(d, device="cpu")
    embedding = st.encode(SENTENCES, convert_to_tensor=True, batch_size=len(SENTENCES))
    ours = sentence_pooling(out.last_hidden_state, batch["attention_mask"])
    gap = (embedding - ours).abs().max().item()
    if gap > 1e-5:
        raise SystemExit(f"mean pooling + normalise differs from SentenceTransformer by {gap:.3g}")
    # The same in float64, to tell float32 rounding (transformers' own float32 output is
    # ~4e-5 from it after six layers) from a real difference.
    with torch.no_grad():
        exact = model.double()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    io = {
        "input_ids": batch["input_ids"].to(torch.int64),
        "attention_mask": batch["attention_mask"].to(torch.int64),
        "last_hidden_state": out.last_hidden_state,
        "pooler_output": out.pooler_output,
        "sentence_embedding": embedding.float(),
        "last_hidden_state_f64": exact.last_hidden_state.float(),
        "sentence_embedding_f64": sentence_pooling(exact.last_hidden_state, batch["attention_mask"]).float(),
    }
    out_dir = os.path.join(FIXTURES, "minilm")
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out_dir, "io.safetensors"))
    print(
        f"wrote {out_dir}: {len(SENTENCES)} sentences of {batch['input_ids'].shape[1]} tokens "
        f"(SentenceTransformer vs pooling here: {gap:.3g})"
    )


def loaded(cls, d):
    """`cls.from_pretrained(d)` in eval mode, refusing weights left unused, missing or mis-shaped."""
    model, info = cls.from_pretrained(d, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"{d}: from_pretrained did not take every tensor: {bad}")
    return model.eval()


def check_export(dirs):
    found = find_exports(dirs, "config.json")
    if not found:
        raise SystemExit(f"no exported text encoder (config.json) in {dirs}")
    worst = 0.0
    for d in found:
        with open(os.path.join(d, "config.json")) as f:
            model_type = json.load(f).get("model_type")
        io = load_file(os.path.join(d, "oxidiff_io.safetensors"))
        ids, mask = io["input_ids"], io["attention_mask"]
        if model_type == "clip_text_model":
            hidden, pooled = run_clip(loaded(CLIPTextModel, d), ids, mask)
        elif model_type == "bert":
            with torch.no_grad():
                hidden = loaded(BertModel, d)(input_ids=ids, attention_mask=mask).last_hidden_state
            pooled = sentence_pooling(hidden, mask)
        else:
            raise SystemExit(f"{d}: model_type {model_type!r} is neither clip_text_model nor bert")
        diffs = [
            (hidden - io["last_hidden_state"]).abs().max().item(),
            (pooled - io["pooled"]).abs().max().item(),
        ]
        worst = max(worst, *diffs)
        print(
            f"{d} ({model_type}): max |transformers - oxidiff| = {diffs[0]:.3g} (last_hidden_state), "
            f"{diffs[1]:.3g} (pooled); |last_hidden_state| max {io['last_hidden_state'].abs().max().item():.3g}"
        )
    return worst


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-export", nargs="+", metavar="DIR", help="directories oxidiff exported")
    parser.add_argument("--clip-only", action="store_true", help="skip the MiniLM fixture")
    args = parser.parse_args()
    if args.check_export:
        worst = check_export(args.check_export)
        if worst > 1e-4:
            raise SystemExit(f"transformers and oxidiff differ by {worst:.3g} > 1e-4")
    else:
        write_clip()
        if not args.clip_only:
            write_minilm()


if __name__ == "__main__":
    main()
