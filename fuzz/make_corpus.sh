#!/usr/bin/env bash
# Regenerates the seed corpora fuzz/corpus/<target>/ (small, checked in): a few valid inputs of each format
# plus a few near-misses. State snapshots come from the fuzz_state binary itself (its tiny model):
#   fuzz/make_corpus.sh [build-fuzz]
set -euo pipefail
build=$(realpath -m "${1:-$(dirname "$0")/../build-fuzz}")
cd "$(dirname "$0")"
python3 - <<'PY'
import json, os, struct

def put(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# safetensors: header length (u64 LE), JSON header, data section.
def st(tensors, meta=None, pad=True):
    header, data, off = {}, b"", 0
    if meta: header["__metadata__"] = meta
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - (len(h) + 8) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data
f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
put("fuzz_safetensors", "two_f32", st({"a": ("F32", [2], f32(1, 2)), "b": ("F32", [1, 2], f32(3, 4))}))
put("fuzz_safetensors", "mixed", st({"w": ("BF16", [2], b"\x80\x3f\x00\x40"), "d": ("F64", [1], struct.pack("<d", 0.5)),
                                     "i": ("I32", [1], struct.pack("<i", 7)), "u": ("U8", [3], b"abc"),
                                     "l": ("I64", [], struct.pack("<q", -1))}, {"format": "pt"}))
put("fuzz_safetensors", "empty_tensor", st({"e": ("F32", [0, 3], b""), "a": ("F32", [1], f32(1))}))
put("fuzz_safetensors", "overlap", st({"a": ("F32", [2], f32(1, 2))}) .replace(b"[0,8]", b"[4,12]") + b"\0" * 4)
put("fuzz_safetensors", "no_tensors", st({}, {"k": "v"}))

# config.json
base = {"arch": "transxssm", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16, "ssm_state_size": 16,
        "attn_layer_period": 2, "attn_layer_offset": 1, "max_position_embeddings": 64}
put("fuzz_config", "tiny", json.dumps(base))
put("fuzz_config", "size_preset", json.dumps({"arch": "jamba", "size": "tiny"}))
put("fuzz_config", "mamba2", json.dumps(dict(base, arch="mamba2", mamba_expand=2, mamba_head_dim=16,
                                             mamba_d_state=16, mamba_n_groups=1)))
put("fuzz_config", "layer_types", json.dumps(dict(base, layer_types=["ssd", "attention"], rope_theta=10000.0,
                                                  rms_norm_eps=1e-5, tie_word_embeddings=False,
                                                  ssm_position="conv", attention_position="none")))
put("fuzz_config", "float_field", json.dumps(dict(base, hidden_size=32.5)))

# tokenizer.json: byte-level BPE with the 256 byte tokens (GPT-2's byte-to-unicode map) and a few merges.
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
byte_char = {b: chr(c) for b, c in zip(bs, cs)}
vocab = {byte_char[b]: i for i, b in enumerate(range(256))}
merges = []
for a, b in [("t", "h"), ("th", "e"), ("Ġ", "the"), ("e", "r"), ("i", "n")]:
    merges.append(f"{a} {b}"); vocab.setdefault(a + b, len(vocab))
def tok(**extra):
    j = {"version": "1.0", "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>", "special": True,
                                              "normalized": False, "lstrip": False, "rstrip": False,
                                              "single_word": False}],
         "normalizer": None,
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
         "decoder": {"type": "ByteLevel"},
         "model": {"type": "BPE", "vocab": vocab, "merges": merges}}
    j.update(extra)
    return json.dumps(j, ensure_ascii=False)
put("fuzz_tokenizer", "bytelevel", tok())
put("fuzz_tokenizer", "nfc_split", tok(normalizer={"type": "NFC"},
    pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}))
put("fuzz_tokenizer", "pair_merges", tok(model={"type": "BPE", "vocab": vocab, "merges": [m.split(" ") for m in merges],
                                                "ignore_merges": True, "fuse_unk": False}))

# manifest.json of prepared tokens.
man = {"format": "transxssm-tokens", "version": 1, "dtype": "uint16",
       "tokenizer": {"hash": "abc", "vocab_size": 300, "eos_id": 0, "path": "t.json"},
       "splits": {"train": {"tokens": 10, "shards": [{"file": "train_000000.bin", "tokens": 10}]},
                  "val": {"tokens": 0, "shards": []}},
       "documents": 1, "input_bytes": 20, "input_files": 1, "val_fraction": 0.0, "inputs": ["a.txt"]}
put("fuzz_manifest", "valid", json.dumps(man, indent=2))
put("fuzz_manifest", "uint32", json.dumps(dict(man, dtype="uint32")))
put("fuzz_manifest", "bad_sum", json.dumps(dict(man, splits={"train": {"tokens": 11, "shards": [{"file": "x", "tokens": 10}]},
                                                            "val": {"tokens": 0, "shards": []}})))

# token ids
for name, text in [("flat", "[1, 2, 3]"), ("rows", "[[1, 2], [3, 4]]"), ("nested", "[1, [2, [3]]]"),
                   ("big", "[2147483647, 2147483648, -1]"), ("float", "[1.5, 1e300]"), ("string", "[\"a\\\"[\"]")]:
    put("fuzz_ids", name, text)
PY
if [ -x "$build/fuzz/fuzz_state" ]; then
  mkdir -p corpus/fuzz_state
  TRANSXSSM_FUZZ_WRITE_SEED=corpus/fuzz_state OMP_NUM_THREADS=1 "$build/fuzz/fuzz_state"
else
  echo "make_corpus: $build/fuzz/fuzz_state not built; state seeds not regenerated" >&2
fi
