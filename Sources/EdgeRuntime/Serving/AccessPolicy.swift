import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Who may do what, from `[auth]`: inference (completions, chat, tokenize, models, listing adapters)
/// and management (pull, evict, pin, fine-tuning). A peer is allowed when its uid is listed, when
/// its primary gid or one of its supplementary groups is listed, or when it is the daemon's own uid
/// (`allow_daemon_user`). SO_PEERCRED only carries the primary gid, so supplementary groups are
/// looked up (getgrouplist) — membership of `edge-runtime` is how users are normally let in.
public struct AccessPolicy: Sendable, Equatable {
    public enum Permission: String, Sendable {
        case inference
        case manage
    }

    public var inferenceUIDs: Set<UInt32>
    public var inferenceGIDs: Set<UInt32>
    public var manageUIDs: Set<UInt32>
    public var manageGIDs: Set<UInt32>
    public var daemonUID: UInt32?

    public init(_ auth: DaemonConfiguration.Auth, daemonUID: UInt32 = getuid()) {
        inferenceUIDs = Set(auth.inferenceUIDs)
        inferenceGIDs = Set(auth.inferenceGIDs)
        manageUIDs = Set(auth.manageUIDs)
        manageGIDs = Set(auth.manageGIDs)
        self.daemonUID = auth.allowDaemonUser ? daemonUID : nil
    }

    public func allows(_ peer: PeerCredentials, _ permission: Permission) -> Bool {
        if peer == .unknown { return false }
        if let d = daemonUID, d == peer.uid { return true }
        let (uids, gids) = permission == .inference ? (inferenceUIDs, inferenceGIDs) : (manageUIDs, manageGIDs)
        if uids.contains(peer.uid) || gids.contains(peer.gid) { return true }
        guard !gids.isEmpty else { return false }
        return !gids.isDisjoint(with: Self.groups(ofUID: peer.uid, primary: peer.gid))
    }

    /// Supplementary groups of a uid (from the user database); empty when the uid has no entry.
    static func groups(ofUID uid: UInt32, primary: UInt32) -> Set<UInt32> {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid_t(uid), &pwd, &buffer, buffer.count, &result) == 0, result != nil, let name = pwd.pw_name else {
            return []
        }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, gid_t(primary), &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(name, gid_t(primary), &groups, &count) >= 0 else { return [] }
        }
        return Set(groups.prefix(Int(count)).map { UInt32($0) })
    }
}
