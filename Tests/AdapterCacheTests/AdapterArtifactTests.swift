@testable import AdapterCache
import Crypto
import Foundation
import XCTest

final class AdapterArtifactTests: XCTestCase {
    func testPackedArtifactRoundTripsTheFixtureBitForBit() throws {
        let dir = TestSupport.tempDir("pack")
        let out = dir + "/a.tar.zst"
        let manifest = try TestSupport.pack(TestSupport.fixtureA, to: out, name: "a", version: "1.0", base: TestSupport.digestA)
        XCTAssertEqual(manifest.rank, 8)
        XCTAssertEqual(manifest.alpha, 16)
        XCTAssertEqual(manifest.targets.count, 7)
        XCTAssertEqual(manifest.contentSHA256, try FileDigest.sha256(file: TestSupport.fixtureA + "/adapter_model.safetensors"))

        let artifact = try AdapterArtifact.open(path: out)
        XCTAssertTrue(artifact.isPlaneEncoded)
        XCTAssertEqual(artifact.manifest, manifest)
        XCTAssertEqual(artifact.safetensorsData(), try Data(contentsOf: URL(fileURLWithPath: TestSupport.fixtureA + "/adapter_model.safetensors")))
        try artifact.verifyContent()
        let fromArtifact = try artifact.decode()
        let direct = try LoRAAdapterDecoder.load(directory: TestSupport.fixtureA)
        XCTAssertEqual(fromArtifact.modules, direct.modules)
        XCTAssertEqual(memcmp(fromArtifact.storage, direct.storage, direct.byteCount), 0)
        // A plain tar extracts it (the container is an ordinary ustar inside zstd).
        try TestSupport.run(["tar", "--zstd", "-xf", out, "-C", dir])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/manifest.json"))
    }

    func testHandPackedTarIsAccepted() throws {
        let dir = TestSupport.tempDir("hand")
        let peft = dir + "/peft"
        let written = try TestSupport.writePEFT(peft, modules: TestSupport.llamaModules(layers: 2, dtype: .f16))
        try "# readme".write(toFile: peft + "/README.md", atomically: true, encoding: .utf8)
        try TestSupport.run(["tar", "--zstd", "-cf", dir + "/x.tar.zst", "-C", peft, "."])
        let artifact = try AdapterArtifact.open(path: dir + "/x.tar.zst")
        XCTAssertNil(artifact.manifest)
        XCTAssertFalse(artifact.isPlaneEncoded)
        let adapter = try artifact.decode()
        let m = try XCTUnwrap(adapter.module(layer: 1, projection: .down))
        XCTAssertEqual(Array(adapter.b(m)), written[m.keyB]!.map { Float(Float16($0)) })
    }

    func testUnsafeArchivesAreRefused() throws {
        let dir = TestSupport.tempDir("unsafe")
        let peft = dir + "/peft"
        try TestSupport.writePEFT(peft, modules: TestSupport.llamaModules(layers: 1))
        let config = try Data(contentsOf: URL(fileURLWithPath: peft + "/adapter_config.json"))
        let weights = try Data(contentsOf: URL(fileURLWithPath: peft + "/adapter_model.safetensors"))

        func archive(_ members: [(String, Data)]) throws -> Data {
            let tar = TarArchive.write(members, mtime: 0)
            return try tar.withUnsafeBytes { try Zstd.compress($0, level: 1, label: "t") }
        }
        func open(_ data: Data, limits: ArtifactLimits = ArtifactLimits()) throws -> AdapterArtifact {
            try data.withUnsafeBytes { try AdapterArtifact.open(compressed: $0, label: "test.tar.zst", limits: limits) }
        }
        for bad in ["../adapter_config.json", "/etc/adapter_config.json", "x/../../adapter_model.safetensors"] {
            let data = try archive([(bad, config), ("adapter_model.safetensors", weights)])
            XCTAssertAdapterError(try open(data)) {
                if case .unsafeMember(_, let m, _) = $0 { return m == bad }
                return false
            }
        }
        // A symlink member (made by GNU tar).
        let linkDir = dir + "/link"
        try FileManager.default.createDirectory(atPath: linkDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: peft + "/adapter_config.json", toPath: linkDir + "/adapter_config.json")
        try FileManager.default.createSymbolicLink(atPath: linkDir + "/adapter_model.safetensors", withDestinationPath: "/etc/passwd")
        try TestSupport.run(["tar", "--zstd", "-cf", dir + "/link.tar.zst", "-C", linkDir, "."])
        XCTAssertAdapterError(try AdapterArtifact.open(path: dir + "/link.tar.zst")) {
            if case .unsafeMember(_, let m, let r) = $0 { return m.hasSuffix("adapter_model.safetensors") && r.contains("links") }
            return false
        }
        // Duplicate member, oversized member, missing member.
        XCTAssertAdapterError(try open(try archive([("adapter_config.json", config), ("adapter_config.json", config), ("adapter_model.safetensors", weights)]))) {
            if case .unsafeMember(_, _, let r) = $0 { return r.contains("twice") }
            return false
        }
        var small = ArtifactLimits()
        small.maxMemberBytes = weights.count - 1
        XCTAssertAdapterError(try open(try archive([("adapter_config.json", config), ("adapter_model.safetensors", weights)]), limits: small)) {
            if case .tooLarge(_, let w, _) = $0 { return w.contains("adapter_model.safetensors") }
            return false
        }
        XCTAssertAdapterError(try open(try archive([("adapter_config.json", config)]))) {
            if case .badArchive(_, let r) = $0 { return r.contains("adapter_model.safetensors") }
            return false
        }
        // Truncated compressed stream.
        let whole = try archive([("adapter_config.json", config), ("adapter_model.safetensors", weights)])
        XCTAssertAdapterError(try open(whole.prefix(whole.count / 2))) {
            if case .zstd = $0 { return true }
            return false
        }
    }

    func testZstdBombIsRefusedBeforeAllocation() throws {
        let zeros = Data(count: 64 << 20)
        let bomb = try zeros.withUnsafeBytes { try Zstd.compress($0, level: 3, label: "bomb") }
        XCTAssertLessThan(bomb.count, 1 << 20)
        // The compression-ratio cap stops it first, at the 4 MiB floor…
        XCTAssertAdapterError(try bomb.withUnsafeBytes { try AdapterArtifact.open(compressed: $0, label: "bomb") }) {
            if case .tooLarge(let p, let what, let l) = $0 { return p == "bomb" && l == 4 << 20 && what.contains("zstd bomb") }
            return false
        }
        // …and without it the absolute cap does.
        var limits = ArtifactLimits()
        limits.maxCompressionRatio = Int.max
        limits.maxDecompressedBytes = 8 << 20
        XCTAssertAdapterError(try bomb.withUnsafeBytes { try AdapterArtifact.open(compressed: $0, label: "bomb", limits: limits) }) {
            if case .tooLarge(let p, _, let l) = $0 { return p == "bomb" && l == 8 << 20 }
            return false
        }
        // Same through the streaming path (frames without a declared size, as `zstd` writes from a pipe).
        let streamed = try Self.zstdCLI(zeros.prefix(32 << 20))
        XCTAssertAdapterError(try streamed.withUnsafeBytes { try Zstd.decompress($0, limit: 8 << 20, label: "bomb2") }) {
            if case .tooLarge = $0 { return true }
            return false
        }
    }

    static func zstdCLI(_ data: Data) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["zstd", "-q", "-c"]
        let inPipe = Pipe(), outPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        try p.run()
        DispatchQueue.global().async {
            inPipe.fileHandleForWriting.write(data)
            try? inPipe.fileHandleForWriting.close()
        }
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return out
    }

    func testBytePlaneCodecRoundTripsMixedDtypesAndGaps() throws {
        let infos = [
            SafetensorsTensorInfo(name: "a", dtype: .f32, shape: [3], byteRange: 0..<12),
            SafetensorsTensorInfo(name: "b", dtype: .u8, shape: [5], byteRange: 12..<17),
            SafetensorsTensorInfo(name: "c", dtype: .f16, shape: [4], byteRange: 20..<28),  // 3-byte gap before
            SafetensorsTensorInfo(name: "d", dtype: .bf16, shape: [2], byteRange: 28..<32),
            SafetensorsTensorInfo(name: "e", dtype: .f64, shape: [1], byteRange: 32..<40),
        ]
        let length = 43  // 3 trailing bytes no tensor covers
        let original = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 73 &+ 5) }
        let codec = BytePlaneCodec(tensors: infos, dataLength: length)
        var encoded = [UInt8](repeating: 0, count: length), decoded = [UInt8](repeating: 0, count: length)
        original.withUnsafeBytes { src in encoded.withUnsafeMutableBytes { codec.encode(src.baseAddress!, into: $0.baseAddress!) } }
        XCTAssertNotEqual(encoded, original)
        // The f32 group leads: byte 0 of all three elements first.
        XCTAssertEqual(Array(encoded[8..<11]), [original[0], original[4], original[8]])
        encoded.withUnsafeBytes { src in decoded.withUnsafeMutableBytes { codec.decode(src.baseAddress!, into: $0.baseAddress!) } }
        XCTAssertEqual(decoded, original)
    }

    func testSignaturesCoverNameVersionBaseAndContent() throws {
        let key = Curve25519.Signing.PrivateKey()
        let other = Curve25519.Signing.PrivateKey()
        let dir = TestSupport.tempDir("sig")
        let m = try TestSupport.pack(TestSupport.fixtureA, to: dir + "/a.tar.zst", name: "a", version: "2", base: TestSupport.digestA, key: key)
        let sig = try XCTUnwrap(m.signature)
        try sig.verify(m.signedStatement, trusted: [key.publicKey], what: "a@2")
        XCTAssertAdapterError(try sig.verify(m.signedStatement, trusted: [other.publicKey], what: "a@2")) {
            if case .untrustedKey = $0 { return true }
            return false
        }
        var renamed = m.signedStatement
        renamed.version = "3"
        XCTAssertAdapterError(try sig.verify(renamed, trusted: [], what: "a@3")) {
            if case .badSignature = $0 { return true }
            return false
        }
        var rebased = m.signedStatement
        rebased.baseModel = TestSupport.digestB
        XCTAssertAdapterError(try sig.verify(rebased, trusted: [key.publicKey], what: "a@2")) {
            if case .badSignature = $0 { return true }
            return false
        }
    }

    func testKeyFilesRoundTrip() throws {
        let dir = TestSupport.tempDir("keys")
        let pub = try SigningKeys.generate(path: dir + "/k")
        let priv = try SigningKeys.loadPrivate(path: dir + "/k")
        XCTAssertEqual(priv.publicKey.rawRepresentation.base64EncodedString(), pub)
        XCTAssertEqual(try SigningKeys.publicKey(dir + "/k.pub").rawRepresentation, priv.publicKey.rawRepresentation)
        var st = stat()
        XCTAssertEqual(stat(dir + "/k", &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        XCTAssertAdapterError(try SigningKeys.generate(path: dir + "/k")) { if case .io = $0 { return true }; return false }
        XCTAssertAdapterError(try SigningKeys.publicKey("not-a-key")) { if case .badKey = $0 { return true }; return false }
    }
}
