import AdapterCache
import XCTest

final class LRUTrackerTests: XCTestCase {
    func testCountsAndBytesFollowEveryOperation() {
        var lru = LRUTracker<String>()
        lru.insert("a", bytes: 10)
        lru.insert("b", bytes: 20)
        lru.insert("c", bytes: 30)
        XCTAssertEqual(lru.count, 3)
        XCTAssertEqual(lru.totalBytes, 60)
        lru.insert("b", bytes: 25)  // replace
        XCTAssertEqual(lru.count, 3)
        XCTAssertEqual(lru.totalBytes, 65)
        XCTAssertEqual(lru.remove("a"), 10)
        XCTAssertNil(lru.remove("a"))
        XCTAssertEqual(lru.totalBytes, 55)
        XCTAssertEqual(lru.count, 2)
    }

    func testVictimsAreLeastRecentlyUsedFirstAndSkipProtected() {
        var lru = LRUTracker<String>()
        for (k, b) in [("a", 10), ("b", 10), ("c", 10), ("d", 10)] { lru.insert(k, bytes: Int64(b)) }
        lru.touch("a")  // order now b, c, d, a
        XCTAssertEqual(lru.orderedKeys, ["b", "c", "d", "a"])
        XCTAssertEqual(lru.victims(toFit: 0, budget: 40, isProtected: { _ in false }), [])
        XCTAssertEqual(lru.victims(toFit: 15, budget: 40, isProtected: { _ in false }), ["b", "c"])
        XCTAssertEqual(lru.victims(toFit: 15, budget: 40, isProtected: { $0 == "b" }), ["c", "d"])
        XCTAssertNil(lru.victims(toFit: 15, budget: 40, isProtected: { $0 != "a" }))
        XCTAssertNil(lru.victims(toFit: 50, budget: 40, isProtected: { _ in false }))
    }

    func testRestoredOrderIsOlderThanNewUse() {
        var lru = LRUTracker<String>()
        lru.restore("old", bytes: 1, order: 5)
        lru.restore("older", bytes: 1, order: 2)
        lru.insert("new", bytes: 1)
        XCTAssertEqual(lru.orderedKeys, ["older", "old", "new"])
    }
}
