import Hummingbird
import Logging
import NIOCore

/// What the responder knows about a request besides the request itself: the connection (to notice
/// the client leaving), the peer's credentials (SO_PEERCRED) and the request id.
public struct ServingContextSource: RequestContextSource {
    public var logger: Logger
    public var channel: any Channel
    public var peer: PeerCredentials
    public var requestID: String
    public var arrival: ContinuousClock.Instant
}

public struct ServingRequestContext: RequestContext {
    public typealias Source = ServingContextSource
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public let peer: PeerCredentials
    public let requestID: String
    public let arrival: ContinuousClock.Instant

    public init(source: ServingContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
        peer = source.peer
        requestID = source.requestID
        arrival = source.arrival
    }
}
