import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A small blocking HTTP/1.1 client (edgectl and the tests use it) over the daemon's Unix socket: one request per connection,
/// `Content-Length` or chunked responses, and line-by-line reading for SSE / NDJSON streams.
/// Blocking is right for a CLI: one request at a time, and Ctrl-C ends the process (closing the
/// socket, which cancels the generation in the daemon).
public final class DaemonClient: Sendable {
    public let socketPath: String
    /// Seconds any single read or write may block (nil = forever, right for an interactive CLI);
    /// past it the call throws `ClientError.timedOut`. The load tool sets it so a stuck daemon
    /// shows up as timeouts instead of a hung benchmark.
    public let timeout: Double?

    public init(socketPath: String, timeout: Double? = nil) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    /// A connection for hand-written requests (abuse tests: partial heads, header floods, raw
    /// bytes); it speaks the same HTTP/1.1 reading code as `request`.
    public func connect() throws(ClientError) -> DaemonConnection {
        try DaemonConnection(path: socketPath, timeout: timeout)
    }

    /// The daemon's pid, from the kernel's record of the socket's peer (SO_PEERCRED).
    public func peerProcessID() throws(ClientError) -> Int32 {
        try connect().peerProcessID()
    }

    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: Data

        public var json: JSONValue? { try? JSONValue.parse(Array(body)) }

        /// The daemon's OpenAI-style error message, or the raw body.
        public var errorMessage: String {
            json?["error"]?["message"]?.stringValue ?? String(decoding: body, as: UTF8.self)
        }
    }

    /// Sends a request and reads the whole response.
    public func request(_ method: String, _ path: String, json: JSONValue? = nil) throws(ClientError) -> Response {
        try request(method, path, body: json.map { Array($0.serialized.utf8) })
    }

    /// Sends raw body bytes (as application/json) and reads the whole response.
    public func request(_ method: String, _ path: String, body: [UInt8]?) throws(ClientError) -> Response {
        let connection = try connect()
        try connection.send(method: method, path: path, body: body)
        let (status, headers) = try connection.readHead()
        var body = Data()
        try connection.readBody(headers: headers) { body.append(contentsOf: $0); return true }
        return Response(status: status, headers: headers, body: body)
    }

    /// Sends a request and hands each line of a streamed body to `onLine` (SSE `data:` lines or
    /// NDJSON). Returns the status; a non-2xx response body is returned whole instead.
    public func stream(_ method: String, _ path: String, json: JSONValue?, accept: String = "text/event-stream", onLine: (String) throws -> Void) throws -> Response {
        let connection = try connect()
        try connection.send(method: method, path: path, body: json.map { Array($0.serialized.utf8) }, accept: accept)
        let (status, headers) = try connection.readHead()
        if !(200..<300).contains(status) {
            var body = Data()
            try connection.readBody(headers: headers) { body.append(contentsOf: $0); return true }
            return Response(status: status, headers: headers, body: body)
        }
        var pending: [UInt8] = []
        var lineError: Error?
        // A throwing onLine stops reading; closing the connection then cancels the generation.
        try connection.readBody(headers: headers) { chunk in
            pending.append(contentsOf: chunk)
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeSubrange(...nl)
                do { try onLine(line) } catch { lineError = error; return false }
            }
            return true
        }
        if let lineError { throw lineError }
        if !pending.isEmpty { try onLine(String(decoding: pending, as: UTF8.self)) }
        return Response(status: status, headers: headers, body: Data())
    }
}

public enum ClientError: Error, CustomStringConvertible, Sendable {
    case notRunning(path: String)
    case permission(path: String)
    case io(path: String, String)
    case protocolError(String)
    case timedOut(path: String, seconds: Double)

    public var description: String {
        switch self {
        case .notRunning(let path):
            return "the daemon is not running at \(path): start it with `systemctl start edge-runtime.socket` or `edge-runtimed --socket \(path)`"
        case .permission(let path):
            return "permission denied on \(path): add your user to the edge-runtime group (`sudo usermod -aG edge-runtime $USER`, then log in again)"
        case .io(let path, let what):
            return "talking to the daemon at \(path) failed: \(what)"
        case .protocolError(let what):
            return "the daemon sent a malformed response: \(what)"
        case .timedOut(let path, let seconds):
            return "the daemon at \(path) did not answer within \(seconds) s"
        }
    }
}

/// One connected socket; closed in deinit. Not thread-safe: one thread uses it at a time.
public final class DaemonConnection {
    let fd: Int32
    let path: String
    let timeout: Double?
    private var buffer: [UInt8] = []
    /// Where `fill` reads into, allocated once per connection: a streamed response arrives a token per
    /// read, and a fresh zero-filled 64 KiB array per read was a 64 KiB memset per token.
    private var readChunk = [UInt8](repeating: 0, count: 65536)
    private var eof = false

    init(path: String, timeout: Double? = nil) throws(ClientError) {
        self.path = path
        self.timeout = timeout
        var addr = sockaddr_un()
        guard path.utf8.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw .io(path: path, "socket path too long") }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .io(path: path, String(cString: strerror(errno))) }
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            switch e {
            case ENOENT, ECONNREFUSED, ENOTDIR: throw .notRunning(path: path)
            case EACCES, EPERM: throw .permission(path: path)
            default: throw .io(path: path, String(cString: strerror(e)))
            }
        }
        applyTimeout()
    }

    deinit { close(fd) }

    /// Applies SO_RCVTIMEO/SO_SNDTIMEO so a blocked read or write fails with EAGAIN.
    private func applyTimeout() {
        guard let timeout else { return }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    private func failure(_ op: String, _ e: Int32) -> ClientError {
        if e == EAGAIN || e == EWOULDBLOCK { return .timedOut(path: path, seconds: timeout ?? 0) }
        return .io(path: path, "\(op): \(String(cString: strerror(e)))")
    }

    /// The pid at the other end (the daemon), from SO_PEERCRED.
    public func peerProcessID() throws(ClientError) -> Int32 {
        var cred = PeerCredentials.UCred()
        var length = socklen_t(MemoryLayout<PeerCredentials.UCred>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0 else { throw failure("SO_PEERCRED", errno) }
        return cred.pid
    }

    /// Writes bytes as they are (no framing added).
    public func sendRaw(_ bytes: [UInt8]) throws(ClientError) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("write", errno)
            }
            off += n
        }
    }

    /// Reads one whole response (head and body).
    public func readResponse() throws(ClientError) -> DaemonClient.Response {
        let (status, headers) = try readHead()
        var body = Data()
        try readBody(headers: headers) { body.append(contentsOf: $0); return true }
        return DaemonClient.Response(status: status, headers: headers, body: body)
    }

    /// Waits up to `seconds` for the peer to close the connection, discarding anything it sends.
    /// True when it closed (EOF or reset), false when it was still open at the deadline.
    public func waitForPeerClose(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return false }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(min(left, 1) * 1000))
            if r < 0 { if errno == EINTR { continue }; return false }
            if r == 0 { continue }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { return true }
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; return true }
        }
    }

    /// Sends one request with `Connection: close` (one request per connection).
    public func send(method: String, path target: String, body: [UInt8]?, accept: String = "application/json") throws(ClientError) {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nUser-Agent: edgectl/\(ServingDaemon.version)\r\nAccept: \(accept)\r\nConnection: close\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if let body { bytes += body }
        try sendRaw(bytes)
    }

    private func fill() throws(ClientError) {
        while true {
            let n = readChunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("read", errno)
            }
            if n == 0 { eof = true } else { buffer += readChunk[0..<n] }
            return
        }
    }

    private func readLine() throws(ClientError) -> String {
        while true {
            if let i = buffer.firstIndex(of: 0x0A) {
                var line = Array(buffer[..<i])
                buffer.removeSubrange(...i)
                if line.last == 0x0D { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            if eof { throw .protocolError("connection closed in the middle of the response head") }
            try fill()
        }
    }

    func readHead() throws(ClientError) -> (Int, [String: String]) {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw .protocolError("bad status line \"\(statusLine.prefix(80))\"")
        }
        var headers: [String: String] = [:]
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { throw .protocolError("bad header line") }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers)
    }

    /// Passes exactly `count` bytes to `sink`; false when the sink asked to stop early. `ending` is
    /// the error when the connection closes first.
    private func readCounted(_ count: Int, ending: String, _ sink: ([UInt8]) -> Bool) throws(ClientError) -> Bool {
        var remaining = count
        while remaining > 0 {
            if buffer.isEmpty {
                if eof { throw .protocolError(ending) }
                try fill()
                continue
            }
            let take = min(remaining, buffer.count)
            let more = sink(Array(buffer[0..<take]))
            buffer.removeFirst(take)
            remaining -= take
            if !more { return false }
        }
        return true
    }

    /// `sink` returns false to stop reading early.
    func readBody(headers: [String: String], _ sink: ([UInt8]) -> Bool) throws(ClientError) {
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let sizeLine = try readLine()
                guard let size = Int(sizeLine.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16) else {
                    throw .protocolError("bad chunk size \"\(sizeLine.prefix(20))\"")
                }
                if size == 0 {
                    while try !readLine().isEmpty {}
                    return
                }
                guard try readCounted(size, ending: "connection closed inside a chunk", sink) else { return }
                _ = try readLine()
            }
        } else if let lengthText = headers["content-length"], let length = Int(lengthText) {
            _ = try readCounted(length, ending: "connection closed before the body ended", sink)
        } else {
            while true {
                if !buffer.isEmpty {
                    let more = sink(buffer)
                    buffer.removeAll()
                    if !more { return }
                }
                if eof { return }
                try fill()
            }
        }
    }
}
