#!/usr/bin/env python3
"""How smollm2_gguf_rows.json and smollm2_tokenizer_reference.json were made (dev-only; tests never run this).

Rows: transformers loads the SmolLM2 Q4_1 GGUF (q/k un-permuted, f32) and a few rows / 8 columns are kept.
Tokenizer: AutoTokenizer.from_pretrained(dir, gguf_file=...).save_pretrained(/tmp/ref/smol_tok), then
model.vocab / model.merges replaced by sha256 of "token\\tid\\n" (id order) and "a b\\n" lines."""
import json, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained("/work/main/.cache/models", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", torch_dtype=torch.float32)
sd = m.state_dict()
out = {"source": "transformers %s AutoModelForCausalLM.from_pretrained(gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf), float32" % __import__('transformers').__version__, "tensors": {}}
rows = [0, 1, 2, 31, 32, 33, 63, 64, 65, 190, 191]
for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight", "model.layers.29.self_attn.q_proj.weight", "model.layers.29.self_attn.k_proj.weight", "model.layers.3.mlp.down_proj.weight", "model.embed_tokens.weight", "model.norm.weight"]:
    w = sd[name]
    if w.dim() == 1:
        out["tensors"][name] = {"shape": list(w.shape), "rows": {"0": [float(x) for x in w[:16]]}}
        continue
    out["tensors"][name] = {"shape": list(w.shape), "columns": [0, 8], "rows": {str(r): [float(x) for x in w[r, 0:8]] for r in rows if r < w.shape[0]}}
print(json.dumps(m.config.to_dict(), default=str)[:3000])
json.dump(out, open("smollm2_gguf_rows.json", "w"), indent=1)

import hashlib
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained("/work/main/.cache/models", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
t.save_pretrained("/tmp/ref/smol_tok")
b = json.load(open("/tmp/ref/smol_tok/tokenizer.json"))
vocab = b["model"].pop("vocab"); merges = b["model"].pop("merges")
v = "".join(f"{k}\t{i}\n" for k, i in sorted(vocab.items(), key=lambda x: x[1]))
m = "".join(f"{x} {y}\n" for x, y in merges)
json.dump({"made_by": "transformers 5.23.0 GGUF tokenizer conversion; model.vocab and model.merges replaced by digests",
           "tokenizer_json_without_vocab_and_merges": b, "vocab_count": len(vocab), "vocab_sha256": hashlib.sha256(v.encode()).hexdigest(),
           "merges_count": len(merges), "merges_sha256": hashlib.sha256(m.encode()).hexdigest(),
           "tokenizer_config": json.load(open("/tmp/ref/smol_tok/tokenizer_config.json")),
           "chat_template": open("/tmp/ref/smol_tok/chat_template.jinja").read()},
          open("smollm2_tokenizer_reference.json", "w"), indent=1, ensure_ascii=False)
