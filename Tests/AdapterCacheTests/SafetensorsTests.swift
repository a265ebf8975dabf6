@testable import AdapterCache
import Foundation
import XCTest

final class SafetensorsTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func write(_ bytes: [UInt8], _ name: String = "t.safetensors") -> String {
        let p = dir.appendingPathComponent(name).path
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    private func file(header: String, data: [UInt8]) -> [UInt8] {
        let h = Array(header.utf8)
        return withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) } + h + data
    }

    func testRoundTripThroughWriterAndMappedReader() throws {
        var w = SafetensorsWriter(metadata: ["format": "pt"])
        w.add("a.weight", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let half: [UInt16] = [Float16(1.5).bitPattern, Float16(-2).bitPattern]
        w.add("b", dtype: .f16, shape: [2], bytes: half.withUnsafeBytes { Data($0) })
        w.add("c", dtype: .bf16, shape: [1], bytes: withUnsafeBytes(of: FloatConversion.bfloat16Bits(3.0)) { Data($0) })
        let path = dir.appendingPathComponent("rt.safetensors").path
        try w.write(to: path)

        let f = try SafetensorsFile(path: path)
        XCTAssertEqual(f.metadata, ["format": "pt"])
        XCTAssertEqual(f.dataOffset % 8, 0)
        XCTAssertEqual(f.namesInFileOrder, ["a.weight", "b", "c"])
        XCTAssertEqual(try f.floats("a.weight"), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try f.info("a.weight").shape, [2, 3])
        XCTAssertEqual(try f.floats("b"), [1.5, -2])
        XCTAssertEqual(try f.floats("c"), [3])
        XCTAssertEqual(try SafetensorsFile(data: try w.serialized(), label: "mem").floats("a.weight"), [1, 2, 3, 4, 5, 6])
    }

    func testReadsFixtureWrittenByPythonSafetensors() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/nf4/odd_5x13_bs64_nodq.safetensors")
        let f = try SafetensorsFile(path: fixture.path)
        XCTAssertEqual(try f.info("input").shape, [5, 13])
        XCTAssertEqual(try f.floats("input").count, 65)
    }

    func testRejectsMalformedFiles() {
        func expectError(_ bytes: [UInt8], _ check: (SafetensorsError) -> Bool, line: UInt = #line) {
            let p = write(bytes)
            do {
                _ = try SafetensorsFile(path: p)
                XCTFail("accepted a bad file", line: line)
            } catch {
                XCTAssertTrue(check(error), "unexpected error \(error)", line: line)
                XCTAssertTrue(error.description.contains(p), "error does not name the file: \(error)", line: line)
            }
        }
        func isTruncated(_ e: SafetensorsError) -> Bool { if case .truncated = e { return true }; return false }
        func isBadHeader(_ e: SafetensorsError) -> Bool { if case .badHeader = e { return true }; return false }
        func isBadTensor(_ e: SafetensorsError) -> Bool { if case .badTensor = e { return true }; return false }

        expectError([1, 2, 3], isTruncated)
        expectError(withUnsafeBytes(of: UInt64(1000).littleEndian) { Array($0) } + Array("{}".utf8), isTruncated)
        expectError(withUnsafeBytes(of: UInt64.max.littleEndian) { Array($0) }, isBadHeader)
        expectError(file(header: "{not json", data: []), isBadHeader)
        expectError(file(header: "[1,2]", data: []), isBadHeader)
        expectError([2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe], isBadHeader) // invalid UTF-8
        expectError(file(header: #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0]), isTruncated)
        expectError(file(header: #"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)), isBadTensor)
        expectError(file(header: #"{"t":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)), isBadTensor)
        expectError(file(header: #"{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)), isBadTensor)
        expectError(file(header: #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: Array(repeating: 0, count: 8)), isBadTensor)
        expectError(file(header: #"{"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)), isBadTensor)
        expectError(file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                         data: Array(repeating: 0, count: 12)), isBadTensor)
    }

    func testMissingFileIsAnIOError() {
        XCTAssertThrowsError(try SafetensorsFile(path: dir.appendingPathComponent("none").path)) { error in
            guard case .io = error as? SafetensorsError else { return XCTFail("\(error)") }
        }
    }
}
