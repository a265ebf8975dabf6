import Foundation

/// llama.cpp's figures for `bench generate`, through the `llama_cpp` Python package: the GGUF is
/// re-quantised to Q4_0 and IQ4_NL (`llama_model_quantize`) in a temp directory and each is timed
/// like our engine (prefill of N tokens, then M single-token decode steps, best of 3).
enum LlamaCppBench {
    struct Failure: Error { let message: String }

    static let script = #"""
import ctypes, json, os, sys, tempfile, time
try:
    import llama_cpp
except Exception as e:
    print(json.dumps({"error": "python package llama_cpp is not importable: %s" % e})); sys.exit(0)
import numpy as np
def last_argmax(llm):
    # The last row's logits straight from the context: llama-cpp-python >= 0.3 keeps `scores` only
    # with logits_all, which would make llama.cpp compute the head for every prompt row.
    row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return int(np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).argmax())
gguf, threads, n_prompt, n_decode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = {}
tmp = tempfile.mkdtemp(prefix="edge-bench-")
for name, ftype in (("Q4_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0), ("IQ4_NL", llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_NL)):
    path = os.path.join(tmp, name + ".gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(gguf.encode(), path.encode(), ctypes.byref(params))
    if rc != 0:
        out[name] = {"error": "llama_model_quantize returned %d" % rc}; continue
    llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=n_prompt + n_decode + 8, n_batch=n_prompt, verbose=False)
    text = "The quick brown fox jumps over the lazy dog while the committee reviews the annual report on regional water supply. " * 20
    toks = llm.tokenize(text.encode(), add_bos=False)[:n_prompt]
    best_p, best_d, best_ttft = 0.0, 0.0, 1e9
    for _ in range(3):
        llm.reset()
        t0 = time.perf_counter(); llm.eval(toks); tok = last_argmax(llm); t1 = time.perf_counter()
        for _ in range(n_decode):
            llm.eval([tok]); tok = last_argmax(llm)
        t2 = time.perf_counter()
        best_p = max(best_p, n_prompt / (t1 - t0)); best_d = max(best_d, n_decode / (t2 - t1)); best_ttft = min(best_ttft, (t1 - t0) * 1000)
    out[name] = {"prefill_tokens_per_s": best_p, "decode_tokens_per_s": best_d, "ttft_ms": best_ttft, "threads": threads, "file_bytes": os.path.getsize(path)}
    del llm
    os.remove(path)
print(json.dumps(out))
"""#

    static func run(gguf: String, threads: Int, promptTokens: Int, decodeTokens: Int) -> Result<[String: [String: Any]], Failure> {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, gguf, String(threads), String(promptTokens), String(decodeTokens)]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return .failure(Failure(message: "cannot start python3: \(error)")) }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            return .failure(Failure(message: "the llama_cpp benchmark printed no JSON (exit \(p.terminationStatus))"))
        }
        if let e = obj["error"] as? String { return .failure(Failure(message: e)) }
        return .success(obj.compactMapValues { $0 as? [String: Any] })
    }
}
