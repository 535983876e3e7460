//! Golden ids for oxidiff's tokenizers against the Python tokenizers, on 58 strings
//! (punctuation, contractions, numbers, accents in NFC and NFD, CJK, emoji with ZWJ and skin
//! tones, tabs and newlines, the empty string, the special tokens written out, over-long prompts
//! and words). `tests/fixtures/tokenizer/{clip,bert}.json` come from
//!
//!     /opt/refenv/bin/python tools/reference/tokenizer_golden.py
//!
//! (transformers 5.24.0, tokenizers 0.23.3, open_clip_torch 3.3.0, sentence-transformers; and
//! transformers 4.57.6 with ftfy 6.3.1 for the slow `CLIPTokenizer`, which transformers 5 no
//! longer has). CLIP's ids must equal transformers 5's `CLIPTokenizer` (the tokenizers backend,
//! formerly `CLIPTokenizerFast`) exactly, padded to 77 as the SD pipeline calls it. The fixture
//! records per string where the others differ from it, and this test does not follow them:
//! - the slow `CLIPTokenizer` (9 strings) and open_clip's `SimpleTokenizer` (the same 9) run
//!   ftfy and `html.unescape` first and lowercase with Python's `str.lower`. So curly quotes
//!   become straight ones, the ﬁ ligature becomes "fi", fullwidth letters and CJK punctuation
//!   become ASCII, control characters are dropped, `&amp;` becomes `&`, mojibake "cafÃ©" becomes
//!   "café", and "ΟΔΟΣ" ends in a final sigma ς (the tokenizers crate lowercases one character
//!   at a time: σ);
//! - open_clip also tokenizes the written-out `<|endoftext|>` as text (4 strings: its special
//!   tokens are named `<end_of_text>`);
//! - transformers 4 (slow and fast) also reads "<|ENDOFTEXT|>" as the end token (its special
//!   tokens were normalised, so lowercased before matching). transformers 5 does not.
//!
//! BERT (all-MiniLM-L6-v2's tokenizer.json, `tools/fetch_minilm.sh`) must equal transformers'
//! `BertTokenizer` padded and truncated to 32. Where MiniLM is not installed that test prints a
//! note and passes, unless `OXIDIFF_REQUIRE_MINILM=1` (CI) makes it fail.
//!
//! `save_pretrained` round-trips here. With the real packages:
//!
//!     OXIDIFF_TOKENIZER_SAVE_DIR=/tmp/oxidiff-tok cargo test --workspace \
//!         --features oxidiff-train/wgpu --test tokenizer
//!     /opt/refenv/bin/python tools/reference/tokenizer_golden.py --check-save /tmp/oxidiff-tok
//!
//! loads the saved `clip/` and `clip_sd2/` with transformers 5's `CLIPTokenizer` and transformers
//! 4's slow and fast ones, `clip.tokenizer.json` with `tokenizers.Tokenizer.from_file` and
//! `minilm/` with `AutoTokenizer`: every one gives the fixture's ids, and the saved vocab.json and
//! merges.txt equal the ones the script builds.

use std::path::{Path, PathBuf};

use oxidiff_models::text::{TextTokenizer, TokenizerKind, minilm_dir};
use serde_json::Value;

struct Case {
    text: String,
    /// Unpadded, untruncated, with the special tokens.
    ids: Vec<u32>,
    /// Padded and truncated to the fixture's context.
    input_ids: Vec<u32>,
    attention_mask: Vec<u32>,
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizer")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn cases(cases: &Value) -> Vec<Case> {
    cases
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: c.get("ids").map(ids).unwrap_or_default(),
            input_ids: ids(&c["input_ids"]),
            attention_mask: ids(&c["attention_mask"]),
        })
        .collect()
}

/// Every case through `tok` (at the fixture's context), with the failures listed together.
fn assert_matches(tok: &TextTokenizer, cases: &[Case], what: &str) {
    let mut failures = Vec::new();
    for case in cases {
        let got = tok.encode(&case.text).unwrap();
        if got.ids != case.input_ids || got.attention_mask != case.attention_mask {
            failures.push(format!(
                "{:?}:\n  got  {:?}\n  want {:?}",
                case.text, got.ids, case.input_ids
            ));
            continue;
        }
        if case.ids.is_empty() {
            continue;
        }
        let length = case.ids.len();
        let count = tok.count_tokens(&case.text).unwrap();
        if got.length != length || count != length {
            failures.push(format!(
                "{:?}: length {} (count_tokens {count}), want {length}",
                case.text, got.length
            ));
        }
        if got.truncated != (length > tok.context_length()) {
            failures.push(format!("{:?}: truncated = {}", case.text, got.truncated));
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} strings differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Where the saved tokenizers go for the Python check, if asked.
fn save_dir() -> Option<PathBuf> {
    std::env::var_os("OXIDIFF_TOKENIZER_SAVE_DIR").map(PathBuf::from)
}

fn error_of<T: std::fmt::Debug>(r: Result<T, oxidiff_models::ModelError>) -> String {
    r.expect_err("an error was expected").to_string()
}

#[test]
fn embedded_clip_matches_transformers() {
    let golden = fixture("clip.json");
    let tok = TextTokenizer::clip().unwrap();
    assert_eq!(tok.kind(), TokenizerKind::ClipBpe);
    assert_eq!(tok.vocab_size(), 49_408);
    assert_eq!(
        tok.vocab_size() as u64,
        golden["vocab_size"].as_u64().unwrap()
    );
    assert_eq!(tok.context_length(), 77);
    assert_eq!(
        (tok.start_id(), tok.end_id(), tok.pad_id()),
        (49_406, 49_407, 49_407)
    );
    let cases = cases(&golden["cases"]);
    assert!(cases.len() >= 50);
    // The fixture must hold a truncated prompt and the exact boundary, or the test says little.
    assert!(cases.iter().any(|c| c.ids.len() > 77));
    assert!(cases.iter().any(|c| c.ids.len() == 77));
    assert_matches(&tok, &cases, "embedded CLIP vs transformers' CLIPTokenizer");
}

#[test]
fn batches_match_single_texts() {
    let tok = TextTokenizer::clip().unwrap();
    let cases = cases(&fixture("clip.json")["cases"]);
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let batch = tok.encode_batch(&texts).unwrap();
    assert_eq!(batch.batch_size(), texts.len());
    assert_eq!(batch.ids.len(), texts.len() * 77);
    for (i, text) in texts.iter().enumerate() {
        let one = tok.encode(text).unwrap();
        assert_eq!(batch.row(i), one.ids.as_slice(), "{text:?}");
        assert_eq!(
            &batch.attention_mask[i * 77..(i + 1) * 77],
            one.attention_mask.as_slice()
        );
        assert_eq!(
            (batch.lengths[i], batch.truncated[i]),
            (one.length, one.truncated)
        );
    }
    assert!(tok.encode_batch::<&str>(&[]).unwrap().ids.is_empty());
}

#[test]
fn truncation_keeps_start_first_75_and_end() {
    let tok = TextTokenizer::clip().unwrap();
    let words = vec!["cat"; 100].join(" ");
    let got = tok.encode(&words).unwrap();
    assert!(got.truncated);
    assert_eq!(got.length, 102);
    assert_eq!(got.ids[0], 49_406);
    assert_eq!(got.ids[76], 49_407);
    assert!(got.ids[1..76].iter().all(|&id| id == got.ids[1]));
    assert!(got.attention_mask.iter().all(|&m| m == 1));
    let short = tok.with_context_length(8).unwrap().encode(&words).unwrap();
    assert_eq!(short.ids.len(), 8);
    assert_eq!((short.ids[0], short.ids[7]), (49_406, 49_407));
}

#[test]
fn decode_reads_back_the_text() {
    let tok = TextTokenizer::clip().unwrap();
    let got = tok.encode("A photo of a cat, don't you think?").unwrap();
    assert_eq!(
        tok.decode(&got.ids).unwrap(),
        "a photo of a cat , don 't you think ?"
    );
}

#[test]
fn pipeline_directory_round_trip() {
    let golden = fixture("clip.json");
    let cases = cases(&golden["cases"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = save_dir().map_or_else(|| tmp.path().join("clip"), |d| d.join("clip"));
    let written = TextTokenizer::clip()
        .unwrap()
        .save_pretrained(&dir)
        .unwrap();
    let names: Vec<_> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
            "special_tokens_map.json"
        ]
    );
    let merges = std::fs::read_to_string(dir.join("merges.txt")).unwrap();
    assert_eq!(merges.lines().count(), 1 + 48_894);
    assert!(merges.starts_with("#version: 0.2\ni n\n"));
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
    let loaded = TextTokenizer::from_pretrained(&dir).unwrap();
    assert_eq!(
        (
            loaded.context_length(),
            loaded.pad_id(),
            loaded.vocab_size()
        ),
        (77, 49_407, 49_408)
    );
    assert_matches(
        &loaded,
        &cases,
        "vocab.json + merges.txt written and read back",
    );
}

#[test]
fn tokenizer_json_round_trip() {
    let cases = cases(&fixture("clip.json")["cases"]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    let tok = TextTokenizer::clip().unwrap();
    tok.save_tokenizer_json(&path).unwrap();
    if let Some(d) = save_dir() {
        std::fs::create_dir_all(&d).unwrap();
        tok.save_tokenizer_json(d.join("clip.tokenizer.json"))
            .unwrap();
    }
    // No settings beside it: CLIP's own context and pad token.
    let loaded = TextTokenizer::from_tokenizer_json(&path).unwrap();
    assert_eq!(loaded.kind(), TokenizerKind::ClipBpe);
    assert_eq!((loaded.context_length(), loaded.pad_id()), (77, 49_407));
    assert_matches(&loaded, &cases, "tokenizer.json written and read back");
    // A directory's tokenizer.json comes first, with its settings (as transformers 5 saves).
    std::fs::write(
        tmp.path().join("tokenizer_config.json"),
        r#"{"model_max_length": 77, "pad_token": {"content": "!", "__type": "AddedToken"}}"#,
    )
    .unwrap();
    let loaded = TextTokenizer::from_pretrained(tmp.path()).unwrap();
    assert_eq!((loaded.pad_token(), loaded.pad_id()), ("!", 0));
    // transformers makes the named pad token special: "hi!" ends in "!" (0), not "!</w>" (256).
    let ids = loaded.encode("hi!").unwrap().ids;
    assert_eq!(ids[..5], [49_406, 1883, 0, 49_407, 0]);
}

#[test]
fn sd2_pads_with_exclamation_mark() {
    let golden = fixture("clip.json");
    let sd2 = &golden["sd2"];
    let cases = cases(&sd2["cases"]);
    let tok = TextTokenizer::clip().unwrap().with_pad_token("!").unwrap();
    assert_eq!(tok.pad_id() as u64, sd2["pad_id"].as_u64().unwrap());
    assert_matches(&tok, &cases, "SD 2.x padding");
    // Through a saved directory, as a pipeline's tokenizer/ gives it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = save_dir().map_or_else(|| tmp.path().join("sd2"), |d| d.join("clip_sd2"));
    tok.save_pretrained(&dir).unwrap();
    let loaded = TextTokenizer::from_pretrained(&dir).unwrap();
    assert_eq!(loaded.pad_token(), "!");
    assert_matches(&loaded, &cases, "SD 2.x directory read back");
}

/// all-MiniLM-L6-v2's directory, or `None` (with a note) where it is not installed.
fn minilm() -> Option<PathBuf> {
    let dir = minilm_dir();
    if dir.is_none() {
        assert!(
            std::env::var("OXIDIFF_REQUIRE_MINILM").as_deref() != Ok("1"),
            "OXIDIFF_REQUIRE_MINILM=1 but all-MiniLM-L6-v2 is not installed in $OXIDIFF_MINILM_DIR \
             or ~/.cache/oxidiff/all-MiniLM-L6-v2 (run tools/fetch_minilm.sh)"
        );
        eprintln!(
            "note: all-MiniLM-L6-v2 is not installed (run tools/fetch_minilm.sh); the BERT \
             tokenizer test is skipped"
        );
    }
    dir
}

#[test]
fn minilm_wordpiece_matches_transformers() {
    let Some(dir) = minilm() else { return };
    let golden = fixture("bert.json");
    let tok = TextTokenizer::from_pretrained(&dir).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::WordPiece);
    // sentence-transformers' max_seq_length, not tokenizer_config.json's 512 nor the 128 of
    // tokenizer.json's own truncation.
    assert_eq!(
        tok.context_length() as u64,
        golden["max_seq_length"].as_u64().unwrap()
    );
    assert_eq!(
        tok.vocab_size() as u64,
        golden["vocab_size"].as_u64().unwrap()
    );
    assert_eq!((tok.start_id(), tok.end_id(), tok.pad_id()), (101, 102, 0));
    let context = golden["context_length"].as_u64().unwrap() as usize;
    let cases = cases(&golden["cases"]);
    assert!(cases.iter().any(|c| c.ids.len() > context));
    let tok = tok.with_context_length(context).unwrap();
    assert_matches(&tok, &cases, "MiniLM vs transformers' BertTokenizer");

    let tmp = tempfile::tempdir().unwrap();
    let out = save_dir().map_or_else(|| tmp.path().join("minilm"), |d| d.join("minilm"));
    tok.save_pretrained(&out).unwrap();
    let loaded = TextTokenizer::from_pretrained(&out).unwrap();
    assert_eq!(
        (loaded.kind(), loaded.context_length()),
        (TokenizerKind::WordPiece, context)
    );
    assert_matches(&loaded, &cases, "MiniLM saved and read back");
}

#[test]
fn bad_inputs_name_the_file_and_the_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    let missing = root.join("no-such-dir");
    let e = error_of(TextTokenizer::from_pretrained(&missing));
    assert!(e.contains("no-such-dir") && e.contains("missing"), "{e}");

    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = error_of(TextTokenizer::from_pretrained(&empty));
    assert!(e.contains("vocab.json") && e.contains("missing"), "{e}");

    for (name, text) in [
        ("garbage", "{ not json"),
        ("no-tokenizer", r#"{"hello": 1}"#),
    ] {
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("tokenizer.json"), text).unwrap();
        let e = error_of(TextTokenizer::from_pretrained(&dir));
        assert!(
            e.contains("tokenizer.json") && e.contains("not a tokenizer"),
            "{e}"
        );
    }

    let word_level = root.join("word-level.json");
    std::fs::write(
        &word_level,
        r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"a": 0, "[UNK]": 1}, "unk_token": "[UNK]"}}"#,
    )
    .unwrap();
    let e = error_of(TextTokenizer::from_tokenizer_json(&word_level));
    assert!(
        e.contains("word-level.json") && e.contains("WordLevel"),
        "{e}"
    );

    // A small CLIP-like directory, broken one file at a time.
    let dir = root.join("clip");
    std::fs::create_dir(&dir).unwrap();
    let vocab = r#"{"a": 0, "b": 1, "ab": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}"#;
    std::fs::write(dir.join("vocab.json"), vocab).unwrap();
    let e = error_of(TextTokenizer::from_pretrained(&dir));
    assert!(e.contains("merges.txt") && e.contains("missing"), "{e}");
    std::fs::write(dir.join("merges.txt"), "#version: 0.2\na b\nab\n").unwrap();
    let e = error_of(TextTokenizer::from_pretrained(&dir));
    assert!(e.contains("merges.txt") && e.contains("line 3"), "{e}");
    std::fs::write(dir.join("merges.txt"), "#version: 0.2\na c\n").unwrap();
    let e = error_of(TextTokenizer::from_pretrained(&dir));
    assert!(e.contains("line 2") && e.contains("\"c\""), "{e}");
    std::fs::write(dir.join("merges.txt"), "#version: 0.2\na b\n").unwrap();
    let tok = TextTokenizer::from_pretrained(&dir).unwrap();
    assert_eq!((tok.vocab_size(), tok.pad_id()), (5, 4));
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"pad_token": "!"}"#).unwrap();
    let e = error_of(TextTokenizer::from_pretrained(&dir));
    assert!(e.contains("\"!\""), "{e}");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"model_max_length": "long"}"#,
    )
    .unwrap();
    let e = error_of(TextTokenizer::from_pretrained(&dir));
    assert!(
        e.contains("tokenizer_config.json") && e.contains("model_max_length"),
        "{e}"
    );
    std::fs::write(dir.join("tokenizer_config.json"), "[]").unwrap();
    let e = error_of(TextTokenizer::from_pretrained(&dir));
    assert!(
        e.contains("tokenizer_config.json") && e.contains("not a JSON object"),
        "{e}"
    );
    std::fs::write(dir.join("vocab.json"), r#"{"a": -1}"#).unwrap();
    let e = error_of(TextTokenizer::from_pretrained(&dir));
    assert!(e.contains("vocab.json") && e.contains("\"a\""), "{e}");
    std::fs::write(
        dir.join("vocab.json"),
        r#"{"<|startoftext|>": 0, "<|endoftext|>": 0}"#,
    )
    .unwrap();
    let e = error_of(TextTokenizer::from_pretrained(&dir));
    assert!(e.contains("vocab.json") && e.contains("id 0"), "{e}");

    let short = root.join("short_vocab.txt");
    std::fs::write(&short, "header\ni n\nt h\n").unwrap();
    let e = error_of(TextTokenizer::clip_from_simple_vocab(&short));
    assert!(e.contains("short_vocab.txt") && e.contains("48894"), "{e}");
    let e = error_of(TextTokenizer::clip_from_simple_vocab(
        root.join("absent.txt.gz"),
    ));
    assert!(e.contains("absent.txt.gz") && e.contains("missing"), "{e}");

    let clip = TextTokenizer::clip().unwrap();
    let e = error_of(clip.clone().with_context_length(2));
    assert!(e.contains("2 tokens"), "{e}");
    let e = error_of(clip.with_pad_token("<|no such token|>"));
    assert!(e.contains("<|no such token|>"), "{e}");
}
