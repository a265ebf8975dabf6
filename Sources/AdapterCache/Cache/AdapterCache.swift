import Crypto
import Foundation
import Logging

/// The two-tier adapter cache: compressed artifacts on disk (content-addressed by sha256) and
/// decoded `LoRAAdapter`s in RAM, each an LRU bounded in bytes, filled on demand from the store.
///
/// Concurrency contract:
/// - All bookkeeping (records, both LRUs, leases, pins, in-flight loads, metrics) is actor state;
///   every public method is a single actor call, and the state is consistent between awaits.
/// - Heavy work — downloading, hashing, decompressing, decoding — runs in detached tasks off the
///   actor; only its result is committed on the actor. A RAM hit never waits for another
///   adapter's load.
/// - Single flight: concurrent misses for one artifact (same sha256) share one in-flight task, so N
///   requests cause one download and one decode. (Resolving `NAME` to a version reads the store's
///   index.json per request; that small file is not shared.)
/// - Leases: `acquire` returns an `AdapterLease`; until `release` the adapter is evicted from neither
///   tier. Pins (`pin`) and local adapters (`importArtifact(local: true)`) are never evicted from
///   disk; RAM eviction only respects leases.
/// - Nothing unverified is ever visible: a download lives in `tmp/` until its size, sha256,
///   content digests, signature policy and base-model digest have passed and it decoded; only then
///   is it fsynced and renamed into `blobs/`. Start-up deletes `tmp/` and every blob whose sha256
///   differs from its name.
/// - The directory is locked (flock on `.lock`) for the actor's lifetime: one process at a time.
public actor AdapterCache {
    public nonisolated let configuration: AdapterCacheConfiguration
    private let logger: Logger
    private let lock: FileLock
    private let trusted: [Curve25519.Signing.PublicKey]
    private var baseModelDigest: String?
    private let blobsDir: String
    private let tmpDir: String
    private let indexPath: String

    private var records: [String: CacheRecord]  // sha256 → record
    private var diskLRU: LRUTracker<String>
    private var ram: [String: LoRAAdapter] = [:]
    private var ramLRU = LRUTracker<String>()
    private var leaseCounts: [String: Int] = [:]
    private var leaseOwners: [UInt64: String] = [:]
    private var nextLeaseID: UInt64 = 1
    private var inflight: [String: Task<LoRAAdapter, Error>] = [:]
    private var counters: AdapterCacheMetrics
    private var lastPersist = Date.distantPast
    /// NAME → the version a bare `NAME` resolves to, overriding "newest" (set by a rollback).
    private var currentVersions: [String: String] = [:]

    /// Opens (creating if needed) the cache directory, locks it, drops partial downloads and corrupt
    /// blobs, and re-indexes what remains. Hashes every blob once, so start-up time grows with the
    /// cache size (≈ 1 s per GB).
    public init(configuration: AdapterCacheConfiguration, logger: Logger = Logger(label: "edge-runtime.adapters")) throws(AdapterError) {
        self.configuration = configuration
        self.logger = logger
        trusted = try configuration.parsedTrustedKeys()
        if let b = configuration.baseModelDigest, !FileDigest.isHexDigest(b) {
            throw .badConfig(path: "adapter cache", key: "base_model_digest", reason: "must be 64 lower-case hex digits")
        }
        baseModelDigest = configuration.baseModelDigest
        let dir = configuration.directory
        // Locals, not the stored properties: the logger's autoclosures must not capture self here.
        let blobsDir = (dir as NSString).appendingPathComponent("blobs")
        let tmpDir = (dir as NSString).appendingPathComponent("tmp")
        let indexPath = (dir as NSString).appendingPathComponent("index.json")
        self.blobsDir = blobsDir
        self.tmpDir = tmpDir
        self.indexPath = indexPath
        try AtomicFile.makeDirectory(blobsDir)
        try AtomicFile.makeDirectory(tmpDir)
        lock = try FileLock(path: (dir as NSString).appendingPathComponent(".lock"), blocking: false)

        var dropped = 0
        for f in (try? FileManager.default.contentsOfDirectory(atPath: tmpDir)) ?? [] {
            unlink((tmpDir as NSString).appendingPathComponent(f))
            dropped += 1
        }
        var known: [String: CacheRecord] = [:]
        var current: [String: String] = [:]
        if let data = FileManager.default.contents(atPath: indexPath) {
            if let file = try? JSONDecoder().decode(CacheIndexFile.self, from: data) {
                for r in file.entries { known[r.sha256] = r }
                current = file.current ?? [:]
            } else {
                logger.warning("adapter cache index is unreadable; re-indexing from the blobs", metadata: ["path": "\(indexPath)"])
            }
        }
        var recs: [String: CacheRecord] = [:]
        for f in (try? FileManager.default.contentsOfDirectory(atPath: blobsDir)) ?? [] {
            let path = (blobsDir as NSString).appendingPathComponent(f)
            let sha = f.hasSuffix(".tar.zst") ? String(f.dropLast(8)) : ""
            guard FileDigest.isHexDigest(sha), let actual = try? FileDigest.sha256(file: path), actual == sha else {
                logger.warning("dropping corrupt or stray file from the adapter cache", metadata: ["path": "\(path)"])
                unlink(path)
                dropped += 1
                continue
            }
            let size = fileSize(path)
            if var r = known[sha] {
                r.size = size
                recs[sha] = r
            } else if let a = try? AdapterArtifact.open(path: path, limits: configuration.limits), let m = a.manifest {
                // The index was lost (or this blob arrived just before a crash): the manifest names it.
                recs[sha] = CacheRecord(sha256: sha, name: m.name, version: m.version, size: size, baseModel: m.baseModel, created: m.created,
                                        signature: m.signature, rank: m.rank, targets: m.targets, local: false, pinned: false,
                                        lastUsed: Date().timeIntervalSince1970, order: 0)
            } else {
                logger.warning("dropping an unidentifiable blob (not in the index, no manifest)", metadata: ["path": "\(path)"])
                unlink(path)
                dropped += 1
            }
        }
        var lru = LRUTracker<String>()
        for r in recs.values.sorted(by: { $0.order < $1.order }) { lru.restore(r.sha256, bytes: r.size, order: r.order) }
        var m = AdapterCacheMetrics()
        m.droppedAtStartup = dropped
        try Self.writeIndex(records: recs, lru: lru, current: current, to: indexPath)
        records = recs
        currentVersions = current
        diskLRU = lru
        counters = m
    }

    // MARK: - Public API

    /// Hands a decoded adapter to a request: from RAM, else from disk, else fetched from the store,
    /// verified and cached. `NAME` means the newest cached version, or the store's latest when none
    /// is cached. The lease keeps the adapter resident until `release`.
    public func acquire(_ ref: AdapterReference, progress: AdapterFetcher.Progress? = nil) async throws(AdapterError) -> AdapterLease {
        if let sha = resolveCached(ref) {
            if let adapter = ram[sha] {
                counters.ramHits += 1
                return makeLease(sha: sha, adapter: adapter)
            }
            counters.ramMisses += 1
            counters.diskHits += 1
            let adapter = try await load(sha: sha, fetch: nil, progress: nil)
            return try admitAndLease(sha: sha, adapter: adapter)
        }
        counters.ramMisses += 1
        counters.diskMisses += 1
        let (name, version, entry) = try await resolveRemote(ref)
        let adapter = try await load(sha: entry.sha256, fetch: (name, version, entry), progress: progress, admit: true)
        return try admitAndLease(sha: entry.sha256, adapter: adapter)
    }

    /// Ends a lease. Idempotent.
    public func release(_ lease: AdapterLease) {
        guard let sha = leaseOwners.removeValue(forKey: lease.id) else { return }
        let n = (leaseCounts[sha] ?? 1) - 1
        leaseCounts[sha] = n > 0 ? n : nil
        counters.activeLeases = leaseOwners.count
    }

    /// Makes sure the adapter is on disk, verified: checks the store for the newest version when no
    /// version is given (falls back to the cache without a store). Does not load it into RAM.
    @discardableResult
    public func pull(_ ref: AdapterReference, progress: AdapterFetcher.Progress? = nil) async throws(AdapterError) -> CachedAdapterStatus {
        if ref.version != nil || configuration.store == nil, let sha = resolveCached(ref) {
            touchDisk(sha)
            return status(sha)
        }
        let (name, version, entry) = try await resolveRemote(ref)
        if records[entry.sha256] == nil || inflight[entry.sha256] != nil {
            _ = try await load(sha: entry.sha256, fetch: (name, version, entry), progress: progress)
        }
        touchDisk(entry.sha256)
        persistIfStale(force: true)
        return status(entry.sha256)
    }

    /// Adds an artifact file to the disk tier — `local: true` for adapters trained on this device,
    /// which are never evicted. Verified like a download; the name and version come from its
    /// manifest (or `name`/`version` for a hand-packed tar).
    @discardableResult
    public func importArtifact(path: String, local: Bool, name: AdapterName? = nil, version: AdapterName? = nil) async throws(AdapterError) -> CachedAdapterStatus {
        let tmp = (tmpDir as NSString).appendingPathComponent("import-\(UUID().uuidString)")
        do { try FileManager.default.copyItem(atPath: path, toPath: tmp) } catch { throw .io(path: path, reason: error.localizedDescription) }
        let size = fileSize(tmp)
        let sha: String
        do { sha = try FileDigest.sha256(file: tmp) } catch { unlink(tmp); throw error }
        let artifact: AdapterArtifact
        do { artifact = try AdapterArtifact.open(path: tmp, limits: configuration.limits) } catch { unlink(tmp); throw error }
        guard let n = artifact.manifest?.name ?? name?.value, let v = artifact.manifest?.version ?? version?.value else {
            unlink(tmp)
            throw .badManifest(path: path, reason: "no manifest; give the adapter a name and version")
        }
        let entry = StoreIndex.Version(version: v, sha256: sha, size: size, baseModel: artifact.manifest?.baseModel, created: artifact.manifest?.created ?? ISO8601.string(Date()),
                                       signature: nil, configSHA256: nil, contentSHA256: nil, rank: nil, alpha: nil, targets: nil)
        let outcome: FetchOutcome
        do {
            outcome = try Self.verifyAndDecode(path: tmp, name: n, version: v, entry: entry, policy: policy, limits: configuration.limits)
        } catch {
            unlink(tmp)
            counters.verifyFailures += 1
            throw error
        }
        if records[sha] == nil {
            try commit(tempPath: tmp, outcome: outcome, local: local)
        } else {
            unlink(tmp)
            if local { records[sha]!.local = true }
        }
        persistIfStale(force: true)
        return status(sha)
    }

    /// Pins the resolved cached version (never evicted from disk).
    @discardableResult
    public func pin(_ ref: AdapterReference) throws(AdapterError) -> CachedAdapterStatus {
        guard let sha = resolveCached(ref) else { throw .notCached(ref.description) }
        records[sha]!.pinned = true
        persistIfStale(force: true)
        return status(sha)
    }

    @discardableResult
    public func unpin(_ ref: AdapterReference) throws(AdapterError) -> CachedAdapterStatus {
        guard let sha = resolveCached(ref) else { throw .notCached(ref.description) }
        records[sha]!.pinned = false
        persistIfStale(force: true)
        return status(sha)
    }

    /// Removes the adapter (every cached version for `NAME`, one for `NAME@VERSION`) from both tiers.
    /// Refused while a request holds it; local adapters only with `force`. Pins are removed with it.
    @discardableResult
    public func evict(_ ref: AdapterReference, force: Bool = false) throws(AdapterError) -> [CachedAdapterStatus] {
        let shas = records.values.filter { $0.name == ref.name.value && (ref.version == nil || $0.version == ref.version!.value) }.map(\.sha256)
        guard !shas.isEmpty else { throw .notCached(ref.description) }
        for sha in shas {
            if let n = leaseCounts[sha], n > 0 { throw .inUse("\(records[sha]!.name)@\(records[sha]!.version)", leases: n) }
            if records[sha]!.local && !force { throw .local("\(records[sha]!.name)@\(records[sha]!.version)") }
        }
        var out: [CachedAdapterStatus] = []
        for sha in shas {
            out.append(status(sha))
            removeFromDisk(sha)
        }
        persistIfStale(force: true)
        return out
    }

    /// Every cached version, most recently used first.
    public func list() -> [CachedAdapterStatus] {
        records.values.sorted { ($0.lastUsed, $0.order) > ($1.lastUsed, $1.order) }.map { status($0.sha256) }
    }

    /// The cached version `ref` resolves to, if any.
    public func info(_ ref: AdapterReference) -> CachedAdapterStatus? {
        resolveCached(ref).map(status)
    }

    public func metrics() -> AdapterCacheMetrics {
        var m = counters
        m.ramBytes = ramLRU.totalBytes
        m.diskBytes = diskLRU.totalBytes
        m.ramEntries = ram.count
        m.diskEntries = records.count
        m.activeLeases = leaseOwners.count
        return m
    }

    /// Sets the loaded base model's digest (when the engine loads or swaps its model). Adapters for
    /// another base are refused from then on; RAM copies of such adapters are dropped unless leased.
    public func setBaseModelDigest(_ digest: String?) throws(AdapterError) {
        if let d = digest, !FileDigest.isHexDigest(d) { throw .badConfig(path: "adapter cache", key: "base_model_digest", reason: "must be 64 lower-case hex digits") }
        baseModelDigest = digest
        for sha in Array(ram.keys) where (leaseCounts[sha] ?? 0) == 0 {
            if let b = records[sha]?.baseModel, let d = digest, b != d { ram[sha] = nil; ramLRU.remove(sha) }
        }
    }

    /// Makes `version` the one a bare `NAME` resolves to (a rollback), or with nil goes back to
    /// "newest". The version must be cached. Persisted at once, so it survives a restart; requests
    /// already holding a lease keep the adapter they resolved.
    @discardableResult
    public func setCurrentVersion(name: AdapterName, version: AdapterName?) throws(AdapterError) -> CachedAdapterStatus? {
        guard let version else {
            currentVersions[name.value] = nil
            try persistIndexNow()
            return resolveCached(AdapterReference(name: name)).map(status)
        }
        guard let sha = resolveCached(AdapterReference(name: name, version: version)) else {
            throw .notCached("\(name)@\(version)")
        }
        currentVersions[name.value] = version.value
        try persistIndexNow()
        return status(sha)
    }

    /// The version set by `setCurrentVersion` for `name`, if any (nil: bare `NAME` means newest).
    public func currentVersion(name: AdapterName) -> String? { currentVersions[name.value] }

    /// Writes the index (LRU order, pins, last use) now. Call at shutdown.
    public func flush() throws(AdapterError) { try persistIndexNow() }

    // MARK: - Resolution

    private func resolveCached(_ ref: AdapterReference) -> String? {
        if ref.version == nil, let v = currentVersions[ref.name.value],
           let r = records.values.first(where: { $0.name == ref.name.value && $0.version == v }) {
            return r.sha256
        }
        var best: CacheRecord?
        for r in records.values where r.name == ref.name.value {
            if let v = ref.version {
                if r.version == v.value { return r.sha256 }
            } else if best == nil || Self.isNewer(r, than: best!) {
                best = r
            }
        }
        return best?.sha256
    }

    /// Newer creation time wins; on a tie the version that sorts higher numerically ("10" > "9").
    static func isNewer(_ a: CacheRecord, than b: CacheRecord) -> Bool {
        isNewer(created: a.created, version: a.version, than: b.created, b.version)
    }

    static func isNewer(created a: String, version va: String, than b: String, _ vb: String) -> Bool {
        let da = ISO8601.parse(a), db = ISO8601.parse(b)
        if da != db { return da > db }
        return va.compare(vb, options: .numeric) == .orderedDescending
    }

    /// Logs a refused adapter (bad digest, signature, base model, downgrade) before it is thrown,
    /// so the operator sees tampering in the journal and not only the client.
    private func refused(_ error: AdapterError) -> AdapterError {
        logger.warning("refusing adapter: \(error)")
        return error
    }

    private func resolveRemote(_ ref: AdapterReference) async throws(AdapterError) -> (AdapterName, AdapterName, StoreIndex.Version) {
        guard let store = configuration.store else { throw .noStore(name: ref.description) }
        let fetcher = AdapterFetcher(store: store, options: configuration.fetch, limits: configuration.limits)
        let index: StoreIndex
        do { index = try await fetcher.fetchIndex(name: ref.name) } catch {
            counters.fetchFailures += 1
            throw error
        }
        guard let entry = index.resolve(ref.version?.value) else {
            throw .unknownVersion(name: ref.name.value, version: ref.version?.value ?? "latest", available: index.versions.map(\.version))
        }
        let version: AdapterName
        do { version = try AdapterName(entry.version) } catch { throw .name(error) }
        // A store (or whoever controls it) must not roll a pinned adapter back to an older version.
        if records[entry.sha256] == nil, let pinned = records.values.first(where: {
            $0.name == ref.name.value && $0.pinned && $0.version != entry.version && Self.isNewer(created: $0.created, version: $0.version, than: entry.created, entry.version)
        }) {
            throw refused(.downgradeRefused(name: ref.name.value, offered: entry.version, pinned: pinned.version))
        }
        return (ref.name, version, entry)
    }

    // MARK: - Loading (single flight)

    private typealias FetchRequest = (name: AdapterName, version: AdapterName, entry: StoreIndex.Version)

    /// Decodes a blob, or downloads + verifies + decodes + commits an artifact, once per sha256 no
    /// matter how many callers ask at the same time.
    /// `admit`: a fetch started for a request puts the adapter in RAM as it commits the file, before
    /// any waiter resumes — otherwise a request that resolved the version meanwhile finds the blob on
    /// disk but not in RAM and decodes it a second time. (A decode from disk always admits; a pull
    /// alone only fills the disk tier.)
    private func load(sha: String, fetch: FetchRequest?, progress: AdapterFetcher.Progress?, admit: Bool = false) async throws(AdapterError) -> LoRAAdapter {
        if let adapter = ram[sha] { return adapter }
        if let running = inflight[sha] { return try await Self.value(of: running) }
        let task: Task<LoRAAdapter, Error>
        if let record = records[sha] {
            do { try checkBase(record.baseModel, adapter: "\(record.name)@\(record.version)") } catch { throw refused(error) }
            let path = blobPath(sha), limits = configuration.limits, precision = configuration.ramPrecision
            task = Task {
                do {
                    let (adapter, seconds) = try await Task.detached { () async throws -> (LoRAAdapter, Double) in
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        let a = try AdapterArtifact.open(path: path, limits: limits).decode().converted(to: precision)
                        return (a, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                    }.value
                    self.finishDecode(sha: sha, seconds: seconds, adapter: adapter)
                    return adapter
                } catch {
                    self.failDecode(sha: sha, error: error)
                    throw error
                }
            }
        } else {
            guard let fetch else { throw .notCached(sha) }
            let size = fetch.entry.size
            if size > configuration.diskBudgetBytes {
                throw .diskBudgetTooSmall(adapter: "\(fetch.name)@\(fetch.version)", size: size, budget: configuration.diskBudgetBytes)
            }
            do { try checkBase(fetch.entry.baseModel, adapter: "\(fetch.name)@\(fetch.version)") } catch { throw refused(error) }
            let fetcher = AdapterFetcher(store: configuration.store!, options: configuration.fetch, limits: configuration.limits)
            let partial = (tmpDir as NSString).appendingPathComponent("\(sha).partial")
            let policy = self.policy, limits = configuration.limits, precision = configuration.ramPrecision
            task = Task {
                do {
                    let outcome = try await Task.detached { () async throws -> FetchOutcome in
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        do {
                            try await fetcher.download(name: fetch.name, version: fetch.version, expectedSize: fetch.entry.size, to: partial, progress: progress)
                        } catch {
                            // A partial file is kept for a resume after a network failure; one that
                            // is wrong, or could not be written (disk full), is removed so it does not
                            // hold the space the next pull needs.
                            switch error as? AdapterError {
                            case .sizeMismatch?, .io?: unlink(partial)
                            default: break
                            }
                            throw error
                        }
                        let fetchSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                        do {
                            var o = try Self.verifyAndDecode(path: partial, name: fetch.name.value, version: fetch.version.value, entry: fetch.entry, policy: policy, limits: limits)
                            o.fetchSeconds = fetchSeconds
                            o.adapter = o.adapter.converted(to: precision)
                            return o
                        } catch {
                            unlink(partial)
                            throw VerifyFailure(error: error as? AdapterError ?? .io(path: partial, reason: "\(error)"))
                        }
                    }.value
                    try self.commitFetched(tempPath: partial, outcome: outcome)
                    if admit { try? self.admitToRAM(sha: sha, adapter: outcome.adapter) }
                    return outcome.adapter
                } catch {
                    self.failFetch(sha: sha, error: error)
                    throw error
                }
            }
        }
        inflight[sha] = task
        return try await Self.value(of: task)
    }

    private static func value(of task: Task<LoRAAdapter, Error>) async throws(AdapterError) -> LoRAAdapter {
        do { return try await task.value } catch let e as AdapterError { throw e } catch let e as VerifyFailure { throw e.error } catch {
            throw .network(url: "(adapter load)", reason: "\(error)")
        }
    }

    private struct VerifyFailure: Error { let error: AdapterError }

    private func finishDecode(sha: String, seconds: Double, adapter: LoRAAdapter) {
        inflight[sha] = nil
        counters.decode.record(seconds)
        // Admitted here, before any waiter resumes, so a request arriving in between finds it in RAM;
        // if it does not fit, each waiter's own admission reports why.
        try? admitToRAM(sha: sha, adapter: adapter)
    }

    private func failDecode(sha: String, error: Error) {
        inflight[sha] = nil
        // A blob that no longer decodes (disk corruption) is dropped; it can be fetched again.
        if let e = error as? AdapterError, case .baseModelMismatch = e { return }
        logger.error("adapter blob failed to decode; dropping it", metadata: ["adapter.sha256": "\(sha)", "error": "\(error)"])
        counters.verifyFailures += 1
        if (leaseCounts[sha] ?? 0) == 0 { removeFromDisk(sha); persistIfStale(force: true) }
    }

    private func failFetch(sha: String, error: Error) {
        inflight[sha] = nil
        if let v = error as? VerifyFailure {
            counters.verifyFailures += 1
            _ = refused(v.error)
        } else {
            counters.fetchFailures += 1
        }
    }

    // MARK: - Verification (off the actor)

    struct Policy: Sendable {
        /// Raw 32-byte public keys (the key type itself is not Sendable).
        var trusted: [Data]
        var requireSignature: Bool
        var baseModelDigest: String?
        var requireBaseModelDigest: Bool
    }

    private var policy: Policy {
        Policy(trusted: trusted.map(\.rawRepresentation), requireSignature: configuration.requireSignature, baseModelDigest: baseModelDigest, requireBaseModelDigest: configuration.requireBaseModelDigest)
    }

    struct FetchOutcome: Sendable {
        var adapter: LoRAAdapter
        var record: CacheRecord
        var fetchSeconds: Double = 0
        var verifySeconds: Double
        var decodeSeconds: Double
    }

    /// Everything a downloaded file must pass before it may enter the cache: size, sha256, archive
    /// structure, manifest identity, content digests, signature policy, base model, and a full decode.
    static func verifyAndDecode(path: String, name: String, version: String, entry: StoreIndex.Version, policy: Policy, limits: ArtifactLimits) throws(AdapterError) -> FetchOutcome {
        let what = "\(name)@\(version)"
        let t0 = DispatchTime.now().uptimeNanoseconds
        var st = stat()
        guard stat(path, &st) == 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        guard Int64(st.st_size) == entry.size else { throw .sizeMismatch(what: what, expected: entry.size, actual: Int64(st.st_size)) }
        let sha = try FileDigest.sha256(file: path)
        guard sha == entry.sha256 else { throw .digestMismatch(what: what, expected: entry.sha256, actual: sha) }
        let artifact = try AdapterArtifact.open(path: path, limits: limits)
        let digests = try artifact.verifyContent()
        let m = artifact.manifest
        if let m, m.name != name || m.version != version {
            throw .badManifest(path: what, reason: "the artifact calls itself \(m.name)@\(m.version)")
        }
        if let c = entry.contentSHA256, c != digests.content { throw .contentDigestMismatch(path: what, file: AdapterArtifact.weightsMember, expected: c, actual: digests.content) }
        if let c = entry.configSHA256, c != digests.config { throw .contentDigestMismatch(path: what, file: AdapterArtifact.configMember, expected: c, actual: digests.config) }
        if let a = m?.baseModel, let b = entry.baseModel, a != b {
            throw .badManifest(path: what, reason: "the manifest's base_model \(a) differs from the store index's \(b)")
        }
        let base = m?.baseModel ?? entry.baseModel
        if let loaded = policy.baseModelDigest {
            if let base, base != loaded { throw .baseModelMismatch(adapter: what, adapterBase: base, loadedBase: loaded) }
            if base == nil && policy.requireBaseModelDigest { throw .baseModelUnknown(adapter: what) }
        }
        let statement = SignedStatement(name: name, version: version, baseModel: base, configSHA256: digests.config, contentSHA256: digests.content)
        let signatures = [entry.signature, m?.signature].compactMap { $0 }
        if signatures.isEmpty && policy.requireSignature { throw .signatureRequired(what: what) }
        let keys = policy.trusted.compactMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) }
        for s in signatures { try s.verify(statement, trusted: keys, what: what) }
        let t1 = DispatchTime.now().uptimeNanoseconds
        let adapter = try artifact.decode()
        let t2 = DispatchTime.now().uptimeNanoseconds
        let record = CacheRecord(sha256: sha, name: name, version: version, size: entry.size, baseModel: base, created: m?.created ?? entry.created,
                                 signature: signatures.first, rank: m?.rank ?? adapter.maxRank, targets: m?.targets ?? adapter.projections.map(\.rawValue),
                                 local: false, pinned: false, lastUsed: Date().timeIntervalSince1970, order: 0)
        return FetchOutcome(adapter: adapter, record: record, verifySeconds: Double(t1 - t0) / 1e9, decodeSeconds: Double(t2 - t1) / 1e9)
    }

    private func checkBase(_ base: String?, adapter: String) throws(AdapterError) {
        guard let loaded = baseModelDigest else { return }
        if let base, base != loaded { throw .baseModelMismatch(adapter: adapter, adapterBase: base, loadedBase: loaded) }
        if base == nil && configuration.requireBaseModelDigest { throw .baseModelUnknown(adapter: adapter) }
    }

    // MARK: - Committing

    private func commitFetched(tempPath: String, outcome: FetchOutcome) throws(AdapterError) {
        inflight[outcome.record.sha256] = nil
        counters.fetch.record(outcome.fetchSeconds)
        counters.verify.record(outcome.verifySeconds)
        counters.decode.record(outcome.decodeSeconds)
        counters.fetchedBytes += outcome.record.size
        try commit(tempPath: tempPath, outcome: outcome, local: false)
    }

    /// Makes room under the disk budget, then fsyncs and renames the verified file into `blobs/`.
    private func commit(tempPath: String, outcome: FetchOutcome, local: Bool) throws(AdapterError) {
        var record = outcome.record
        let sha = record.sha256
        let what = "\(record.name)@\(record.version)"
        if record.size > configuration.diskBudgetBytes {
            unlink(tempPath)
            throw .diskBudgetTooSmall(adapter: what, size: record.size, budget: configuration.diskBudgetBytes)
        }
        guard let victims = diskLRU.victims(toFit: record.size, budget: configuration.diskBudgetBytes, isProtected: isDiskProtected) else {
            unlink(tempPath)
            let unevictable = records.values.filter { isDiskProtected($0.sha256) }.reduce(Int64(0)) { $0 + $1.size }
            throw .diskBudgetExhausted(adapter: what, size: record.size, unevictable: unevictable, budget: configuration.diskBudgetBytes)
        }
        for v in victims {
            logger.info("evicting adapter from disk", metadata: ["adapter.name": "\(records[v]?.name ?? v)", "adapter.version": "\(records[v]?.version ?? "")"])
            removeFromDisk(v)
            counters.diskEvictions += 1
        }
        do { try AtomicFile.fsyncFile(tempPath) } catch { unlink(tempPath); throw error }
        record.local = local
        record.lastUsed = Date().timeIntervalSince1970
        records[sha] = record
        diskLRU.insert(sha, bytes: record.size)
        // The index names the blob before the blob exists: start-up drops index entries without a
        // blob, but could only guess the flags (local, pinned) of a blob missing from the index, and
        // a trained adapter recovered as "not local" could later be evicted and lost.
        do { try persistIndexNow() } catch {
            records[sha] = nil
            diskLRU.remove(sha)
            unlink(tempPath)
            throw error
        }
        do { try AtomicFile.commit(temporary: tempPath, to: blobPath(sha)) } catch {
            records[sha] = nil
            diskLRU.remove(sha)
            persistIfStale(force: true)
            throw error
        }
    }

    private func isDiskProtected(_ sha: String) -> Bool {
        guard let r = records[sha] else { return false }
        return r.pinned || r.local || (leaseCounts[sha] ?? 0) > 0 || inflight[sha] != nil
    }

    private func removeFromDisk(_ sha: String) {
        unlink(blobPath(sha))
        records[sha] = nil
        diskLRU.remove(sha)
        if ram.removeValue(forKey: sha) != nil { ramLRU.remove(sha) }
    }

    // MARK: - RAM tier and leases

    private func admitAndLease(sha: String, adapter: LoRAAdapter) throws(AdapterError) -> AdapterLease {
        try admitToRAM(sha: sha, adapter: adapter)
        return makeLease(sha: sha, adapter: adapter)
    }

    private func admitToRAM(sha: String, adapter: LoRAAdapter) throws(AdapterError) {
        if ram[sha] == nil {
            let bytes = Int64(adapter.byteCount)
            let what = records[sha].map { "\($0.name)@\($0.version)" } ?? sha
            guard bytes <= configuration.ramBudgetBytes else {
                throw .ramBudgetTooSmall(adapter: what, size: adapter.byteCount, budget: Int(configuration.ramBudgetBytes))
            }
            guard let victims = ramLRU.victims(toFit: bytes, budget: configuration.ramBudgetBytes, isProtected: { (self.leaseCounts[$0] ?? 0) > 0 }) else {
                let leased = ramLRU.entries.filter { (leaseCounts[$0.key] ?? 0) > 0 }.reduce(Int64(0)) { $0 + $1.value.bytes }
                throw .ramBudgetExhausted(adapter: what, size: adapter.byteCount, leased: Int(leased), budget: Int(configuration.ramBudgetBytes))
            }
            for v in victims {
                ram[v] = nil
                ramLRU.remove(v)
                counters.ramEvictions += 1
            }
            ram[sha] = adapter
            ramLRU.insert(sha, bytes: bytes)
        }
    }

    private func makeLease(sha: String, adapter: LoRAAdapter) -> AdapterLease {
        ramLRU.touch(sha)
        touchDisk(sha)
        let id = nextLeaseID
        nextLeaseID += 1
        leaseOwners[id] = sha
        leaseCounts[sha, default: 0] += 1
        let r = records[sha]
        return AdapterLease(adapter: adapter, name: r?.name ?? "", version: r?.version ?? "", sha256: sha, id: id)
    }

    private func touchDisk(_ sha: String) {
        diskLRU.touch(sha)
        records[sha]?.lastUsed = Date().timeIntervalSince1970
        persistIfStale(force: false)
    }

    // MARK: - Persistence

    private func blobPath(_ sha: String) -> String { (blobsDir as NSString).appendingPathComponent("\(sha).tar.zst") }

    /// Structural changes are written at once; recency alone at most every 10 s (and at `flush`).
    private func persistIfStale(force: Bool) {
        guard force || Date().timeIntervalSince(lastPersist) > 10 else { return }
        do { try persistIndexNow() } catch {
            logger.error("cannot write the adapter cache index", metadata: ["path": "\(indexPath)", "error": "\(error)"])
        }
    }

    private func persistIndexNow() throws(AdapterError) {
        try Self.writeIndex(records: records, lru: diskLRU, current: currentVersions, to: indexPath)
        lastPersist = Date()
    }

    private static func writeIndex(records: [String: CacheRecord], lru: LRUTracker<String>, current: [String: String], to indexPath: String) throws(AdapterError) {
        var entries: [CacheRecord] = []
        for r in records.values {
            var copy = r
            copy.order = lru.entries[r.sha256]?.tick ?? 0
            entries.append(copy)
        }
        entries.sort { $0.order < $1.order }
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do { data = try e.encode(CacheIndexFile(format: 1, entries: entries, current: current.isEmpty ? nil : current)) } catch { throw .io(path: indexPath, reason: "\(error)") }
        try AtomicFile.write(data, to: indexPath)
    }

    private func status(_ sha: String) -> CachedAdapterStatus {
        let r = records[sha]!
        let iso = ISO8601DateFormatter()
        return CachedAdapterStatus(
            name: r.name, version: r.version, sha256: sha, size: r.size, ramBytes: ram[sha].map { Int64($0.byteCount) },
            tier: ram[sha] != nil ? "ram" : "disk", pinned: r.pinned, local: r.local, leases: leaseCounts[sha] ?? 0,
            lastUsed: iso.string(from: Date(timeIntervalSince1970: r.lastUsed)), created: r.created, baseModel: r.baseModel,
            signed: r.signature != nil, rank: r.rank, targets: r.targets)
    }
}

/// Size of a file in bytes (0 when it cannot be read).
func fileSize(_ path: String) -> Int64 {
    var st = stat()
    return stat(path, &st) == 0 ? Int64(st.st_size) : 0
}
