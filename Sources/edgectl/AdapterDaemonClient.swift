import ArgumentParser
import EdgeRuntime
import Foundation

/// The adapter cache operations of `edgectl adapter …` carried out by the daemon over its socket
/// (the daemon owns the cache directory; a second process writing it would race its eviction and
/// index). Every failure ends in `DaemonExit` codes: 3 when the daemon cannot be reached, 1 when it
/// refuses or fails the request.
struct AdapterDaemonClient {
    let client: DaemonClient

    init(socket: SocketOptions) {
        client = socket.client
    }

    /// `GET /v1/adapters`: every adapter the daemon has cached.
    func list() throws -> [EdgeRuntime.AdapterInfo] {
        let response = try send("GET", "/v1/adapters")
        struct Listing: Decodable { var data: [EdgeRuntime.AdapterInfo] }
        return try decode(Listing.self, response.body, what: "the adapter list").data
    }

    /// The cached entry for `name` (and `version`, else its newest cached version), or nil.
    func find(name: String, version: String?) throws -> EdgeRuntime.AdapterInfo? {
        let matching = try list().filter { $0.name == name && (version == nil || $0.version == version) }
        return matching.max { ($0.createdAt, $0.version) < ($1.createdAt, $1.version) }
    }

    /// `POST /v1/adapters/pull` read as NDJSON; `progress` sees every downloading event.
    func pull(_ reference: String, progress: (_ completed: Int, _ total: Int?) -> Void) throws -> EdgeRuntime.AdapterInfo {
        var done: EdgeRuntime.AdapterInfo?
        var failure: String?
        let response: DaemonClient.Response
        do {
            response = try client.stream("POST", "/v1/adapters/pull", json: .object([("name", .string(reference)), ("stream", true)]),
                                         accept: "application/x-ndjson") { line in
                guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { return }
                let value = try JSONValue.parse(Array(line.utf8))
                if let message = value["error"]?["message"]?.stringValue {
                    failure = message
                    return
                }
                let event = try decode(AdapterPullProgress.self, Data(line.utf8), what: "a pull progress event")
                switch event.phase {
                case .downloading: progress(event.completedBytes, event.totalBytes)
                case .done: done = event.adapter
                case .resolving, .verifying: break
                }
            }
        } catch let e as ExitCode {
            throw e
        } catch {
            throw DaemonExit.fail(error)
        }
        guard (200..<300).contains(response.status) else { throw DaemonExit.refused(response) }
        if let failure { throw Self.failed("the daemon could not pull \(reference): \(failure)") }
        guard let done else { throw Self.failed("the daemon ended the pull of \(reference) without reporting the cached adapter") }
        return done
    }

    /// `DELETE /v1/adapters/NAME[@VERSION]`: NAME removes every cached version, NAME@VERSION that one.
    func evict(_ reference: String) throws {
        _ = try send("DELETE", "/v1/adapters/\(reference)")
    }

    /// `POST /v1/adapters/NAME[@VERSION]/pin`; the daemon pulls the adapter first if needed.
    func pin(_ reference: String) throws -> EdgeRuntime.AdapterInfo {
        try decode(EdgeRuntime.AdapterInfo.self, try send("POST", "/v1/adapters/\(reference)/pin").body, what: "the pinned adapter")
    }

    /// `POST /v1/adapters/NAME[@VERSION]/unpin`; NAME unpins its newest cached version.
    func unpin(_ reference: String) throws -> EdgeRuntime.AdapterInfo {
        try decode(EdgeRuntime.AdapterInfo.self, try send("POST", "/v1/adapters/\(reference)/unpin").body, what: "the unpinned adapter")
    }

    private func send(_ method: String, _ path: String) throws -> DaemonClient.Response {
        let response: DaemonClient.Response
        do { response = try client.request(method, path, body: method == "POST" ? Array("{}".utf8) : nil) } catch { throw DaemonExit.fail(error) }
        guard (200..<300).contains(response.status) else { throw DaemonExit.refused(response) }
        return response
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data, what: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: data) } catch {
            throw Self.failed("the daemon sent \(what) edgectl cannot read (\(error)); are edgectl and edge-runtimed the same version?")
        }
    }

    /// One `edgectl:` sentence on stderr and exit status 1.
    static func failed(_ sentence: String) -> ExitCode {
        FileHandle.standardError.write(Data("edgectl: \(sentence)\n".utf8))
        return ExitCode(DaemonExit.requestFailed)
    }
}

extension EdgeRuntime.AdapterInfo {
    /// The row `edgectl adapter list` prints, in the columns of the local mode's table.
    var tableRow: [String] {
        [name, version, humanBytes(Int64(diskBytes)), tier, source == "local" ? "local" : (pinned ? "yes" : "no"), Self.date(createdAt)]
    }

    static func date(_ unixSeconds: Int) -> String {
        unixSeconds > 0 ? ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(unixSeconds))) : "?"
    }
}
