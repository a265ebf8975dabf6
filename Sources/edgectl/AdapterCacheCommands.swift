import AdapterCache
import ArgumentParser
import Foundation

struct AdapterPull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pull", abstract: "Fetch an adapter from the store into the cache, verified.")

    @Argument(help: "NAME or NAME@VERSION.") var reference: String
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print the cached entry as JSON (no progress bar).") var json = false

    func run() async throws {
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
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List cached adapters.")

    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let items = try await cache.openCache().list()
            if json { printJSON(items); return }
            if items.isEmpty { print("no adapters cached"); return }
            let rows = [["NAME", "VERSION", "SIZE", "TIER", "PINNED", "LAST USED"]] + items.map {
                [$0.name, $0.version, humanBytes($0.size), $0.tier, $0.local ? "local" : ($0.pinned ? "yes" : "no"), $0.lastUsed]
            }
            let widths = (0..<6).map { i in rows.map { $0[i].count }.max() ?? 0 }
            for r in rows { print(r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")) }
        }
    }
}

struct AdapterInfo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show one cached adapter.")

    @Argument(help: "NAME or NAME@VERSION.") var reference: String
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
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
    static let configuration = CommandConfiguration(commandName: "evict", abstract: "Remove an adapter (all cached versions, or NAME@VERSION) from the cache.")

    @Argument(help: "NAME or NAME@VERSION.") var reference: String
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Also remove adapters trained on this device (they cannot be fetched again).") var force = false
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let removed = try await cache.openCache().evict(try AdapterReference(reference), force: force)
            if json { printJSON(removed) } else { for r in removed { print("evicted \(r.name)@\(r.version) (\(humanBytes(r.size)))") } }
        }
    }
}

struct AdapterPin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pin", abstract: "Keep an adapter on disk (never evicted).")

    @Argument(help: "NAME or NAME@VERSION.") var reference: String
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let s = try await cache.openCache().pin(try AdapterReference(reference))
            if json { printJSON(s) } else { print("pinned \(s.name)@\(s.version)") }
        }
    }
}

struct AdapterUnpin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unpin", abstract: "Let an adapter be evicted again.")

    @Argument(help: "NAME or NAME@VERSION.") var reference: String
    @OptionGroup var cache: CacheOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let s = try await cache.openCache().unpin(try AdapterReference(reference))
            if json { printJSON(s) } else { print("unpinned \(s.name)@\(s.version)") }
        }
    }
}
