import AdapterCache
import XCTest

final class AdapterNameTests: XCTestCase {
    func testAcceptsStoreSafeNames() throws {
        for ok in ["a", "contracts", "sql-v2", "x_1.beta", "0abc"] {
            XCTAssertEqual(try AdapterName(ok).value, ok)
        }
    }

    func testRefusesPathTricksAndBadCharacters() {
        for bad in ["", "..", "../etc", "a/b", "A", ".hidden", "-x", "a..b", "a b", String(repeating: "a", count: 65), "é"] {
            XCTAssertThrowsError(try AdapterName(bad), bad)
        }
    }
}
