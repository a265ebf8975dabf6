@testable import AdapterCache
import XCTest

final class StoreLocationTests: XCTestCase {
    func testURLForms() throws {
        XCTAssertEqual(try StoreLocation("https://cdn.example.com/adapters/"), .http("https://cdn.example.com/adapters"))
        XCTAssertEqual(try StoreLocation("file:///srv/store"), .directory("/srv/store"))
        XCTAssertEqual(try StoreLocation("/srv/store"), .directory("/srv/store"))
        XCTAssertThrowsError(try StoreLocation("ftp://x/y"))
        XCTAssertThrowsError(try StoreLocation(""))
        let a = try AdapterName("sql"), v = try AdapterName("1.2")
        XCTAssertEqual(try StoreLocation("http://h:8080/s").location(a, "\(v).tar.zst"), "http://h:8080/s/sql/1.2.tar.zst")
        XCTAssertEqual(try StoreLocation("/srv/store").location(a, "index.json"), "/srv/store/sql/index.json")
    }

    func testIndexResolvesLatestAndRefusesBadEntries() throws {
        let json = """
        {"name": "sql", "latest": "1.10", "versions": [
          {"version": "1.9", "sha256": "\(String(repeating: "a", count: 64))", "size": 10, "created": "2026-01-01T00:00:00Z"},
          {"version": "1.10", "sha256": "\(String(repeating: "b", count: 64))", "size": 12, "created": "2025-01-01T00:00:00Z"}]}
        """
        let index = try StoreIndex.decode(Data(json.utf8), url: "u", expectedName: AdapterName("sql"))
        XCTAssertEqual(index.resolve(nil)?.version, "1.10")  // the index's own "latest", not the newest date
        XCTAssertEqual(index.resolve("1.9")?.size, 10)
        XCTAssertNil(index.resolve("2"))
        XCTAssertAdapterError(try StoreIndex.decode(Data(json.utf8), url: "u", expectedName: AdapterName("other"))) {
            if case .badIndex(_, let r) = $0 { return r.contains("'sql'") }
            return false
        }
        let evil = json.replacingOccurrences(of: "\"1.9\"", with: "\"../../etc\"")
        XCTAssertAdapterError(try StoreIndex.decode(Data(evil.utf8), url: "u", expectedName: AdapterName("sql"))) {
            if case .badIndex(_, let r) = $0 { return r.contains("not a valid version") }
            return false
        }
    }
}
