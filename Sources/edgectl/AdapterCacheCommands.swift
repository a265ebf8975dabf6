import AdapterCache
import ArgumentParser
import EdgeRuntime
import Foundation

struct AdapterPull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull", abstract: "Fetch an adapter from the store into the cache, verified.",
        discussion: adapterModeHelp(examples: ["edgectl adapter pull support-bot@3", "edgectl adapter pull support-bot --json --socket /run/edge-runtime/edge.sock",
                                               "edgectl adapter pull support-bot --cache-dir ~/adapters --store file:///srv/adapter-store"]))

    @Argument(help: "NAME or NAME@VERSION.") var reference: String
    @OptionGroup var socket: SocketOptions
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print the cached entry as JSON (no progress bar).") var json = false

    func validate() throws { try cache.validateMode(socket: socket) }

    func run() async throws {
        if !cache.isLocal {
            let ref = try parsedReference(reference)
            let bar = ProgressBar(label: ref.description, enabled: !json && isatty(STDERR_FILENO) != 0)
            let start = Date()
            let info = try AdapterDaemonClient(socket: socket).pull(ref.description) { completed, total in
                let elapsed = Date().timeIntervalSince(start)
                bar.update(FetchProgress(bytes: Int64(completed), total: total.map { Int64($0) }, bytesPerSecond: elapsed > 0.05 ? Double(completed) / elapsed : 0))
            }
            bar.finish()
            if json { printJSON(info) } else { print("\(info.name)@\(info.version): \(humanBytes(Int64(info.diskBytes))) cached by the daemon, sha256 \(info.sha256.prefix(16))…") }
            return
        }
        try await reportingErrors {
            let ref = try AdapterReference(reference)
            let c = try cache.openCache()
            let bar = ProgressBar(label: ref.description, enabled: !json && isatty(STDERR_FILENO) != 0)
            let status = try await c.pull(ref) { bar.update($0) }
            bar.finish()
            try await c.flush()
            if json { printJSON(status) } else { print("\(status.name)@\(status.version): \(humanBytes(status.size)) cached, sha256 \(status.sha256.prefix(16))…") }
        }
    }
}

struct AdapterList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List cached adapters.",
        discussion: adapterModeHelp(examples: ["edgectl adapter list", "EDGE_SOCKET=/tmp/edge.sock edgectl adapter list --json", "edgectl adapter list --local"]))

    @OptionGroup var socket: SocketOptions
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws { try cache.validateMode(socket: socket) }

    func run() async throws {
        if !cache.isLocal {
            let items = try AdapterDaemonClient(socket: socket).list()
            if json { printJSON(items); return }
            if items.isEmpty { print("no adapters cached"); return }
            printTable([["NAME", "VERSION", "SIZE", "TIER", "PINNED", "CREATED"]] + items.map(\.tableRow))
            return
        }
        try await reportingErrors {
            let items = try await cache.openCache().list()
            if json { printJSON(items); return }
            if items.isEmpty { print("no adapters cached"); return }
            let rows = [["NAME", "VERSION", "SIZE", "TIER", "PINNED", "LAST USED"]] + items.map {
                [$0.name, $0.version, humanBytes($0.size), $0.tier, $0.local ? "local" : ($0.pinned ? "yes" : "no"), $0.lastUsed]
            }
            printTable(rows)
        }
    }
}

struct AdapterInfo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show one cached adapter (NAME alone: its newest cached version).",
        discussion: adapterModeHelp(examples: ["edgectl adapter info support-bot", "edgectl adapter info support-bot@3 --json", "edgectl adapter info support-bot --cache-dir ~/adapters"]))

    @Argument(help: "NAME or NAME@VERSION.") var reference: String
    @OptionGroup var socket: SocketOptions
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws { try cache.validateMode(socket: socket) }

    func run() async throws {
        if !cache.isLocal {
            let ref = try parsedReference(reference)
            guard let s = try AdapterDaemonClient(socket: socket).find(name: ref.name.value, version: ref.version?.value) else {
                throw AdapterDaemonClient.failed("\(ref) is not in the daemon's adapter cache: fetch it with `edgectl adapter pull \(ref)`")
            }
            if json { printJSON(s); return }
            print("""
            name:        \(s.name)
            version:     \(s.version)
            sha256:      \(s.sha256)
            size:        \(humanBytes(Int64(s.diskBytes))) on disk\(s.ramBytes > 0 ? ", \(humanBytes(Int64(s.ramBytes))) in RAM" : "")
            tier:        \(s.tier)
            pinned:      \(s.pinned)
            source:      \(s.source)
            rank:        \(s.rank > 0 ? String(s.rank) : "?")
            base model:  \(s.baseModel.isEmpty ? "unspecified" : s.baseModel)
            created:     \(EdgeRuntime.AdapterInfo.date(s.createdAt))
            """)
            return
        }
        try await reportingErrors {
            let ref = try AdapterReference(reference)
            guard let s = try await cache.openCache().info(ref) else { throw AdapterError.notCached(ref.description) }
            if json { printJSON(s); return }
            print("""
            name:        \(s.name)
            version:     \(s.version)
            sha256:      \(s.sha256)
            size:        \(humanBytes(s.size))
            tier:        \(s.tier)
            pinned:      \(s.pinned)
            local:       \(s.local)
            rank:        \(s.rank.map(String.init) ?? "?")
            targets:     \((s.targets ?? []).joined(separator: ", "))
            base model:  \(s.baseModel ?? "unspecified")
            signed:      \(s.signed)
            created:     \(s.created)
            last used:   \(s.lastUsed)
            """)
        }
    }
}

struct AdapterEvict: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evict", abstract: "Remove an adapter from the cache: NAME every cached version, NAME@VERSION that one.",
        discussion: adapterModeHelp(examples: ["edgectl adapter evict support-bot", "edgectl adapter evict support-bot@2 --json", "edgectl adapter evict support-bot@2 --cache-dir ~/adapters"]))

    @Argument(help: "NAME (every cached version) or NAME@VERSION (that one).") var reference: String
    @OptionGroup var socket: SocketOptions
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Also remove adapters trained on this device (they cannot be fetched again); only with --cache-dir/--local.") var force = false
    @Flag(name: .long, help: "Print JSON: the removed entries.") var json = false

    func validate() throws {
        try cache.validateMode(socket: socket)
        guard !cache.isLocal else { return }
        if force { throw ValidationError("--force applies only with --cache-dir DIR or --local; the daemon never evicts adapters trained on the device") }
    }

    func run() async throws {
        if !cache.isLocal {
            let ref = try parsedReference(reference)
            let daemon = AdapterDaemonClient(socket: socket)
            // The daemon answers only "deleted"; listing first says what went (same order as the local mode).
            let before = try daemon.list().filter { $0.name == ref.name.value && (ref.version == nil || $0.version == ref.version?.value) }
            try daemon.evict(ref.description)
            if json { printJSON(before) } else { for r in before { print("evicted \(r.name)@\(r.version) (\(humanBytes(Int64(r.diskBytes))))") } }
            return
        }
        try await reportingErrors {
            let removed = try await cache.openCache().evict(try AdapterReference(reference), force: force)
            if json { printJSON(removed) } else { for r in removed { print("evicted \(r.name)@\(r.version) (\(humanBytes(r.size)))") } }
        }
    }
}

struct AdapterPin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pin", abstract: "Keep an adapter on disk (never evicted); the daemon pulls it first if needed.",
        discussion: adapterModeHelp(examples: ["edgectl adapter pin support-bot@3", "edgectl adapter pin support-bot --json", "edgectl adapter pin support-bot --cache-dir ~/adapters"]))

    @Argument(help: "NAME or NAME@VERSION.") var reference: String
    @OptionGroup var socket: SocketOptions
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws { try cache.validateMode(socket: socket) }

    func run() async throws {
        try await changePin(to: true, reference: reference, socket: socket, cache: cache, json: json)
    }
}

struct AdapterUnpin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unpin", abstract: "Let an adapter be evicted again: NAME its newest cached version, NAME@VERSION that one.",
        discussion: adapterModeHelp(examples: ["edgectl adapter unpin support-bot", "edgectl adapter unpin support-bot@3 --json", "edgectl adapter unpin support-bot@3 --cache-dir ~/adapters"]))

    @Argument(help: "NAME (its newest cached version) or NAME@VERSION.") var reference: String
    @OptionGroup var socket: SocketOptions
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws { try cache.validateMode(socket: socket) }

    func run() async throws {
        try await changePin(to: false, reference: reference, socket: socket, cache: cache, json: json)
    }
}

/// `adapter pin` and `adapter unpin`: through the daemon, or on a local cache directory.
private func changePin(to pinned: Bool, reference: String, socket: SocketOptions, cache: CacheOptions, json: Bool) async throws {
    let verb = pinned ? "pinned" : "unpinned"
    if !cache.isLocal {
        let daemon = AdapterDaemonClient(socket: socket), ref = try parsedReference(reference).description
        let s = try pinned ? daemon.pin(ref) : daemon.unpin(ref)
        if json { printJSON(s) } else { print("\(verb) \(s.name)@\(s.version)") }
        return
    }
    try await reportingErrors {
        let local = try cache.openCache(), ref = try AdapterReference(reference)
        let s = try await pinned ? local.pin(ref) : local.unpin(ref)
        if json { printJSON(s) } else { print("\(verb) \(s.name)@\(s.version)") }
    }
}

/// Help text shared by the cache commands: which mode runs, examples, exit codes.
func adapterModeHelp(examples: [String]) -> String {
    """
    Mode: by default the running daemon (edge-runtimed) does this, since it owns the adapter cache; \
    edgectl reaches it at --socket, else $EDGE_SOCKET, else the default socket, and the store, budgets \
    and trusted keys come from the daemon's [adapters] config. With --cache-dir DIR (or --local for the \
    default directory) edgectl works offline on that cache directory itself — never point it at a \
    directory a running daemon uses.

    Examples:
    \(examples.map { "  " + $0 }.joined(separator: "\n"))

    \(DaemonExit.helpText)
    """
}

/// Parses NAME[@VERSION] for the daemon mode; a malformed one is a usage error (exit 64).
func parsedReference(_ text: String) throws -> AdapterReference {
    do { return try AdapterReference(text) } catch { throw ValidationError(error.description) }
}

func printTable(_ rows: [[String]]) {
    let columns = rows.map(\.count).max() ?? 0
    let widths = (0..<columns).map { i in rows.map { i < $0.count ? $0[i].count : 0 }.max() ?? 0 }
    for r in rows { print(r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)) }
}
