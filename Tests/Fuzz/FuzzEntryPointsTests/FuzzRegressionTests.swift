import FuzzEntryPoints
import Foundation
import XCTest

/// Replays every kept fuzz input through the same entry points the libFuzzer binary calls, in the
/// ordinary (unsanitised, debug) build: Tests/Fuzz/regressions/<target>/* are inputs that once
/// crashed, trapped or hung a parser; Tests/Fuzz/corpus/<target>/* are the seeds. A regression
/// coming back crashes this test process, which fails the suite.
final class FuzzRegressionTests: XCTestCase {
    static let fuzzDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    func inputs(_ kind: String, _ target: FuzzTarget) throws -> [URL] {
        let dir = Self.fuzzDir.appendingPathComponent(kind).appendingPathComponent(target.rawValue)
        guard FileManager.default.fileExists(atPath: dir.path) else { return [] }
        return try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    func testEveryTargetHasSeeds() throws {
        for target in FuzzTarget.allCases {
            XCTAssertFalse(try inputs("corpus", target).isEmpty, "Tests/Fuzz/corpus/\(target.rawValue) has no seed inputs")
        }
    }

    func testRegressionInputsReplayWithoutCrashing() throws {
        var replayed = 0
        for target in FuzzTarget.allCases {
            for url in try inputs("regressions", target) {
                target.run(try Data(contentsOf: url))
                replayed += 1
            }
        }
        XCTAssertGreaterThan(replayed, 0, "Tests/Fuzz/regressions holds no inputs")
    }

    func testSeedCorporaReplayWithoutCrashing() throws {
        for target in FuzzTarget.allCases {
            for url in try inputs("corpus", target) { target.run(try Data(contentsOf: url)) }
        }
    }
}
