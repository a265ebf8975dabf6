import EdgeRuntime
import Foundation

// The daemon entry point; the server itself lives in EdgeRuntime.
FileHandle.standardError.write(Data("edge-runtimed: socket \(RuntimePaths.socketPath())\n".utf8))
exit(1)
