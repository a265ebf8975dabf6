@testable import AdapterCache
import Foundation
import XCTest

/// The cache against a real HTTP server on loopback serving a published store.
final class HTTPStoreTests: XCTestCase {
    var fixture: StoreFixture!
    var server: TestHTTPServer!

    override func setUpWithError() throws {
        fixture = StoreFixture()
        try fixture.publish("a", "1", layers: 6)
        try FileManager.default.createDirectory(atPath: fixture.store, withIntermediateDirectories: true)
        server = try TestHTTPServer(root: fixture.store)
    }

    override func tearDown() {
        server.shutdown()
    }

    func cache(_ edit: (inout AdapterCacheConfiguration) -> Void = { _ in }) throws -> (AdapterCache, AdapterCacheConfiguration) {
        let c = try fixture.cacheConfig(store: server.url, edit)
        return (try AdapterCache(configuration: c), c)
    }

    func testConcurrentMissesShareOneDownload() async throws {
        let (cache, _) = try cache()
        let leases = try await withThrowingTaskGroup(of: AdapterLease.self) { group in
            for _ in 0..<8 { group.addTask { try await cache.acquire(AdapterReference("a")) } }
            var out: [AdapterLease] = []
            for try await l in group { out.append(l) }
            return out
        }
        XCTAssertEqual(leases.count, 8)
        XCTAssertEqual(server.count("/a/1.tar.zst"), 1)
        XCTAssertTrue(leases.allSatisfy { $0.adapter === leases[0].adapter })
        let m = await cache.metrics()
        XCTAssertEqual(m.fetch.count, 1)
        XCTAssertEqual(m.decode.count, 1)
        XCTAssertEqual(m.activeLeases, 8)
    }

    func testProgressIsReported() async throws {
        let (cache, _) = try cache()
        let seen = Locked<[FetchProgress]>([])
        _ = try await cache.pull(AdapterReference("a")) { p in seen.mutate { $0.append(p) } }
        let last = try XCTUnwrap(seen.value.last)
        XCTAssertEqual(last.bytes, last.total)
        XCTAssertGreaterThan(last.bytesPerSecond, 0)
    }

    func testNotFoundIsNotRetried() async throws {
        let (cache, _) = try cache()
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("missing")) }) {
            if case .notFound(let url) = $0 { return url.hasSuffix("/missing/index.json") }
            return false
        }
        XCTAssertEqual(server.count("/missing/index.json"), 1)
    }

    func testServerErrorsAreRetriedWithBackoffThenReported() async throws {
        let (cache, _) = try cache { $0.fetch.maxAttempts = 3 }
        server.enqueue("/a/index.json", .status(500), .status(503))
        let lease = try await cache.acquire(AdapterReference("a"))  // third attempt succeeds
        XCTAssertEqual(lease.name, "a")
        XCTAssertEqual(server.count("/a/index.json"), 3)

        let (other, _) = try self.cache { $0.fetch.maxAttempts = 2 }
        server.enqueue("/a/1.tar.zst", .status(500), .status(500))
        await XCTAssertAdapterErrorAsync({ try await other.acquire(AdapterReference("a")) }) {
            if case .http(_, let s) = $0 { return s == 500 }
            return false
        }
    }

    func testSlowServerTimesOut() async throws {
        let (cache, config) = try cache { $0.fetch.readTimeout = 0.4; $0.fetch.maxAttempts = 1 }
        server.enqueue("/a/1.tar.zst", .stall(seconds: 5))
        let start = Date()
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("a")) }) {
            if case .timeout = $0 { return true }
            return false
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 4)
        XCTAssertEqual(fixture.blobs(config), [])
    }

    func testInterruptedDownloadResumesWithRange() async throws {
        let size = Int(try FileManager.default.attributesOfItem(atPath: fixture.artifactPath("a", "1"))[.size] as! NSNumber)
        let (cache, _) = try cache()
        server.enqueue("/a/1.tar.zst", .cutAfter(size / 2))
        let lease = try await cache.acquire(AdapterReference("a"))
        XCTAssertEqual(lease.adapter.layerCount, 6)
        let artifactRequests = server.requests.filter { $0.path == "/a/1.tar.zst" }
        XCTAssertEqual(artifactRequests.count, 2)
        XCTAssertNil(artifactRequests[0].range)
        let resumedAt = try XCTUnwrap(artifactRequests[1].range.flatMap { Int($0.dropFirst(6).dropLast()) })
        XCTAssertGreaterThan(resumedAt, 0)
        XCTAssertLessThanOrEqual(resumedAt, size / 2)
    }

    func testServerIgnoringRangeRestartsFromZero() async throws {
        let size = Int(try FileManager.default.attributesOfItem(atPath: fixture.artifactPath("a", "1"))[.size] as! NSNumber)
        let (cache, _) = try cache()
        server.enqueue("/a/1.tar.zst", .cutAfter(size / 3), .ignoreRange)
        let lease = try await cache.acquire(AdapterReference("a"))
        XCTAssertEqual(lease.version, "1")
    }

    func testDownloadCutShortEveryTimeFailsAndCachesNothing() async throws {
        let size = Int(try FileManager.default.attributesOfItem(atPath: fixture.artifactPath("a", "1"))[.size] as! NSNumber)
        let (cache, config) = try cache { $0.fetch.maxAttempts = 2 }
        // The second attempt resumes from the first's bytes and is cut again before the end.
        server.enqueue("/a/1.tar.zst", .cutAfter(size / 4), .cutAfter(size / 4))
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("a")) }) {
            switch $0 {
            case .network, .truncatedDownload: return true
            default: return false
            }
        }
        XCTAssertEqual(fixture.blobs(config), [])
        let listed = await cache.list()
        XCTAssertTrue(listed.isEmpty)
    }

    func testTamperedBytesOverHTTPAreRefused() async throws {
        let path = fixture.artifactPath("a", "1")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[100] ^= 1
        try bytes.write(to: URL(fileURLWithPath: path))
        let (cache, config) = try cache()
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("a")) }) {
            if case .digestMismatch = $0 { return true }
            return false
        }
        XCTAssertEqual(fixture.blobs(config), [])
        XCTAssertEqual(fixture.temps(config), [])
    }
}

/// A value behind a lock, for collecting callbacks in tests.
final class Locked<T>: @unchecked Sendable {
    private var v: T
    private let lock = NSLock()
    init(_ v: T) { self.v = v }
    var value: T { lock.lock(); defer { lock.unlock() }; return v }
    func mutate(_ f: (inout T) -> Void) { lock.lock(); f(&v); lock.unlock() }
}
