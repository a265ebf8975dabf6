import AdapterCache
import EdgeRuntime
import ArgumentParser
import Foundation

/// `edgectl adapter …`: packing, publishing, pulling and managing LoRA adapters. The cache commands
/// (pull, list, info, evict, pin, unpin) go through the daemon, which owns the cache; with
/// `--cache-dir`/`--local` they run in-process on a cache directory instead (offline use, no daemon).
/// pack, publish, verify and keygen only touch files and always run locally.
struct AdapterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adapter",
        abstract: "Pack, publish, pull and manage LoRA adapters.",
        discussion: helpExamples("edgectl adapter pack ./my-peft -o my.tar.zst --name my@1 --base-model ~/models/m",
                                 "edgectl adapter publish my.tar.zst --to /srv/adapter-store", "edgectl adapter list --json"),
        subcommands: [
            AdapterPack.self, AdapterPublish.self, AdapterPull.self, AdapterList.self, AdapterInfo.self, AdapterEvict.self,
            AdapterPin.self, AdapterUnpin.self, AdapterRollbackCommand.self, AdapterVerify.self, AdapterKeygen.self, AdapterBench.self,
        ]
    )
}

/// Options every cache-touching subcommand shares. Without `--cache-dir` or `--local` the command
/// asks the daemon; every other option here configures the local cache and is refused then (the
/// daemon takes store, budgets and keys from its own [adapters] config).
struct CacheOptions: ParsableArguments {
    @Option(name: .long, help: "Work offline on this cache directory instead of asking the daemon (never on a directory a running daemon uses).")
    var cacheDir: String?

    @Flag(name: .long, help: "Work offline on the default cache directory (/var/cache/edge-runtime/adapters as root, else $XDG_CACHE_HOME/edge-runtime/adapters) instead of asking the daemon.")
    var local = false

    @Option(name: .long, help: "With --cache-dir/--local: store URL, http(s)://…, file://DIR or a directory (default: $EDGE_ADAPTER_STORE).")
    var store: String?

    @Option(name: .long, help: "With --cache-dir/--local: disk budget in bytes (suffixes K, M, G).")
    var diskBudget: String?

    @Option(name: .long, help: "With --cache-dir/--local: RAM budget in bytes (suffixes K, M, G).")
    var ramBudget: String?

    @Option(name: .long, help: "With --cache-dir/--local: trusted ed25519 public key (base64 or a .pub file); repeatable.")
    var trustedKey: [String] = []

    @Flag(name: .long, help: "With --cache-dir/--local: refuse adapters without a signature.")
    var requireSignature = false

    @Option(name: .long, help: "With --cache-dir/--local: the base-model digest (as `adapter pack --base-model` computes it); adapters for another base are refused.")
    var baseModelDigest: String?

    /// Local mode: an explicit cache directory or `--local`.
    var isLocal: Bool { local || cacheDir != nil }

    /// Refuses option mixes that would silently be ignored: local-cache settings in daemon mode,
    /// `--socket` in local mode.
    func validateMode(socket: SocketOptions) throws {
        if isLocal {
            if socket.socket != nil { throw ValidationError("--socket asks the daemon, --cache-dir/--local work without it: give one of them") }
            return
        }
        let localOnly: [(String, Bool)] = [
            ("--store", store != nil), ("--disk-budget", diskBudget != nil), ("--ram-budget", ramBudget != nil),
            ("--trusted-key", !trustedKey.isEmpty), ("--require-signature", requireSignature), ("--base-model-digest", baseModelDigest != nil),
        ]
        if let (option, _) = localOnly.first(where: { $0.1 }) {
            throw ValidationError("\(option) applies only with --cache-dir DIR or --local; the daemon takes it from the [adapters] section of its config")
        }
    }

    func configuration() throws -> AdapterCacheConfiguration {
        var c = AdapterCacheConfiguration(directory: cacheDir ?? AdapterCacheConfiguration.defaultDirectory())
        if let s = store ?? ProcessInfo.processInfo.environment["EDGE_ADAPTER_STORE"], !s.isEmpty { c.store = try StoreLocation(s) }
        if let d = diskBudget { c.diskBudgetBytes = try parseBytes(d, option: "--disk-budget") }
        if let r = ramBudget { c.ramBudgetBytes = try parseBytes(r, option: "--ram-budget") }
        c.trustedKeys = trustedKey
        c.requireSignature = requireSignature
        c.baseModelDigest = baseModelDigest.map(FileDigest.normalized)
        return c
    }

    func openCache() throws -> AdapterCache {
        try AdapterCache(configuration: configuration())
    }
}

func parseBytes(_ text: String, option: String) throws -> Int64 {
    let t = text.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Int64)] = [("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
    for (suffix, mul) in units where t.hasSuffix(suffix) {
        if let v = Double(t.dropLast(suffix.count)), v >= 0 { return Int64(v * Double(mul)) }
    }
    if let v = Int64(t), v >= 0 { return v }
    throw ValidationError("\(option) '\(text)' is not a byte count (e.g. 512M, 4G)")
}

/// Runs `body`, turning adapter errors into one `error:` line on stderr and exit status 1.
func reportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch let e as AdapterError {
        FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
        throw ExitCode.failure
    } catch let e as AdapterNameError {
        FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
        throw ExitCode.failure
    }
}

func printJSON<T: Encodable>(_ value: T) {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    if let data = try? e.encode(value) { print(String(decoding: data, as: UTF8.self)) }
}

func humanBytes(_ n: Int64) -> String {
    let v = Double(n)
    let kib = 1024.0, mib = kib * 1024, gib = mib * 1024
    if v >= gib { return String(format: "%.2f GiB", v / gib) }
    if v >= mib { return String(format: "%.1f MiB", v / mib) }
    if v >= kib { return String(format: "%.1f KiB", v / kib) }
    return "\(n) B"
}

/// The base-model digest the daemon checks adapters against: sha256 of the model's
/// model.safetensors (ModelDigest, shared with the daemon and `model info`). PATH is the model
/// directory or its model.safetensors.
func digestOfBaseModel(path: String) throws -> String {
    try ModelDigest.of(path: path)
}
