import AsyncHTTPClient
import Foundation
import NIOCore

/// Fetches store files: index.json into memory and artifacts into a file, over HTTP(S) with
/// AsyncHTTPClient or by reading a store directory.
///
/// Downloads stream to `partialPath` as they arrive (never held whole in memory), stop at the
/// expected size or the artifact cap, retry transient failures (connection errors, timeouts, 5xx,
/// 408, 429, bodies cut short) with exponential back-off, and resume a partial file with a `Range`
/// request; a server that answers 200 instead of 206 is restarted from zero. The caller verifies
/// the digest; nothing here decides a file is good.
///
/// Stateless apart from its settings: safe to use from many tasks at once. Each operation owns
/// its own HTTP client for its duration and shuts it down, so nothing needs closing afterwards.
public struct AdapterFetcher: Sendable {
    public let store: StoreLocation
    public let options: FetchOptions
    public let limits: ArtifactLimits
    public typealias Progress = @Sendable (FetchProgress) -> Void

    public init(store: StoreLocation, options: FetchOptions = FetchOptions(), limits: ArtifactLimits = ArtifactLimits()) {
        self.store = store
        self.options = options
        self.limits = limits
    }

    // MARK: - index.json

    public func fetchIndex(name: AdapterName) async throws(AdapterError) -> StoreIndex {
        let url = store.location(name, "index.json")
        let data: Data
        switch store {
        case .directory:
            guard FileManager.default.fileExists(atPath: url) else { throw .notFound(url: url) }
            guard let attrs = try? FileManager.default.attributesOfItem(atPath: url), let size = attrs[.size] as? NSNumber else { throw .io(path: url, reason: "cannot stat") }
            guard size.intValue <= options.maxIndexBytes else { throw .tooLarge(path: url, what: "index.json", limit: Int64(options.maxIndexBytes)) }
            guard let d = FileManager.default.contents(atPath: url) else { throw .io(path: url, reason: "not readable") }
            data = d
        case .http:
            data = try await withRetries(url: url) { () async throws(AdapterError) -> Data in
                try await withClient { (client) async throws(AdapterError) -> Data in try await getSmall(client: client, url: url) }
            }
        }
        return try StoreIndex.decode(data, url: url, expectedName: name)
    }

    // MARK: - artifacts

    /// Downloads `{name}/{version}.tar.zst` into `partialPath` (resuming a partial file there) until
    /// it holds `expectedSize` bytes. Throws on any failure, leaving the partial file for a resume.
    public func download(name: AdapterName, version: AdapterName, expectedSize: Int64, to partialPath: String, progress: Progress? = nil) async throws(AdapterError) {
        let url = store.location(name, "\(version.value).tar.zst")
        guard expectedSize <= limits.maxArtifactBytes else { throw .tooLarge(path: url, what: "artifact of \(expectedSize) bytes", limit: limits.maxArtifactBytes) }
        switch store {
        case .directory:
            try copyFile(from: url, to: partialPath, expectedSize: expectedSize, progress: progress)
        case .http:
            try await withRetries(url: url) { () async throws(AdapterError) -> Void in
                try await withClient { (client) async throws(AdapterError) -> Void in
                    try await downloadAttempt(client: client, url: url, expectedSize: expectedSize, partialPath: partialPath, progress: progress)
                }
            }
        }
    }

    private func copyFile(from src: String, to dst: String, expectedSize: Int64, progress: Progress?) throws(AdapterError) {
        let inFD = open(src, O_RDONLY | O_CLOEXEC)
        guard inFD >= 0 else {
            if errno == ENOENT { throw .notFound(url: "file://" + src) }
            throw .io(path: src, reason: String(cString: strerror(errno)))
        }
        defer { close(inFD) }
        let outFD = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard outFD >= 0 else { throw .io(path: dst, reason: String(cString: strerror(errno))) }
        defer { close(outFD) }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { chunk.deallocate() }
        var total: Int64 = 0
        let start = Date()
        while true {
            let n = read(inFD, chunk.baseAddress, chunk.count)
            if n < 0 { if errno == EINTR { continue }; throw .io(path: src, reason: String(cString: strerror(errno))) }
            if n == 0 { break }
            total += Int64(n)
            guard total <= expectedSize else { throw .sizeMismatch(what: "file://" + src, expected: expectedSize, actual: total) }
            try writeAll(outFD, UnsafeRawBufferPointer(rebasing: chunk[0..<n]), path: dst)
            progress?(FetchProgress(bytes: total, total: expectedSize, bytesPerSecond: Double(total) / max(Date().timeIntervalSince(start), 1e-6)))
        }
        guard total == expectedSize else { throw .truncatedDownload(url: "file://" + src, expected: expectedSize, received: total) }
    }

    // MARK: - HTTP

    private func withClient<T>(_ body: (HTTPClient) async throws(AdapterError) -> T) async throws(AdapterError) -> T {
        var config = HTTPClient.Configuration()
        config.timeout = .init(connect: .milliseconds(Int64(options.connectTimeout * 1000)), read: .milliseconds(Int64(options.readTimeout * 1000)))
        config.redirectConfiguration = .follow(max: 5, allowCycles: false)
        config.decompression = .disabled
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: config)
        do {
            let result = try await body(client)
            try? await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func translate(_ error: Error, url: String) -> AdapterError {
        if let e = error as? AdapterError { return e }
        if let e = error as? HTTPClientError {
            if e == .readTimeout { return .timeout(url: url, seconds: options.readTimeout) }
            if e == .connectTimeout { return .timeout(url: url, seconds: options.connectTimeout) }
            if e == .deadlineExceeded { return .timeout(url: url, seconds: options.requestTimeout) }
            if e == .remoteConnectionClosed { return .network(url: url, reason: "\(e)") }
        }
        return .network(url: url, reason: "\(error)")
    }

    private func getSmall(client: HTTPClient, url: String) async throws(AdapterError) -> Data {
        do {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .milliseconds(Int64(options.requestTimeout * 1000)))
            try check(status: Int(response.status.code), url: url)
            let body = try await response.body.collect(upTo: options.maxIndexBytes)
            return Data(body.readableBytesView)
        } catch let e as AdapterError {
            throw e
        } catch let e as NIOTooManyBytesError {
            _ = e
            throw .tooLarge(path: url, what: "index.json", limit: Int64(options.maxIndexBytes))
        } catch {
            throw translate(error, url: url)
        }
    }

    private func check(status: Int, url: String) throws(AdapterError) {
        if status == 404 || status == 410 { throw .notFound(url: url) }
        guard (200..<300).contains(status) else { throw .http(url: url, status: status) }
    }

    private func downloadAttempt(client: HTTPClient, url: String, expectedSize: Int64, partialPath: String, progress: Progress?) async throws(AdapterError) {
        var have: Int64 = 0
        var st = stat()
        if stat(partialPath, &st) == 0 { have = Int64(st.st_size) }
        if have > expectedSize { unlink(partialPath); have = 0 }
        if have == expectedSize, expectedSize > 0 { return }

        var request = HTTPClientRequest(url: url)
        if have > 0 { request.headers.add(name: "Range", value: "bytes=\(have)-") }
        do {
            let response = try await client.execute(request, timeout: .milliseconds(Int64(options.requestTimeout * 1000)))
            let status = Int(response.status.code)
            var append = false
            if status == 206 {
                // Only a range that starts where the file ends may be appended.
                let range = response.headers.first(name: "Content-Range") ?? ""
                guard range.hasPrefix("bytes \(have)-") else {
                    unlink(partialPath)
                    throw AdapterError.network(url: url, reason: "server answered range '\(range.prefix(60))' to a resume from byte \(have); restarting")
                }
                append = true
            } else if status == 416 {
                unlink(partialPath)
                throw AdapterError.network(url: url, reason: "server refused resuming at byte \(have); restarting")
            } else {
                try check(status: status, url: url)
                have = 0
            }
            let remaining = expectedSize - have
            if let len = response.headers.first(name: "Content-Length").flatMap({ Int64($0) }), len != remaining {
                throw AdapterError.sizeMismatch(what: url, expected: expectedSize, actual: have + len)
            }
            let fd = open(partialPath, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0o644)
            guard fd >= 0 else { throw AdapterError.io(path: partialPath, reason: String(cString: strerror(errno))) }
            defer { close(fd) }
            var received = have
            let start = Date()
            var lastReport = Date.distantPast
            for try await chunk in response.body {
                received += Int64(chunk.readableBytes)
                guard received <= expectedSize else { throw AdapterError.sizeMismatch(what: url, expected: expectedSize, actual: received) }
                try chunk.withUnsafeReadableBytes { (raw) throws(AdapterError) in try writeAll(fd, raw, path: partialPath) }
                let now = Date()
                if let progress, now.timeIntervalSince(lastReport) >= 0.1 || received == expectedSize {
                    lastReport = now
                    progress(FetchProgress(bytes: received, total: expectedSize, bytesPerSecond: Double(received - have) / max(now.timeIntervalSince(start), 1e-6)))
                }
            }
            guard received == expectedSize else { throw AdapterError.truncatedDownload(url: url, expected: expectedSize, received: received) }
        } catch let e as AdapterError {
            throw e
        } catch {
            throw translate(error, url: url)
        }
    }

    /// Runs `attempt` up to `maxAttempts` times, sleeping with exponential back-off between tries;
    /// only transient failures are retried.
    private func withRetries<T>(url: String, _ attempt: () async throws(AdapterError) -> T) async throws(AdapterError) -> T {
        var n = 0
        while true {
            n += 1
            do {
                return try await attempt()
            } catch {
                guard n < options.maxAttempts, Self.isTransient(error) else { throw error }
                let base = min(options.initialBackoff * pow(2, Double(n - 1)), options.maxBackoff)
                let delay = base * Double.random(in: 0.8...1.2)
                do { try await Task.sleep(nanoseconds: UInt64(delay * 1e9)) } catch { throw .network(url: url, reason: "cancelled") }
            }
        }
    }

    static func isTransient(_ error: AdapterError) -> Bool {
        switch error {
        case .network, .timeout, .truncatedDownload: return true
        case .http(_, let status): return status >= 500 || status == 408 || status == 429
        default: return false
        }
    }
}

private func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws(AdapterError) {
    var done = 0
    while done < buffer.count {
        let n = Foundation.write(fd, buffer.baseAddress! + done, buffer.count - done)
        if n < 0 {
            if errno == EINTR { continue }
            throw .io(path: path, reason: errno == ENOSPC ? "the disk is full" : String(cString: strerror(errno)))
        }
        done += n
    }
}
