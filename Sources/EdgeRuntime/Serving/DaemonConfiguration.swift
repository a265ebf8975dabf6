import Foundation
import TOMLKit

/// Everything `/etc/edge-runtime/config.toml` can say. Every key has a default (the values below,
/// mirrored with comments in `packaging/config.toml`); a missing default file means all defaults,
/// a missing `--config` file is an error. Unknown keys are errors too, so a typo cannot silently
/// fall back to a default.
public struct DaemonConfiguration: Sendable, Equatable {
    public struct Server: Sendable, Equatable {
        public init() {}
        /// "" = RuntimePaths.socketPath() (system or per-user path, EDGE_SOCKET).
        public var socket = ""
        /// Group owning the socket file when the daemon binds it itself ("" = leave the process's).
        public var socketGroup = "edge-runtime"
        public var socketMode: mode_t = 0o660
        public var maxBodyBytes = 1 << 20
        /// Fine-tuning uploads carry their JSONL in the body.
        public var maxUploadBytes = 64 << 20
        /// Seconds a request may take from arrival to its last token.
        public var requestTimeout = 600.0
        /// Seconds SIGTERM waits for running requests before cancelling them.
        public var shutdownGrace = 30.0
        /// Seconds a connection may stay open without completing a request (slowloris: half a
        /// request head, then silence) or idle between keep-alive requests before it is closed.
        /// A request being answered (a long generation) is never cut by it.
        public var idleTimeout = 30.0
        /// Seconds one request's head and body may take to arrive in full, however steadily the
        /// bytes trickle in (each byte resets the idle timer, not this); then 408 and close.
        public var requestReadTimeout = 30.0
    }

    public struct Model: Sendable, Equatable {
        public init() {}
        public var path = RuntimePaths.systemState + "/models/default"
        /// 0 = one per core.
        public var threads = 0
        /// 0 = the model's own maximum.
        public var contextLength = 0
        /// How the kernel schedules the daemon's threads (see `CPUScheduling`).
        public var cpuScheduling = CPUScheduling.batch
    }

    public struct Scheduler: Sendable, Equatable {
        public init() {}
        public var maxRunning = 16
        public var maxQueue = 64
        public var kvBudgetBytes = 1 << 30
        /// Prompt tokens per sequence per step (prefill is chunked so decodes keep flowing).
        public var prefillChunk = 256
        /// KV bytes kept for prompt-prefix reuse (0 = off); counted within kv_budget_bytes.
        public var prefixCacheBytes = 256 << 20
        /// Positions a sequence's KV cache starts with beyond its prompt and grows by.
        public var kvGrowthPositions = 256
        /// "auto", "f32" or "f16" keys and values (`SequenceCache.Precision.named`): f16 fits twice the
        /// tokens in kv_budget_bytes; "auto" takes it where the attention kernel reads it no slower.
        public var kvPrecision = "auto"
    }

    public struct Adapters: Sendable, Equatable {
        public init() {}
        /// Base URL of the adapter store (https://…, http://… or file:///…); "" = no remote store.
        public var storeURL = ""
        public var cacheDir = RuntimePaths.systemCache + "/adapters"
        public var diskBudgetBytes = 4 << 30
        public var ramBudgetBytes = 1 << 30
        public var maxDownloadBytes = 512 << 20
        public var requireSignature = false
        /// Base64 ed25519 public keys whose signatures are accepted.
        public var trustedKeys: [String] = []
    }

    /// A uid/gid list entry: a number or a user/group name resolved at start.
    public struct Auth: Sendable, Equatable {
        public init() {}
        public var inferenceUIDs: [UInt32] = [0]
        public var inferenceGIDs: [UInt32] = []
        public var manageUIDs: [UInt32] = [0]
        public var manageGIDs: [UInt32] = []
        /// The daemon's own uid may always do everything (a daemon run by a user serves that user).
        public var allowDaemonUser = true
        /// Names as written in the config, for messages ("group edge-runtime").
        public var inferenceGroupNames: [String] = ["edge-runtime"]
        public var manageGroupNames: [String] = ["edge-runtime"]
    }

    public struct FineTune: Sendable, Equatable {
        public init() {}
        /// Seconds without requests before training may start.
        public var idleAfter = 300.0
        /// "HH:MM-HH:MM" local time, may wrap midnight; "" = any time.
        public var window = ""
        public var onACPower = true
        /// 1-minute load average per core above which training waits.
        public var maxLoad = 0.5
        /// Jobs (`<state_dir>/finetune/jobs`) and promoted adapters (`<state_dir>/finetune/adapters`);
        /// "" = `$EDGE_STATE_DIR`, else /var/lib/edge-runtime as root, else $XDG_STATE_HOME/edge-runtime.
        public var stateDir = ""
        /// Optimiser steps between checkpoints (one is also written whenever training pauses).
        public var checkpointEvery = 10
        /// Relative held-out loss improvement a new version needs over the current one.
        public var evalMargin = 0.02
        /// "" (loss only), "json_fields" or "exact_match": also score greedy held-out answers.
        public var evalAnswers = ""
        /// Fraction of held-out answers that must pass `evalAnswers`.
        public var minAnswerRate = 0.5
    }

    public struct Logging: Sendable, Equatable {
        public init() {}
        /// trace, debug, info, notice, warning, error, critical
        public var level = "info"
    }

    public var server = Server()
    public var model = Model()
    public var scheduler = Scheduler()
    public var adapters = Adapters()
    public var auth = Auth()
    public var finetune = FineTune()
    public var logging = Logging()
    /// Where it was read from ("" = defaults only).
    public var sourcePath = ""

    public init() {}

    /// Reads `path`. `mustExist: false` (the default path) turns a missing file into all defaults.
    public static func load(path: String, mustExist: Bool) throws(DaemonError) -> DaemonConfiguration {
        guard FileManager.default.fileExists(atPath: path) else {
            if mustExist { throw .configUnreadable(path: path, reason: "no such file (--config names a file that does not exist)") }
            var c = DaemonConfiguration()
            c.auth.resolveDefaultGroups()
            return c
        }
        let bytes: [UInt8]
        do {
            bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw .configUnreadable(path: path, reason: "\(error.localizedDescription)")
        }
        var c = try parse(bytes, path: path)
        c.sourcePath = path
        return c
    }

    /// Parses TOML text; `path` is only for messages.
    public static func parse(_ text: String, path: String) throws(DaemonError) -> DaemonConfiguration {
        try parse(Array(text.utf8), path: path)
    }

    /// Parses a file's bytes: invalid UTF-8 is a syntax error with its line and column.
    public static func parse(_ bytes: [UInt8], path: String) throws(DaemonError) -> DaemonConfiguration {
        // toml++ (inside TOMLKit) aborts on some malformed input instead of reporting it
        // (RELIABILITY.md), so it only ever gets text that passed the full TOML 1.0 syntax check.
        try TOMLSyntaxCheck.validate(bytes, path: path)
        let text = String(decoding: bytes, as: UTF8.self)
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw .configSyntax(path: path, line: e.source.begin.line, column: e.source.begin.column, reason: e.description)
        } catch {
            throw .configUnreadable(path: path, reason: "\(error)")
        }
        var c = DaemonConfiguration()
        let reader = TOMLReader(path: path)
        try reader.checkKeys(root, section: nil, known: ["server", "model", "scheduler", "adapters", "auth", "finetune", "logging"])

        if let t = try reader.section(root, "server") {
            try reader.checkKeys(t, section: "server", known: ["socket", "socket_group", "socket_mode", "max_body_bytes", "max_upload_bytes", "request_timeout", "shutdown_grace", "idle_timeout", "request_read_timeout"])
            c.server.socket = try reader.string(t, "server", "socket") ?? c.server.socket
            c.server.socketGroup = try reader.string(t, "server", "socket_group") ?? c.server.socketGroup
            if let m = try reader.string(t, "server", "socket_mode") {
                guard (3...4).contains(m.count), let v = mode_t(m, radix: 8), v <= 0o777 else {
                    throw .configKey(path: path, key: "[server] socket_mode", problem: "= \"\(m)\" is not an octal file mode like \"0660\"")
                }
                guard v & 0o600 == 0o600 else {
                    throw .configKey(path: path, key: "[server] socket_mode", problem: "= \"\(m)\" must let the owner read and write (0600 at least)")
                }
                c.server.socketMode = v
            }
            c.server.maxBodyBytes = try reader.int(t, "server", "max_body_bytes", min: 1024) ?? c.server.maxBodyBytes
            c.server.maxUploadBytes = try reader.int(t, "server", "max_upload_bytes", min: 1024) ?? c.server.maxUploadBytes
            c.server.requestTimeout = try reader.seconds(t, "server", "request_timeout") ?? c.server.requestTimeout
            c.server.shutdownGrace = try reader.seconds(t, "server", "shutdown_grace", allowZero: true) ?? c.server.shutdownGrace
            c.server.idleTimeout = try reader.seconds(t, "server", "idle_timeout") ?? c.server.idleTimeout
            c.server.requestReadTimeout = try reader.seconds(t, "server", "request_read_timeout") ?? c.server.requestReadTimeout
        }
        if let t = try reader.section(root, "model") {
            try reader.checkKeys(t, section: "model", known: ["path", "threads", "context_length", "cpu_scheduling"])
            c.model.path = try reader.string(t, "model", "path") ?? c.model.path
            c.model.threads = try reader.int(t, "model", "threads", min: 0, max: 1024) ?? c.model.threads
            c.model.contextLength = try reader.int(t, "model", "context_length", min: 0, max: 1 << 20) ?? c.model.contextLength
            if let s = try reader.string(t, "model", "cpu_scheduling") {
                guard let policy = CPUScheduling(rawValue: s) else {
                    throw .configKey(path: path, key: "[model] cpu_scheduling", problem: "= \"\(s)\" must be \"batch\" or \"other\"")
                }
                c.model.cpuScheduling = policy
            }
        }
        if let t = try reader.section(root, "scheduler") {
            try reader.checkKeys(t, section: "scheduler", known: ["max_running", "max_queue", "kv_budget_bytes", "prefill_chunk", "prefix_cache_bytes",
                                                                  "kv_growth_positions", "kv_precision"])
            c.scheduler.maxRunning = try reader.int(t, "scheduler", "max_running", min: 1, max: 4096) ?? c.scheduler.maxRunning
            c.scheduler.maxQueue = try reader.int(t, "scheduler", "max_queue", min: 0, max: 1 << 20) ?? c.scheduler.maxQueue
            c.scheduler.kvBudgetBytes = try reader.int(t, "scheduler", "kv_budget_bytes", min: 0) ?? c.scheduler.kvBudgetBytes
            c.scheduler.prefillChunk = try reader.int(t, "scheduler", "prefill_chunk", min: 1, max: 1 << 16) ?? c.scheduler.prefillChunk
            c.scheduler.prefixCacheBytes = try reader.int(t, "scheduler", "prefix_cache_bytes", min: 0) ?? c.scheduler.prefixCacheBytes
            c.scheduler.kvGrowthPositions = try reader.int(t, "scheduler", "kv_growth_positions", min: 1, max: 1 << 20) ?? c.scheduler.kvGrowthPositions
            if let p = try reader.string(t, "scheduler", "kv_precision") {
                guard SequenceCache.Precision.named(p) != nil else {
                    throw .configKey(path: path, key: "[scheduler] kv_precision", problem: "= \"\(p)\" must be \"auto\", \"f32\" or \"f16\"")
                }
                c.scheduler.kvPrecision = p
            }
        }
        if let t = try reader.section(root, "adapters") {
            try reader.checkKeys(t, section: "adapters", known: ["store_url", "cache_dir", "disk_budget_bytes", "ram_budget_bytes", "max_download_bytes", "require_signature", "trusted_keys"])
            if let u = try reader.string(t, "adapters", "store_url") {
                let lower = u.lowercased()
                guard u.isEmpty || lower.hasPrefix("https://") || lower.hasPrefix("http://") || lower.hasPrefix("file://") else {
                    throw .configKey(path: path, key: "[adapters] store_url", problem: "= \"\(u)\" must start with https://, http:// or file://")
                }
                c.adapters.storeURL = u
            }
            c.adapters.cacheDir = try reader.string(t, "adapters", "cache_dir") ?? c.adapters.cacheDir
            c.adapters.diskBudgetBytes = try reader.int(t, "adapters", "disk_budget_bytes", min: 0) ?? c.adapters.diskBudgetBytes
            c.adapters.ramBudgetBytes = try reader.int(t, "adapters", "ram_budget_bytes", min: 0) ?? c.adapters.ramBudgetBytes
            c.adapters.maxDownloadBytes = try reader.int(t, "adapters", "max_download_bytes", min: 1) ?? c.adapters.maxDownloadBytes
            c.adapters.requireSignature = try reader.bool(t, "adapters", "require_signature") ?? c.adapters.requireSignature
            if let keys = try reader.strings(t, "adapters", "trusted_keys") {
                for k in keys where Data(base64Encoded: k)?.count != 32 {
                    throw .configKey(path: path, key: "[adapters] trusted_keys", problem: "entry \"\(k.prefix(60))\" is not a base64 ed25519 public key (32 bytes)")
                }
                c.adapters.trustedKeys = keys
            }
            if c.adapters.requireSignature && c.adapters.trustedKeys.isEmpty {
                throw .configKey(path: path, key: "[adapters] require_signature", problem: "= true needs at least one key in [adapters] trusted_keys")
            }
        }
        if let t = try reader.section(root, "auth") {
            try reader.checkKeys(t, section: "auth", known: ["inference_uids", "inference_gids", "manage_uids", "manage_gids", "allow_daemon_user"])
            if let v = try reader.ids(t, "auth", "inference_uids", kind: .user) { c.auth.inferenceUIDs = v.ids }
            if let v = try reader.ids(t, "auth", "manage_uids", kind: .user) { c.auth.manageUIDs = v.ids }
            if let v = try reader.ids(t, "auth", "inference_gids", kind: .group) {
                c.auth.inferenceGIDs = v.ids
                c.auth.inferenceGroupNames = v.names
            } else {
                c.auth.inferenceGIDs = Self.defaultGroupIDs()
            }
            if let v = try reader.ids(t, "auth", "manage_gids", kind: .group) {
                c.auth.manageGIDs = v.ids
                c.auth.manageGroupNames = v.names
            } else {
                c.auth.manageGIDs = Self.defaultGroupIDs()
            }
            c.auth.allowDaemonUser = try reader.bool(t, "auth", "allow_daemon_user") ?? c.auth.allowDaemonUser
        } else {
            c.auth.resolveDefaultGroups()
        }
        if let t = try reader.section(root, "finetune") {
            try reader.checkKeys(t, section: "finetune", known: ["idle_after", "window", "on_ac_power", "max_load", "state_dir", "checkpoint_every",
                                                                 "eval_margin", "eval_answers", "min_answer_rate"])
            if let d = try reader.string(t, "finetune", "state_dir") {
                guard d.isEmpty || d.hasPrefix("/") else {
                    throw .configKey(path: path, key: "[finetune] state_dir", problem: "= \"\(d)\" must be an absolute path (or \"\" for the default)")
                }
                c.finetune.stateDir = d
            }
            c.finetune.checkpointEvery = try reader.int(t, "finetune", "checkpoint_every", min: 1, max: 1_000_000) ?? c.finetune.checkpointEvery
            if let m = try reader.number(t, "finetune", "eval_margin") {
                guard m >= 0, m < 1 else { throw .configKey(path: path, key: "[finetune] eval_margin", problem: "= \(m) must be at least 0 and below 1 (0.02 = 2% lower held-out loss)") }
                c.finetune.evalMargin = m
            }
            if let a = try reader.string(t, "finetune", "eval_answers") {
                guard ["", "json_fields", "exact_match"].contains(a) else {
                    throw .configKey(path: path, key: "[finetune] eval_answers", problem: "= \"\(a)\" is not one of \"\", \"json_fields\", \"exact_match\"")
                }
                c.finetune.evalAnswers = a
            }
            if let r = try reader.number(t, "finetune", "min_answer_rate") {
                guard r >= 0, r <= 1 else { throw .configKey(path: path, key: "[finetune] min_answer_rate", problem: "= \(r) must be between 0 and 1") }
                c.finetune.minAnswerRate = r
            }
            c.finetune.idleAfter = try reader.seconds(t, "finetune", "idle_after", allowZero: true) ?? c.finetune.idleAfter
            if let w = try reader.string(t, "finetune", "window") {
                guard w.isEmpty || Self.parseWindow(w) != nil else {
                    throw .configKey(path: path, key: "[finetune] window", problem: "= \"\(w)\" is not a time window like \"01:00-05:30\" (or \"\" for any time)")
                }
                c.finetune.window = w
            }
            c.finetune.onACPower = try reader.bool(t, "finetune", "on_ac_power") ?? c.finetune.onACPower
            if let l = try reader.number(t, "finetune", "max_load") {
                guard l > 0 else { throw .configKey(path: path, key: "[finetune] max_load", problem: "= \(l) must be greater than 0") }
                c.finetune.maxLoad = l
            }
        }
        if let t = try reader.section(root, "logging") {
            try reader.checkKeys(t, section: "logging", known: ["level"])
            if let l = try reader.string(t, "logging", "level") {
                let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
                guard levels.contains(l) else {
                    throw .configKey(path: path, key: "[logging] level", problem: "= \"\(l)\" is not one of \(levels.joined(separator: ", "))")
                }
                c.logging.level = l
            }
        }
        return c
    }

    /// Minutes since midnight of a "HH:MM-HH:MM" window.
    public static func parseWindow(_ text: String) -> (start: Int, end: Int)? {
        let parts = text.split(separator: "-")
        guard parts.count == 2 else { return nil }
        func minutes(_ s: Substring) -> Int? {
            let hm = s.trimmingCharacters(in: .whitespaces).split(separator: ":")
            guard hm.count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0..<24).contains(h), (0..<60).contains(m) else { return nil }
            return h * 60 + m
        }
        guard let a = minutes(parts[0]), let b = minutes(parts[1]) else { return nil }
        return (a, b)
    }

    /// gid of the `edge-runtime` group when it exists (a hand-run daemon on a machine without the
    /// package has none, and then only root and the daemon's own user are allowed).
    static func defaultGroupIDs() -> [UInt32] {
        guard let g = getgrnam("edge-runtime") else { return [] }
        return [UInt32(g.pointee.gr_gid)]
    }
}

extension DaemonConfiguration.Auth {
    mutating func resolveDefaultGroups() {
        inferenceGIDs = DaemonConfiguration.defaultGroupIDs()
        manageGIDs = inferenceGIDs
    }
}

/// Typed accessors over a TOML table that turn every mismatch into `DaemonError.configKey`.
private struct TOMLReader {
    let path: String

    enum IDKind { case user, group }

    func fail(_ section: String, _ key: String, _ problem: String) -> DaemonError {
        .configKey(path: path, key: "[\(section)] \(key)", problem: problem)
    }

    func checkKeys(_ table: TOMLTable, section: String?, known: Set<String>) throws(DaemonError) {
        for key in table.keys where !known.contains(key) {
            let name = section.map { "[\($0)] \(key)" } ?? (table[key]?.table != nil ? "[\(key)]" : key)
            throw .configKey(path: path, key: name, problem: "is not a known key (known: \(known.sorted().joined(separator: ", ")))")
        }
    }

    func section(_ root: TOMLTable, _ name: String) throws(DaemonError) -> TOMLTable? {
        guard let v = root[name] else { return nil }
        guard let t = v.table else { throw .configKey(path: path, key: "[\(name)]", problem: "must be a table (a [\(name)] section)") }
        return t
    }

    func string(_ t: TOMLTable, _ s: String, _ k: String) throws(DaemonError) -> String? {
        guard let v = t[k] else { return nil }
        guard let str = v.string else { throw fail(s, k, "must be a string (in double quotes)") }
        return str
    }

    func bool(_ t: TOMLTable, _ s: String, _ k: String) throws(DaemonError) -> Bool? {
        guard let v = t[k] else { return nil }
        guard let b = v.bool else { throw fail(s, k, "must be true or false") }
        return b
    }

    func int(_ t: TOMLTable, _ s: String, _ k: String, min: Int, max: Int = Int.max) throws(DaemonError) -> Int? {
        guard let v = t[k] else { return nil }
        guard let i = v.int else { throw fail(s, k, "must be an integer") }
        guard i >= min && i <= max else {
            throw fail(s, k, max == Int.max ? "= \(i) must be at least \(min)" : "= \(i) must be between \(min) and \(max)")
        }
        return i
    }

    func number(_ t: TOMLTable, _ s: String, _ k: String) throws(DaemonError) -> Double? {
        guard let v = t[k] else { return nil }
        if let d = v.double { return d }
        if let i = v.int { return Double(i) }
        throw fail(s, k, "must be a number")
    }

    func seconds(_ t: TOMLTable, _ s: String, _ k: String, allowZero: Bool = false) throws(DaemonError) -> Double? {
        guard let d = try number(t, s, k) else { return nil }
        guard d.isFinite, allowZero ? d >= 0 : d > 0 else {
            throw fail(s, k, "= \(d) must be a number of seconds \(allowZero ? "≥ 0" : "> 0")")
        }
        return d
    }

    func strings(_ t: TOMLTable, _ s: String, _ k: String) throws(DaemonError) -> [String]? {
        guard let v = t[k] else { return nil }
        guard let a = v.array else { throw fail(s, k, "must be an array of strings") }
        var out: [String] = []
        for e in a {
            guard let str = e.string else { throw fail(s, k, "must be an array of strings") }
            out.append(str)
        }
        return out
    }

    /// An array of numeric ids or names ("edge-runtime"), names resolved with getpwnam/getgrnam.
    /// An unknown user name is an error; an unknown group name too — except that a missing
    /// `edge-runtime` group is tolerated (the package creates it; a hand-run daemon has none).
    func ids(_ t: TOMLTable, _ s: String, _ k: String, kind: IDKind) throws(DaemonError) -> (ids: [UInt32], names: [String])? {
        guard let v = t[k] else { return nil }
        guard let a = v.array else { throw fail(s, k, "must be an array of numeric ids or names") }
        var ids: [UInt32] = [], names: [String] = []
        for e in a {
            if let i = e.int {
                guard i >= 0 && i <= Int(UInt32.max) else { throw fail(s, k, "entry \(i) is not a valid id") }
                ids.append(UInt32(i))
                names.append(String(i))
            } else if let name = e.string {
                names.append(name)
                switch kind {
                case .user:
                    guard let pw = getpwnam(name) else { throw fail(s, k, "names user \"\(name)\", which does not exist") }
                    ids.append(UInt32(pw.pointee.pw_uid))
                case .group:
                    if let g = getgrnam(name) {
                        ids.append(UInt32(g.pointee.gr_gid))
                    } else if name != "edge-runtime" {
                        throw fail(s, k, "names group \"\(name)\", which does not exist")
                    }
                }
            } else {
                throw fail(s, k, "must be an array of numeric ids or names")
            }
        }
        return (ids, names)
    }
}
