import Foundation
import Kernels
import XCTest

/// Variant selection, the start-up line, the thread setting, and the aarch64 build of the NEON code.
final class DispatchTests: XCTestCase {
    func testDescriptionNamesTheActiveVariant() {
        let line = String(cString: ek_dispatch_description())
        let name = String(cString: ek_variant_name())
        XCTAssertTrue(line.contains("variant=\(name)"), line)
        XCTAssertTrue(line.contains("threads="), line)
        XCTAssertEqual(ek_variant_supported("scalar"), 1)
        XCTAssertEqual(ek_variant_supported("sse9"), 0)
        XCTAssertEqual(ek_set_variant("sse9"), Int32(EK_ERR_VARIANT))
        XCTAssertEqual(String(cString: ek_variant_name()), name, "a refused variant leaves the active one")
    }

    func testThreadSettingAndResultsIndependentOfThreads() {
        let t = NF4TestMatrix(rows: 576, cols: 576, seed: 3)
        var rng = SplitMix(seed: 4)
        let x = rng.floats(2 * 576)
        var m = t.matrix
        func run() -> [Float] {
            var y = [Float](repeating: 0, count: 2 * 576)
            XCTAssertEqual(ek_nf4_gemv(&m, x, 2, 576, &y, 576, 0), Int32(EK_OK))
            return y
        }
        ek_set_threads(1)
        XCTAssertEqual(ek_threads(), 1)
        let one = run()
        ek_set_threads(3)
        XCTAssertEqual(ek_threads(), 3)
        XCTAssertEqual(run(), one, "each output is computed by one thread in a fixed order")
        ek_set_threads(0)
        XCTAssertEqual(Int(ek_threads()), sysconf(Int32(_SC_NPROCESSORS_ONLN)), "default = online cores")
    }

    /// The NEON kernels must compile for aarch64, and match scalar when run under qemu-aarch64.
    func testNeonSourcesCompileForAarch64() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [root.appendingPathComponent("scripts/check-neon").path, "--run"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, String(decoding: data, as: UTF8.self))
    }
}
