import EdgeRuntime
import XCTest

final class RuntimePathsTests: XCTestCase {
    func testPrecedence() {
        XCTAssertEqual(RuntimePaths.socketPath(explicit: "/x.sock", environment: ["EDGE_SOCKET": "/y"], isRoot: false), "/x.sock")
        XCTAssertEqual(RuntimePaths.socketPath(environment: ["EDGE_SOCKET": "/y", "XDG_RUNTIME_DIR": "/run/user/1"], isRoot: false), "/y")
        XCTAssertEqual(RuntimePaths.socketPath(environment: ["XDG_RUNTIME_DIR": "/run/user/1"], isRoot: false), "/run/user/1/edge-runtime/edge.sock")
        XCTAssertEqual(RuntimePaths.socketPath(environment: ["XDG_RUNTIME_DIR": "/run/user/0"], isRoot: true), RuntimePaths.systemSocket)
    }
}
