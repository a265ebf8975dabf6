import Foundation

/// The PyTorch + PEFT side of `edgectl finetune bench`: the same run (model directory, batches,
/// initial LoRA, steps, threads) in a child `python3`, so its peak RSS is its own. Only when
/// `torch`, `transformers` and `peft` import; never in CI.
enum FinetuneTorchComparison {
    /// Whether python3 can import torch, transformers and peft.
    static func available() -> Bool {
        (try? run(["-c", "import torch, transformers, peft"]))?.status == 0
    }

    /// Runs the script; returns its JSON object. Progress lines go to our stderr.
    static func measure(model: String, batches: String, adapter: String?, steps: Int, threads: Int,
                        rank: Int, alpha: Float, lr: Float, seed: UInt64) throws -> [String: Any] {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgectl-torch-bench-\(getpid()).py").path
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        var args = [path, "--model", model, "--batches", batches, "--steps", String(steps), "--threads", String(threads),
                    "--rank", String(rank), "--alpha", String(alpha), "--lr", String(lr), "--seed", String(seed)]
        if let adapter { args += ["--adapter", adapter] }
        let r = try run(args, environment: ["OMP_NUM_THREADS": String(threads), "MKL_NUM_THREADS": String(threads)])
        guard r.status == 0, let line = r.out.split(separator: "\n").last,
              let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw FinetuneBenchError("the PyTorch comparison failed (exit \(r.status)); its last output: \(r.out.suffix(400))")
        }
        return obj
    }

    static func run(_ args: [String], environment: [String: String] = [:]) throws -> (status: Int32, out: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + args
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = args.first == "-c" ? Pipe() : FileHandle.standardError
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static let script = #"""
# The same training run as `edgectl finetune bench`, in PyTorch + PEFT on CPU: the model
# directory's NF4 weights dequantised to f32 (the flat rule of NF4.md §4–5), eager attention,
# LoRA on the same projections with the same initial weights, AdamW, the same batches in the same
# order, the same thread count. Prints one JSON object (s/step, tokens/s, peak RSS).
import json, resource, sys, time, argparse
import torch
from safetensors import safe_open

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batches", required=True)
p.add_argument("--adapter")
p.add_argument("--steps", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--rank", type=int, default=8)
p.add_argument("--alpha", type=float, default=16)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
torch.set_num_threads(a.threads)
from transformers import LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, get_peft_model

t_load = time.time()
cfg = json.load(open(a.model + "/config.json"))
cfg.pop("quantization_config", None)
config = LlamaConfig(**cfg)
config._attn_implementation = "eager"
state = {}
with safe_open(a.model + "/model.safetensors", "pt") as f:
    keys = set(f.keys())
    for k in keys:
        if k.endswith(".weight") and k + ".quant_state.bitsandbytes__nf4" in keys:
            qs = json.loads(bytes(f.get_tensor(k + ".quant_state.bitsandbytes__nf4").tolist()).decode())
            codes = f.get_tensor(k + ".quant_map").float()
            packed = f.get_tensor(k).flatten()
            idx = torch.stack([packed >> 4, packed & 15], 1).flatten().long()
            absmax = f.get_tensor(k + ".absmax")
            if k + ".nested_absmax" in keys:
                nested = f.get_tensor(k + ".nested_absmax").float()
                dmap = f.get_tensor(k + ".nested_quant_map").float()
                q = dmap[absmax.long()]
                nb = qs.get("nested_blocksize", 256)
                q = q * nested.repeat_interleave(nb)[: q.numel()]
                absmax = q + torch.tensor(float(qs["nested_offset"]), dtype=torch.float32)
            bs = qs["blocksize"]
            out, inn = qs["shape"]
            n = out * inn
            w = codes[idx[:n]] * absmax.float().repeat_interleave(bs)[:n]
            state[k] = w.reshape(out, inn)
        elif not any(k.endswith(s) for s in (".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".bitsandbytes__nf4")):
            state[k] = f.get_tensor(k).float()
model = LlamaForCausalLM(config)
if config.tie_word_embeddings:
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
missing = model.load_state_dict(state, strict=False)
assert not missing.unexpected_keys, missing.unexpected_keys[:3]
del state
model.tie_weights()
model.float().train()
for prm in model.parameters():
    prm.requires_grad_(False)
torch.manual_seed(a.seed)
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, target_modules=targets))
if a.adapter:
    init = {}
    with safe_open(a.adapter, "pt") as f:
        for k in f.keys():
            init[k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")] = f.get_tensor(k).float()
    missing = model.load_state_dict(init, strict=False)
    assert not missing.unexpected_keys, missing.unexpected_keys[:3]
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
batches = []
with safe_open(a.batches, "pt") as f:
    i = 0
    while f"batch{i}.input_ids" in f.keys():
        batches.append({n: f.get_tensor(f"batch{i}.{n}").long() for n in ("input_ids", "attention_mask", "labels")})
        i += 1
load = time.time() - t_load
times, losses, tokens, nonpad = [], [], 0, 0
for s in range(a.steps):
    b = batches[s % len(batches)]
    t0 = time.time()
    opt.zero_grad(set_to_none=True)
    out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
    out.loss.backward()
    opt.step()
    times.append(time.time() - t0)
    losses.append(out.loss.item())
    tokens += b["input_ids"].numel()
    nonpad += int(b["attention_mask"].sum())
    print(f"torch step {s + 1}  loss {losses[-1]:.5f}  {times[-1]:.2f} s", file=sys.stderr, flush=True)
steady = times[1:] if len(times) > 1 else times
print(json.dumps({"steps": a.steps, "threads": a.threads, "sec_per_step_mean_excl_first": sum(steady) / len(steady),
                  "first_step_sec": times[0], "tokens_per_sec_padded": tokens / sum(times), "tokens_per_sec_nonpad": nonpad / sum(times),
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "load_sec": load, "losses": losses,
                  "torch": torch.__version__}))
"""#
}

struct FinetuneBenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
