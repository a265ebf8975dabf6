import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The uid/gid/pid of the process at the other end of a Unix socket connection, read with
/// SO_PEERCRED (the kernel's record of who connected, not something the client can claim).
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    /// Unknown peer (the credentials could not be read): no uid matches it, so it is refused.
    public static let unknown = PeerCredentials(pid: 0, uid: UInt32.max, gid: UInt32.max)

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "uid=\(uid) gid=\(gid) pid=\(pid)" }

    /// Layout of Linux's `struct ucred`, which Swift's Glibc module does not import.
    struct UCred: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    /// Reads the credentials of a connected Unix socket channel.
    public static func of(_ channel: any Channel) async -> PeerCredentials {
        guard let provider = channel as? any SocketOptionProvider else { return .unknown }
        do {
            let cred: UCred = try await provider.unsafeGetSocketOption(
                level: .socket, name: NIOBSDSocket.Option(rawValue: SO_PEERCRED)
            ).get()
            return PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
        } catch {
            return .unknown
        }
    }
}
