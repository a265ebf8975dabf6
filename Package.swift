// swift-tools-version:6.0
import PackageDescription
import Foundation

// The C kernels are compiled with optimisation even in debug builds: the real-model tests run
// through them, and unoptimised C is an order of magnitude slower. ISA-specific code is enabled
// per function with __attribute__((target(...))), never for the whole target, so the binary still
// runs on any x86-64 / aarch64 CPU and picks its variant at start-up.
let kernelFlags: [CSetting] = [.unsafeFlags(["-O3", "-fno-math-errno", "-fno-trapping-math"])]

let package = Package(
    name: "edge-runtime",
    products: [
        .executable(name: "edgectl", targets: ["edgectl"]),
        .executable(name: "edge-runtimed", targets: ["edge-runtimed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.24.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.24.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // System libraries (Debian: apt-get install libzstd-dev libopenblas-dev libsystemd-dev pkg-config).
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),

        .target(name: "Kernels", cSettings: kernelFlags, linkerSettings: [.linkedLibrary("pthread"), .linkedLibrary("m")]),
        .target(
            name: "AdapterCache",
            dependencies: [
                "CZstd",
                // The RAM tier holds adapters in the kernels' int8 form (ek_lora_quantize_rows).
                "Kernels",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "EdgeRuntime",
            dependencies: [
                "Kernels", "AdapterCache", "COpenBLAS", "CSystemd", "CZstd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .executableTarget(
            name: "edgectl",
            dependencies: [
                "EdgeRuntime", "AdapterCache",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "edge-runtimed",
            dependencies: [
                "EdgeRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .testTarget(name: "KernelsTests", dependencies: ["Kernels"]),
        // Test fixtures rebuilt at test time instead of tracked (FixtureAdapterA: PEFT adapter `a`).
        .target(name: "PEFTFixtures", path: "Tests/Support/PEFTFixtures"),
        .testTarget(
            name: "AdapterCacheTests",
            dependencies: [
                "AdapterCache", "PEFTFixtures",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "EdgeRuntimeTests",
            dependencies: [
                "EdgeRuntime", "Kernels", "AdapterCache", "PEFTFixtures",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // Reliability tests: signing keys for the trust checks, the router's route list.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "edgectlTests", dependencies: ["edgectl"]),

        // Bytes → parser entry points shared by the libFuzzer binary and the regression replay tests
        // (Tests/Fuzz/README.md). Built in every configuration so the replay runs in the normal suite.
        .target(
            name: "FuzzEntryPoints",
            dependencies: [
                "AdapterCache", "EdgeRuntime",
                .product(name: "HummingbirdCore", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "FuzzEntryPointsTests", dependencies: ["FuzzEntryPoints"], path: "Tests/Fuzz/FuzzEntryPointsTests"),
    ]
)

// Fuzzing (scripts/fuzz sets EDGE_FUZZ=1). Only then does the `edge-fuzz` libFuzzer binary exist, and
// only then are the parser modules compiled with coverage instrumentation (+ AddressSanitizer unless
// EDGE_FUZZ_SANITIZERS says otherwise). The flags go on our own targets rather than the command line so
// dependencies (NIO, Hummingbird, crypto...) keep their ordinary build and a warm build dir stays warm.
if ProcessInfo.processInfo.environment["EDGE_FUZZ"] == "1" {
    let sanitizers = ProcessInfo.processInfo.environment["EDGE_FUZZ_SANITIZERS"] ?? "fuzzer,address"
    let instrument: [SwiftSetting] = [.unsafeFlags(["-sanitize=\(sanitizers)"])]
    for target in package.targets where ["AdapterCache", "EdgeRuntime", "FuzzEntryPoints"].contains(target.name) {
        target.swiftSettings = (target.swiftSettings ?? []) + instrument
    }
    package.targets.append(.executableTarget(
        name: "edge-fuzz",
        dependencies: ["FuzzEntryPoints"],
        path: "Sources/FuzzDriver",
        swiftSettings: [.unsafeFlags(["-sanitize=\(sanitizers)", "-parse-as-library"])],
        linkerSettings: [.unsafeFlags(["-sanitize=\(sanitizers)"])]
    ))
    package.products.append(.executable(name: "edge-fuzz", targets: ["edge-fuzz"]))
}
