import FuzzEntryPoints
import Foundation

// The libFuzzer binary (built only with EDGE_FUZZ=1, see Package.swift). One binary serves every
// parser — linking EdgeRuntime once instead of per parser keeps the fuzz build to one link — and the
// parser is chosen by EDGE_FUZZ_TARGET, read once in LLVMFuzzerInitialize. scripts/fuzz sets it.

nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let name = ProcessInfo.processInfo.environment["EDGE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("edge-fuzz: set EDGE_FUZZ_TARGET to one of: \(known) (got '\(name)')\n".utf8))
        exit(2)
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Data(bytes: $0, count: size) } ?? Data()
    selected?.run(bytes)
    return 0
}

// SwiftPM links executables with `main` aliased to `<target>_main` (so tests can link them), which
// keeps libFuzzer's own `main` out of the link; this is that entry point, handing over to libFuzzer's
// driver. (The C signature is `int LLVMFuzzerRunDriver(int *, char ***, int (*)(const uint8_t *, size_t))`;
// pointers and ints pass the same way under the Swift and C conventions on x86-64 and arm64.)
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("edge_fuzz_main")
public func edgeFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector) { data, size in fuzzTestOneInput(data, size) }
}
