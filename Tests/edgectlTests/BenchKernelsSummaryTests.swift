import EdgeRuntime
import Foundation
import XCTest
@testable import edgectl

/// The LoRA ratio lines of `edgectl bench kernels`: f32, f16 and int8 adapter rows each against the
/// base GEMV of the same variant, threads and cache, and the narrow forms against f32.
final class BenchKernelsSummaryTests: XCTestCase {
    func row(_ impl: String, _ t: Int, _ cache: String, us: Double) throws -> KernelBenchmark.Row {
        let json = """
            {"op": "lora", "impl": "\(impl)", "m": 5184, "n": 8, "k": 576, "threads": \(t), "cache": "\(cache)",
             "us": \(us), "gflops": 1, "weight_gbps": 1}
            """
        return try JSONDecoder().decode(KernelBenchmark.Row.self, from: Data(json.utf8))
    }

    func testLoRALinesCompareEachStorageWithTheBaseOfTheSameRun() throws {
        let rows = [
            try row("nf4-avx2-base-7proj", 1, "hot", us: 1000),
            try row("lora-bgmv-avx2", 1, "hot", us: 180),
            try row("lora-bgmv-f16-avx2", 1, "hot", us: 90),
            try row("lora-bgmv-i8-avx2", 1, "hot", us: 60),
            try row("nf4-avx2-base-7proj", 1, "cold", us: 2000),
            try row("lora-bgmv-f16-avx2", 1, "cold", us: 500),
        ]
        let lines = BenchKernelsCommand.summary(rows)
        XCTAssertEqual(lines, [
            "target lora 8 rows x 8 adapters r16 x 7 proj thr=1 hot avx2 f32: 18.0% of base GEMV time",
            "target lora 8 rows x 8 adapters r16 x 7 proj thr=1 hot avx2 f16: 9.0% of base GEMV time (f16 2.00x faster than f32)",
            "target lora 8 rows x 8 adapters r16 x 7 proj thr=1 hot avx2 i8: 6.0% of base GEMV time (i8 3.00x faster than f32)",
            "target lora 8 rows x 8 adapters r16 x 7 proj thr=1 cold avx2 f16: 25.0% of base GEMV time",
        ])
    }
}
