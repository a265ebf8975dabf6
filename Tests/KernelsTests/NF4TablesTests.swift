import Kernels
import XCTest

final class NF4TablesTests: XCTestCase {
    func testCodesAscendAndZeroIsCode7() {
        let codes = withUnsafeBytes(of: ek_nf4_code_bits) { Array($0.bindMemory(to: UInt32.self)) }.map(Float.init(bitPattern:))
        XCTAssertEqual(codes.count, 16)
        XCTAssertEqual(codes[7], 0)
        XCTAssertEqual(codes.first, -1)
        XCTAssertEqual(codes.last, 1)
        for i in 1..<16 { XCTAssertLessThan(codes[i - 1], codes[i]) }
    }
}
