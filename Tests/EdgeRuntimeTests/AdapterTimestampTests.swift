@testable import EdgeRuntime
import XCTest

/// `created` of adapters in /v1/models and /v1/adapters comes from the cache's ISO 8601 stamps,
/// which the cache writes with milliseconds and hand-made indexes write without.
final class AdapterTimestampTests: XCTestCase {
    func testCacheTimestampsBecomeUnixSeconds() {
        XCTAssertEqual(EngineBackend.unixTime(iso8601: "2026-11-22T21:53:07.123Z"), 1_795_384_387)
        XCTAssertEqual(EngineBackend.unixTime(iso8601: "2026-11-22T21:53:07Z"), 1_795_384_387)
        XCTAssertEqual(EngineBackend.unixTime(iso8601: "2026-11-22T22:53:07+01:00"), 1_795_384_387)
        XCTAssertEqual(EngineBackend.unixTime(iso8601: "yesterday"), 0)
    }
}
