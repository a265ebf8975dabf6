#!/usr/bin/env python3
"""Makes tiny_llama.gguf and what transformers reads from it (dev-only; tests never run this).

A one-layer Llama with every tensor type the importer accepts (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
Q4_K, Q6_K), an untied output, and a SentencePiece ("llama") tokenizer with byte tokens, a control
token and a user-defined token. K-quant blocks are random bytes with finite scales.
Outputs: tiny_llama.gguf; tiny_llama_expected.json = transformers' (gguf_file=...) float32 state dict
as sha256 of each tensor's little-endian bytes, its config, and its tokenizer.json / tokenizer_config.
Run with: pip install transformers tokenizers gguf torch accelerate; python3 make_tiny_llama.py
"""
import hashlib, json, os, tempfile
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)
H, HEADS, KV, INTER = 256, 4, 2, 64

pieces = ["▁t", "he", "▁the", "▁a", "in", "▁in", "er", "▁h", "▁he", "llo", "▁hello", "▁w", "or", "ld", "▁world", "on", "▁on", "an", "▁an", "▁and", "is", "▁is", "▁tokenizer", "▁to", "ken", "iz"]
letters = list("▁abcdefghijklmnopqrstuvwxyzHTW.,!")
tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + letters + pieces + ["<tool>"]
types = [2, 3, 3] + [6] * 256 + [1] * (len(letters) + len(pieces)) + [4]
scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-100.0 - i for i in range(len(letters))] + [-1.0 - i for i in range(len(pieces))] + [0.0]
V = len(tokens)

def kquant(rows, cols, qtype, block_bytes, d_offsets):
    raw = rng.integers(0, 256, size=(rows, cols // 256 * block_bytes), dtype=np.uint8)
    for r in range(rows):
        for b in range(cols // 256):
            for off in d_offsets:  # finite f16 scales, small
                v = np.array([rng.uniform(0.001, 0.02)], dtype=np.float16).view(np.uint8)
                raw[r, b * block_bytes + off: b * block_bytes + off + 2] = v
    return raw

w = gguf.GGUFWriter(os.path.join(here, "tiny_llama.gguf"), "llama")
w.add_block_count(1); w.add_context_length(512); w.add_embedding_length(H); w.add_feed_forward_length(INTER)
w.add_head_count(HEADS); w.add_head_count_kv(KV); w.add_rope_freq_base(10000.0); w.add_layer_norm_rms_eps(1e-5)
w.add_rope_dimension_count(H // HEADS); w.add_vocab_size(V)
w.add_tokenizer_model("llama"); w.add_tokenizer_pre("default")
w.add_token_list(tokens); w.add_token_scores(scores); w.add_token_types(types)
w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0)
w.add_add_bos_token(True); w.add_add_eos_token(False)
w.add_chat_template("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}")

def q(name, arr, qtype):
    data = gguf.quants.quantize(arr.astype(np.float32), qtype)
    w.add_tensor(name, data, raw_shape=arr.shape if qtype in (T.F16, T.F32) else None, raw_dtype=qtype)

def f(shape, scale=0.05):
    return (rng.standard_normal(shape) * scale).astype(np.float32)

q("token_embd.weight", f((V, H)), T.Q8_0)
w.add_tensor("output_norm.weight", (1 + f((H,), 0.1)).astype(np.float32))
w.add_tensor("output.weight", kquant(V, H, T.Q6_K, 210, [208]), raw_dtype=T.Q6_K)
w.add_tensor("blk.0.attn_norm.weight", (1 + f((H,), 0.1)).astype(np.float32))
w.add_tensor("blk.0.ffn_norm.weight", (1 + f((H,), 0.1)).astype(np.float32))
w.add_tensor("blk.0.attn_q.weight", kquant(H, H, T.Q4_K, 144, [0, 2]), raw_dtype=T.Q4_K)
w.add_tensor("blk.0.attn_k.weight", kquant(KV * H // HEADS, H, T.Q6_K, 210, [208]), raw_dtype=T.Q6_K)
q("blk.0.attn_v.weight", f((KV * H // HEADS, H)), T.Q8_0)
q("blk.0.attn_output.weight", f((H, H)), T.Q4_0)
q("blk.0.ffn_gate.weight", f((INTER, H)), T.Q4_1)
q("blk.0.ffn_up.weight", f((INTER, H)), T.F16)
q("blk.0.ffn_down.weight", f((H, INTER)), T.BF16)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
m = AutoModelForCausalLM.from_pretrained(here, gguf_file="tiny_llama.gguf", dtype=torch.float32)
sd = {k: hashlib.sha256(v.detach().float().contiguous().numpy().astype("<f4").tobytes()).hexdigest() for k, v in m.state_dict().items()}
shapes = {k: list(v.shape) for k, v in m.state_dict().items()}
tok = AutoTokenizer.from_pretrained(here, gguf_file="tiny_llama.gguf")
with tempfile.TemporaryDirectory() as d:
    tok.save_pretrained(d)
    tj = json.load(open(os.path.join(d, "tokenizer.json")))
    tc = json.load(open(os.path.join(d, "tokenizer_config.json")))
cfg = {k: v for k, v in m.config.to_dict().items() if k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_parameters", "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id")}
json.dump({"made_by": "transformers " + __import__("transformers").__version__ + ", gguf " + gguf.__version__ if hasattr(gguf, "__version__") else "transformers", "state_dict_sha256_f32le": sd, "shapes": shapes, "config": cfg,
           "tokenizer_json": tj, "tokenizer_config": tc, "encode": {t: tok.encode(t, add_special_tokens=True) for t in ["hello world", " the tokenizer is on", "Hello\u00e9<tool>"]}},
          open(os.path.join(here, "tiny_llama_expected.json"), "w"), indent=1, ensure_ascii=False)
print("ok", V, sorted(shapes.items()))
