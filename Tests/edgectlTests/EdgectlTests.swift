import XCTest

/// Drives the built `edgectl` binary the way a user does.
final class EdgectlHelpTests: XCTestCase {
    func testHelpRuns() throws {
        let result = try EdgectlProcess.run(["--help"])
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.stdout.contains("edgectl"))
    }
}
