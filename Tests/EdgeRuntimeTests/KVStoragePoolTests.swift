@testable import EdgeRuntime
import Foundation
import XCTest

/// Freed caches' address ranges are reused by the next caches of the model (no page faults for the
/// positions written before), within the pool's bounds, and a reused range computes exactly what a
/// fresh one does.
final class KVStoragePoolTests: XCTestCase {
    func testAFreedCacheRangeIsReusedAndComputesTheSame() throws {
        let weights = try EngineTestModel.weights()
        let hp = weights.hyperparameters
        let prompt: [Int32] = [504, 3458, 282, 4649, 314, 28, 29, 30, 31, 32]
        for kv in SequenceCache.Precision.allCases {
            let model = LlamaModel(weights: weights, activations: .f32, kvPrecision: kv)
            let fresh = SequenceCache(hyperparameters: hp, capacity: 16, precision: kv)   // no pool
            let expected = try model.forward([.init(cache: fresh, tokens: prompt, logits: .all)])[0]

            var first: SequenceCache? = model.makeCache(capacity: 16, reserve: 32)
            _ = try model.forward([.init(cache: first!, tokens: prompt, logits: .none)])
            XCTAssertEqual(model.kvPool.heldBytes, 0, "a live cache's range is not in the pool")
            first = nil
            let perPosition = SequenceCache.bytesPerPosition(hyperparameters: hp, precision: kv)
            XCTAssertEqual(model.kvPool.heldBytes, prompt.count * perPosition, "the freed range is kept with its written positions")

            let second = model.makeCache(capacity: 16)
            XCTAssertEqual(model.kvPool.heldBytes, 0, "the next cache took it")
            XCTAssertEqual(second.reservedCapacity, 32, "laid out over the whole reused range")
            XCTAssertEqual(second.byteCount, model.kvBytes(positions: 16), "charged for its capacity, not the range")
            XCTAssertEqual(second.length, 0)
            let got = try model.forward([.init(cache: second, tokens: prompt, logits: .all)])[0]
            XCTAssertEqual(got, expected, "a reused \(kv) range changed the logits")

            // Too small a range is not taken: a larger cache gets a fresh one.
            let third = model.makeCache(capacity: 48)
            XCTAssertEqual(third.reservedCapacity, 48)
        }
    }

    func testThePoolKeepsAtMostItsEntriesAndBytes() {
        let regions = 4, rowBytes = 4096
        func storage(rows: Int) -> KVStorage { KVStorage(byteCount: regions * rows * rowBytes, lazy: true) }
        let pool = KVStoragePool(maxEntries: 2, maxBytes: 6 * regions * rowBytes)
        pool.give(storage(rows: 8), regions: regions, regionBytes: 8 * rowBytes, writtenBytes: 4 * rowBytes)
        XCTAssertEqual(pool.heldBytes, 4 * regions * rowBytes)
        // Only 2 more rows per region fit the byte bound: the rest is handed back.
        pool.give(storage(rows: 8), regions: regions, regionBytes: 8 * rowBytes, writtenBytes: 8 * rowBytes)
        XCTAssertEqual(pool.heldBytes, 6 * regions * rowBytes)
        // A third range is over the entry bound: unmapped, not kept.
        pool.give(storage(rows: 16), regions: regions, regionBytes: 16 * rowBytes, writtenBytes: 1 * rowBytes)
        XCTAssertEqual(pool.heldBytes, 6 * regions * rowBytes)
        XCTAssertNil(pool.take(bytes: regions * 16 * rowBytes, regions: regions, rowBytes: rowBytes, keepRows: 16), "none is large enough")
        // An ordinary (not lazily mapped) allocation is never kept.
        let plain = KVStorage(byteCount: 1024, lazy: false)
        XCTAssertFalse(plain.isLazy)
        let taken = pool.take(bytes: regions * 8 * rowBytes, regions: regions, rowBytes: rowBytes, keepRows: 1)
        XCTAssertNotNil(taken)
        XCTAssertEqual(pool.heldBytes, 2 * regions * rowBytes, "one range left")
        // The taker keeps one row per region: the rest of what it held reads as zero (handed back).
        let pages = taken!.base.assumingMemoryBound(to: UInt8.self)
        pages[0] = 7
        pages[rowBytes] = 9   // row 1 of region 0: written again after the hand-back
        XCTAssertEqual(pages[0], 7)
        pool.give(plain, regions: 1, regionBytes: 1024, writtenBytes: 1024)
        XCTAssertEqual(pool.heldBytes, 2 * regions * rowBytes, "an ordinary allocation is not kept")
    }
}
