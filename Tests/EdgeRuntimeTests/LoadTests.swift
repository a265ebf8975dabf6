import EdgeRuntime
import Foundation
import XCTest

/// The short CI form of `edgectl bench load`: the unattended mode (`--model`: it starts
/// edge-runtimed with generated adapters) on the tiny fixture model, with more connections than
/// the scheduler admits, so the run must show 429s beyond capacity and nothing worse.
final class LoadTests: XCTestCase {
    func testManyConnectionsGetOnlyOKOr429AndTheDaemonStaysHealthy() throws {
        let dir = try ServingTestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/model"
        _ = try ModelImporter(source: ModelTestSupport.fixture("model/tiny_llama.gguf"), output: model).run()

        // Capacity 4 running + 4 queued against 48 clients: most arrivals find it full.
        let run = try DaemonEdgectlTests.run([
            "bench", "load", "--model", model, "--connections", "48", "--duration", "6s", "--max-tokens", "2-8",
            "--max-running", "4", "--max-queue", "4", "--timeout", "60", "--slow-delay", "0.05", "--json",
        ])
        let report = try XCTUnwrap(try? JSONValue.parse(Array(run.out.utf8)), "no JSON report (exit \(run.status)): \(run.out)\n\(run.err)")
        XCTAssertEqual(run.status, 0, "bench load failed: \(run.out)\n\(run.err)")
        let outcomes = try XCTUnwrap(report["outcomes"])
        func count(_ k: String) -> Int64 { outcomes[k]?.intValue ?? -1 }
        XCTAssertGreaterThan(count("ok"), 0, run.out)
        XCTAssertGreaterThan(count("429"), 0, "48 clients against capacity 8 must see 429s: \(run.out)")
        for bad in ["5xx", "stream_error", "connection_error", "timeout", "other_4xx"] {
            XCTAssertEqual(count(bad), 0, "\(bad): \(run.out)")
        }
        XCTAssertEqual(report["daemon_alive"], true)
        XCTAssertEqual(report["healthy_after"], true)
        XCTAssertEqual(report["models"]?.arrayValue?.count, 3, "base and two generated adapters: \(run.out)")
        let start = try XCTUnwrap(report["rss_start_bytes"]?.intValue), end = try XCTUnwrap(report["rss_end_bytes"]?.intValue)
        XCTAssertGreaterThan(start, 0)
        // The tiny model's KV and adapters are a few MiB; connections must not pile memory up.
        XCTAssertLessThan(end - start, 96 << 20, "RSS grew from \(start) to \(end) bytes over a 6 s run")
        // Every connection was closed again (the daemon holds a handful of fds at rest).
        XCTAssertLessThan(try XCTUnwrap(report["open_fds_after"]?.doubleValue), 40, run.out)
        // Cancelled and finished sequences gave their KV back.
        XCTAssertEqual(report["kv_bytes_after"]?.doubleValue, 0, run.out)
        XCTAssertEqual(report["sequences_after"]?.doubleValue, 0, run.out)
    }

    func testBadArgumentsAreUsageErrors() throws {
        let r = try DaemonEdgectlTests.run(["bench", "load", "--duration", "soon", "--socket", "/nonexistent.sock"])
        XCTAssertEqual(r.status, 64, r.err)
        XCTAssertTrue(r.err.contains("--duration"), r.err)
        let m = try DaemonEdgectlTests.run(["bench", "load", "--max-tokens", "9-3", "--socket", "/nonexistent.sock"])
        XCTAssertEqual(m.status, 64, m.err)
        let unreachable = try DaemonEdgectlTests.run(["bench", "load", "--socket", "/nonexistent/edge.sock", "--duration", "1s"])
        XCTAssertEqual(unreachable.status, 3, unreachable.err)
        XCTAssertTrue(unreachable.err.contains("not running"), unreachable.err)
    }
}
