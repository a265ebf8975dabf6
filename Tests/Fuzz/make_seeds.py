#!/usr/bin/env python3
"""Writes the fuzz seed corpora (Tests/Fuzz/corpus/<target>/) from the repo's test fixtures.

Seeds are small valid inputs: the fuzzer mutates from them, so they should cover each format's
features, not be big. Re-run after a format gains a feature; the files are committed.
Needs numpy and the `gguf` package (scripts/install-deps installs the Python test packages).
"""
import io
import json
import os
import struct
import tarfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIX = ROOT / "Tests" / "Fixtures"
OUT = HERE / "corpus"


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype string, shape, raw bytes)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def lora_tensors(layers=1, hidden=8, rank=2, dtype=np.float32, dt="F32"):
    rng = np.random.default_rng(7)
    t = {}
    for layer in range(layers):
        for proj in ("q_proj", "v_proj"):
            base = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            t[f"{base}.lora_A.weight"] = (dt, [rank, hidden], rng.standard_normal((rank, hidden)).astype(dtype).tobytes())
            t[f"{base}.lora_B.weight"] = (dt, [hidden, rank], rng.standard_normal((hidden, rank)).astype(dtype).tobytes())
    return t


def bf16(a):
    return (np.asarray(a, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def peft_config(r=2, alpha=4, targets=("q_proj", "v_proj"), **extra):
    c = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
         "target_modules": list(targets), "fan_in_fan_out": False, "bias": "none", "use_rslora": False,
         "use_dora": False, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    c.update(extra)
    return json.dumps(c, indent=1)


def tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main():
    # safetensors: small LoRA files in each float dtype, metadata, an empty file, a real NF4 fixture.
    st = safetensors(lora_tensors(), {"format": "pt"})
    put("safetensors", "lora_f32.safetensors", st)
    rng = np.random.default_rng(1)
    put("safetensors", "mixed_dtypes.safetensors", safetensors({
        "a.f16": ("F16", [2, 3], rng.standard_normal((2, 3)).astype(np.float16).tobytes()),
        "b.bf16": ("BF16", [3], bf16(rng.standard_normal(3))),
        "c.u8": ("U8", [4], bytes([1, 2, 3, 4])),
        "d.i64": ("I64", [1], struct.pack("<q", 5)),
        "e.scalar": ("F32", [], struct.pack("<f", 1.5)),
        "f.empty": ("F32", [0, 4], b""),
    }))
    put("safetensors", "empty.safetensors", safetensors({}))
    put("safetensors", "nf4_odd.safetensors", (FIX / "nf4" / "odd_5x13_bs64_nodq.safetensors").read_bytes())

    # adapter_config.json: the real PEFT fixture and variants exercising patterns and options.
    put("adapter-config", "peft_fixture.json", (FIX / "adapters" / "a" / "adapter_config.json").read_bytes())
    put("adapter-config", "patterns.json", peft_config(rank_pattern={"q_proj": 4, "model.layers.0.mlp.down_proj": 8},
                                                       alpha_pattern={"v_proj": 16}, use_rslora=True,
                                                       layers_to_transform=[0, 1], layers_pattern="layers"))
    put("adapter-config", "all_linear.json", peft_config(targets=()).replace('"target_modules": []', '"target_modules": "all-linear"'))
    put("adapter-config", "regex_target.json", json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                           "target_modules": ".*\\.(q|v)_proj", "exclude_modules": ["lm_head"]}))

    # artifact: plain tars (the harness compresses them) and one real .tar.zst.
    cfg = peft_config().encode()
    put("artifact", "peft_dir.tar", tar([("./adapter_config.json", cfg), ("./adapter_model.safetensors", st)]))
    manifest = {"format": "edge-runtime-adapter/1", "name": "demo", "version": "v1",
                "files": {"adapter_config.json": {"sha256": "0" * 64, "size": len(cfg)},
                          "adapter_model.safetensors": {"sha256": "0" * 64, "size": len(st)}}}
    put("artifact", "with_manifest.tar", tar([("manifest.json", json.dumps(manifest).encode()), ("adapter_config.json", cfg),
                                              ("adapter_model.safetensors", st)]))
    # A real packed artifact (manifest, byte-plane weights, signature) when an edgectl binary is given:
    # EDGECTL=.build/debug/edgectl python3 Tests/Fuzz/make_seeds.py
    edgectl = os.environ.get("EDGECTL")
    if edgectl:
        import subprocess, tempfile
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "demo"
            d.mkdir()
            (d / "adapter_config.json").write_bytes(cfg)
            (d / "adapter_model.safetensors").write_bytes(st)
            subprocess.run([edgectl, "adapter", "keygen", str(Path(tmp) / "key")], check=True, capture_output=True)
            subprocess.run([edgectl, "adapter", "pack", str(d), "-o", str(Path(tmp) / "a.tar.zst"), "--name", "demo@v1",
                            "--base-model-digest", "ab" * 32, "--sign-key", str(Path(tmp) / "key"), "--level", "3"], check=True,
                           capture_output=True)
            packed = (Path(tmp) / "a.tar.zst").read_bytes()
            put("artifact", "packed_signed.tar.zst", packed)
            put("artifact", "packed_signed.tar", subprocess.run(["zstd", "-dc"], input=packed, check=True, capture_output=True).stdout)
    try:
        import zstandard
        put("artifact", "peft_dir.tar.zst", zstandard.ZstdCompressor(level=3).compress(tar([("adapter_config.json", cfg), ("adapter_model.safetensors", st)])))
    except ImportError:
        pass

    # store index.json
    digest = "ab" * 32
    put("store-index", "index.json", json.dumps({"name": "fuzz", "latest": "v2", "versions": [
        {"version": "v1", "sha256": digest, "size": 1234, "created": "2026-01-02T03:04:05Z", "rank": 8, "alpha": 16,
         "targets": ["q_proj", "v_proj"]},
        {"version": "v2", "sha256": digest, "size": 99, "created": "2026-02-02T03:04:05Z", "base_model": "cd" * 32,
         "config_sha256": digest, "content_sha256": digest,
         "signature": {"key_id": "k1", "algorithm": "ed25519", "value": "AAAA"}}]}, indent=1))
    put("store-index", "minimal.json", '{"name":"fuzz","versions":[]}')

    # config.toml: the shipped, fully commented default file and a short one.
    put("config-toml", "packaged.toml", (ROOT / "packaging" / "config.toml").read_bytes())
    put("config-toml", "short.toml", '[server]\nsocket_mode = "0660"\nmax_body_bytes = 65536\nrequest_timeout = 30.5\n'
                                     '[adapters]\nram_budget_bytes = 536870912\ntrusted_keys = []\n'
                                     '[auth]\ninference_uids = [0, 1000]\nmanage_gids = ["root"]\n'
                                     '[finetune]\nwindow = "22:00-06:30"\nmax_load = 1.5\n')

    # HTTP requests: METHOD TARGET, blank line, body.
    reqs = {
        "chat.txt": ("POST /v1/chat/completions", {"model": "support@v2", "messages": [{"role": "system", "content": "x"},
                     {"role": "user", "content": "Hi"}], "max_tokens": 16, "temperature": 0.7, "top_p": 0.9,
                     "stream": True, "stop": ["\n\n"], "logprobs": True, "top_logprobs": 2, "seed": 3,
                     "adapters": [{"name": "b", "weight": 0.5}]}),
        "completion.txt": ("POST /v1/completions", {"model": "base", "prompt": "Once upon", "max_tokens": 8, "echo": True,
                           "n": 1, "presence_penalty": 0.1, "frequency_penalty": 0.2, "logprobs": 3}),
        "tokenize.txt": ("POST /tokenize", {"content": "hello", "add_special": True, "with_pieces": True}),
        "pull.txt": ("POST /v1/adapters/pull", {"name": "support@v1", "stream": False}),
        "finetune.txt": ("POST /v1/fine_tuning/jobs", {"model": "base", "training_data": "{\"messages\":[]}\n", "suffix": "x",
                         "hyperparameters": {"n_epochs": 2, "learning_rate": 0.0002, "batch_size": 4, "rank": 8}}),
    }
    for name, (line, body) in reqs.items():
        put("http-request", name, line + "\n\n" + json.dumps(body))
    put("http-request", "pin.txt", "POST /v1/adapters/support%40v2/pin\n\n")
    put("http-request", "delete.txt", "DELETE /v1/adapters/support\n\n")
    put("http-request", "events.txt", "GET /v1/fine_tuning/jobs/ftjob-1/events?after=ev-2&limit=5\n\n")

    # training JSONL: the first rows of the fixture set plus the instruction format.
    rows = (FIX / "train" / "train.jsonl").read_text().splitlines()[:3]
    put("training-jsonl", "chat_rows.jsonl", "\n".join(rows) + "\n")
    put("training-jsonl", "instruction_rows.jsonl", json.dumps({"instruction": "Add", "input": "2+2", "output": "4"}) + "\n"
        + json.dumps({"instruction": "Greet", "output": "Hello"}) + "\n\n")

    # chat templates: every family the tokenizer fixtures cover, and SmolLM2's file.
    for i, fam in enumerate(json.loads((FIX / "tokenizer" / "chat_templates.json").read_text())):
        put("chat-template", f"{i:02d}_{fam['family']}.jinja", fam["template"])
    put("chat-template", "smollm2.jinja", (FIX / "tokenizer" / "smollm2" / "chat_template.jinja").read_bytes())

    # tokenizer.json: the SentencePiece-style fixture whole (30 KB), and SmolLM2's byte-level BPE
    # pruned to the tokens its first merges need (the full file is 1.5 MB).
    put("tokenizer", "sp_llama.json", (FIX / "tokenizer" / "sp_llama" / "tokenizer.json").read_bytes())
    t = json.loads((FIX / "tokenizer" / "smollm2" / "tokenizer.json").read_text())
    merges = t["model"]["merges"][:120]
    keep = set()
    for m in merges:
        a, b = m if isinstance(m, list) else m.split(" ")
        keep.update([a, b, a + b])
    vocab = t["model"]["vocab"]
    keep.update(k for k, v in vocab.items() if v < 300)
    ordered = sorted((k for k in keep if k in vocab), key=lambda k: vocab[k])
    t["model"]["vocab"] = {k: i for i, k in enumerate(ordered)}
    t["model"]["merges"] = merges
    t["added_tokens"] = [dict(a, id=len(ordered) + i) for i, a in enumerate(t["added_tokens"][:4])]
    if t.get("post_processor"):
        t["post_processor"] = None
    put("tokenizer", "smollm2_pruned.json", json.dumps(t, ensure_ascii=False))

    # config.json for safetensors import.
    put("llama-config", "smollm2_135m.json", json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000, "tie_word_embeddings": True,
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "bfloat16"}, indent=1))
    put("llama-config", "llama3_rope.json", json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 500000.0, "tie_word_embeddings": False,
        "eos_token_id": [2, 3], "head_dim": 16,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 256}}))

    # GGUF: headers only — the tiny test model's metadata with a tokenizer cut to a few tokens, and
    # one tiny tensor per common type (no weights worth the name).
    import gguf
    src = gguf.GGUFReader(str(FIX / "model" / "tiny_llama.gguf"))
    w = gguf.GGUFWriter(str(OUT / "gguf" / "tiny_header.gguf"), "llama")
    (OUT / "gguf").mkdir(parents=True, exist_ok=True)
    for field in src.fields.values():
        name = field.name
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            items = [field.parts[i] for i in field.data][:16]
            sub = field.types[1]
            if sub == gguf.GGUFValueType.STRING:
                vals = [bytes(x).decode("utf-8", "replace") for x in items]
            else:
                vals = [x.tolist()[0] for x in items]
            w.add_key_value(name, vals, vtype, sub_type=sub)
        elif vtype == gguf.GGUFValueType.STRING:
            w.add_key_value(name, bytes(field.parts[field.data[0]]).decode("utf-8", "replace"), vtype)
        else:
            w.add_key_value(name, field.parts[field.data[0]].tolist()[0], vtype)
    w.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float16))
    q8 = np.zeros(34, dtype=np.uint8)
    q8[0:2] = np.frombuffer(np.float16(0.5).tobytes(), dtype=np.uint8)
    q8[2:] = np.arange(32, dtype=np.int8).view(np.uint8)
    w.add_tensor("blk.0.attn_q.weight", q8, raw_shape=[1, 34], raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    m = gguf.GGUFWriter(str(OUT / "gguf" / "minimal.gguf"), "llama")
    m.add_uint32("general.alignment", 64)
    m.add_tensor("x", np.zeros(4, dtype=np.float32))
    m.write_header_to_file()
    m.write_kv_data_to_file()
    m.write_tensors_to_file()
    m.close()


if __name__ == "__main__":
    main()
