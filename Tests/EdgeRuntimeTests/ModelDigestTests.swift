import AdapterCache
@testable import EdgeRuntime
import Foundation
import XCTest

final class ModelDigestTests: XCTestCase {
    func testDigestIsTheFileSHA256AndTheSidecarNeverOutlivesAChange() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("digest-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/model.safetensors"
        FileManager.default.createFile(atPath: file, contents: Data("first weights".utf8))

        let first = try ModelDigest.of(path: dir)
        XCTAssertEqual(first, try FileDigest.sha256(file: file))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + ModelDigest.sidecarName))
        XCTAssertEqual(try ModelDigest.of(path: file), first, "the file path and the directory name the same model")

        // A forged sidecar for other content is ignored once the file's size or mtime differs.
        FileManager.default.createFile(atPath: file, contents: Data("second, longer weights".utf8))
        let second = try ModelDigest.of(path: dir)
        XCTAssertEqual(second, try FileDigest.sha256(file: file))
        XCTAssertNotEqual(first, second)

        XCTAssertThrowsError(try ModelDigest.of(path: dir + "/missing"))
    }
}
