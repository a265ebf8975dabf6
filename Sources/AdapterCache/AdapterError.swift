/// Everything that can go wrong in the adapter module: reading PEFT directories, artifacts, the
/// remote store and the cache. Every description names the file, key, URL or adapter involved and
/// says what the operator can do about it.
public enum AdapterError: Error, Equatable, CustomStringConvertible {
    // PEFT directory / adapter content
    case io(path: String, reason: String)
    case badConfig(path: String, key: String, reason: String)
    case unsupported(path: String, key: String, reason: String)
    case badTensor(path: String, key: String, reason: String)
    case missingPartner(path: String, key: String, partner: String)
    case noLoRAWeights(path: String)
    case shapeMismatch(key: String, expected: String, actual: String)
    case safetensors(SafetensorsError)
    case name(AdapterNameError)
    case badReference(String, reason: String)

    // Artifacts (zstd, tar, manifest)
    case badArchive(path: String, reason: String)
    case unsafeMember(path: String, member: String, reason: String)
    case tooLarge(path: String, what: String, limit: Int64)
    case zstd(path: String, reason: String)
    case badManifest(path: String, reason: String)
    case contentDigestMismatch(path: String, file: String, expected: String, actual: String)

    // Verification
    case digestMismatch(what: String, expected: String, actual: String)
    case sizeMismatch(what: String, expected: Int64, actual: Int64)
    case badSignature(what: String, reason: String)
    case signatureRequired(what: String)
    case untrustedKey(what: String, key: String)
    case baseModelMismatch(adapter: String, adapterBase: String, loadedBase: String)
    case baseModelUnknown(adapter: String)
    case downgradeRefused(name: String, offered: String, pinned: String)
    case badKey(path: String, reason: String)

    // Store and fetching
    case notFound(url: String)
    case http(url: String, status: Int)
    case network(url: String, reason: String)
    case timeout(url: String, seconds: Double)
    case truncatedDownload(url: String, expected: Int64, received: Int64)
    case badIndex(url: String, reason: String)
    case unknownVersion(name: String, version: String, available: [String])
    case noStore(name: String)
    case publish(path: String, reason: String)

    // Cache
    case notCached(String)
    case diskBudgetTooSmall(adapter: String, size: Int64, budget: Int64)
    case diskBudgetExhausted(adapter: String, size: Int64, unevictable: Int64, budget: Int64)
    case ramBudgetTooSmall(adapter: String, size: Int, budget: Int)
    case ramBudgetExhausted(adapter: String, size: Int, leased: Int, budget: Int)
    case cacheLocked(path: String)
    case inUse(String, leases: Int)
    case local(String)

    public var description: String {
        switch self {
        case .io(let p, let r): "cannot access \(p): \(r)"
        case .badConfig(let p, let k, let r): "\(p): '\(k)' is invalid: \(r)"
        case .unsupported(let p, let k, let r): "\(p): '\(k)' is not supported: \(r)"
        case .badTensor(let p, let k, let r): "\(p): tensor '\(k)' is invalid: \(r)"
        case .missingPartner(let p, let k, let q): "\(p): tensor '\(k)' has no partner '\(q)'; a LoRA module needs both lora_A and lora_B — the adapter file is incomplete"
        case .noLoRAWeights(let p): "\(p) holds no lora_A/lora_B tensors; is it a PEFT LoRA adapter?"
        case .shapeMismatch(let k, let e, let a): "adapter tensor '\(k)' does not fit the loaded model: expected \(e), found \(a); the adapter was trained for another base model"
        case .safetensors(let e): e.description
        case .name(let e): e.description
        case .badReference(let r, let why): "adapter reference '\(r.prefix(100))' is invalid: \(why); use NAME or NAME@VERSION"
        case .badArchive(let p, let r): "\(p) is not a valid adapter artifact: \(r)"
        case .unsafeMember(let p, let m, let r): "\(p): refusing archive member '\(m.prefix(200))': \(r)"
        case .tooLarge(let p, let w, let l): "\(p): \(w) exceeds the limit of \(l) bytes; refusing it (raise the limit only for a source you trust)"
        case .zstd(let p, let r): "\(p): zstd: \(r)"
        case .badManifest(let p, let r): "\(p): manifest.json is invalid: \(r)"
        case .contentDigestMismatch(let p, let f, let e, let a): "\(p): \(f) has sha256 \(a) but the manifest says \(e); the artifact is corrupt or was tampered with"
        case .digestMismatch(let w, let e, let a): "\(w): sha256 is \(a) but \(e) was expected; the file is corrupt or was tampered with and was discarded"
        case .sizeMismatch(let w, let e, let a): "\(w): size is \(a) bytes but \(e) were expected; the file was discarded"
        case .badSignature(let w, let r): "\(w): ed25519 signature does not verify (\(r)); the adapter was discarded"
        case .signatureRequired(let w): "\(w) is not signed, but the configuration requires signed adapters; sign it with 'edgectl adapter pack --sign-key'"
        case .untrustedKey(let w, let k): "\(w) is signed by public key \(k), which is not among the trusted keys in the configuration"
        case .baseModelMismatch(let a, let ab, let lb): "adapter \(a) was trained on base model sha256 \(ab) but the loaded model is \(lb); use an adapter made for this model"
        case .downgradeRefused(let n, let o, let p): "the store offers \(n)@\(o), which is older than the pinned \(n)@\(p); the downgrade was refused (unpin \(n) to roll back on purpose)"
        case .baseModelUnknown(let a): "adapter \(a) does not say which base model it was trained on, and the configuration requires it; pack it with --base-model"
        case .badKey(let p, let r): "\(p) is not a usable ed25519 key: \(r); create one with 'edgectl adapter keygen'"
        case .notFound(let u): "\(u) was not found (404); check the adapter name, version and store URL"
        case .http(let u, let s): "\(u) answered HTTP \(s)"
        case .network(let u, let r): "cannot fetch \(u): \(r)"
        case .timeout(let u, let s): "fetching \(u) timed out after \(s) s; the store is slow or unreachable"
        case .truncatedDownload(let u, let e, let r): "download of \(u) stopped at \(r) of \(e) bytes; the partial file is kept and the next attempt resumes"
        case .badIndex(let u, let r): "\(u) is not a valid adapter index: \(r)"
        case .unknownVersion(let n, let v, let a): "adapter \(n) has no version \(v) (available: \(a.isEmpty ? "none" : a.joined(separator: ", ")))"
        case .noStore(let n): "adapter \(n) is not cached and no store is configured; pass --store URL or set EDGE_ADAPTER_STORE"
        case .publish(let p, let r): "cannot publish into \(p): \(r)"
        case .notCached(let n): "adapter \(n) is not in the cache; pull it first"
        case .diskBudgetTooSmall(let a, let s, let b): "adapter \(a) needs \(s) bytes on disk but the whole disk budget is \(b) bytes; raise the adapter disk budget"
        case .diskBudgetExhausted(let a, let s, let u, let b): "adapter \(a) needs \(s) bytes on disk but \(u) of the \(b)-byte budget hold pinned or local adapters; unpin some or raise the budget"
        case .ramBudgetTooSmall(let a, let s, let b): "adapter \(a) needs \(s) bytes of RAM decoded but the whole RAM budget is \(b) bytes; raise the adapter RAM budget"
        case .ramBudgetExhausted(let a, let s, let l, let b): "adapter \(a) needs \(s) bytes of RAM but \(l) of the \(b)-byte budget hold adapters in use; retry when requests finish"
        case .cacheLocked(let p): "the adapter cache \(p) is in use by another process (the daemon?); stop it or use another --cache-dir"
        case .inUse(let n, let l): "adapter \(n) is in use by \(l) running request(s); retry when they finish"
        case .local(let n): "adapter \(n) was trained on this device and cannot be re-fetched; it is never evicted (delete it through the fine-tuning API)"
        }
    }
}
