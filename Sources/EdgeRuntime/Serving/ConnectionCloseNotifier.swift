import NIOConcurrencyHelpers
import NIOCore

/// Tells running requests that their connection went away. One per connection (installed in the
/// HTTP pipeline); each request registers a callback and removes it when done, so a keep-alive
/// connection serving many requests does not accumulate callbacks (as `closeFuture.whenComplete`
/// would, since its callbacks cannot be removed).
/// Concurrency contract: register/unregister from any thread; callbacks run on the event loop.
final class ConnectionCloseNotifier: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny

    private struct State {
        var closed = false
        var next: UInt64 = 0
        var callbacks: [UInt64: @Sendable () -> Void] = [:]
    }

    private let state = NIOLockedValueBox(State())

    /// Registers `callback`; runs it at once when the connection is already closed. Returns the
    /// token for `unregister`.
    func register(_ callback: @escaping @Sendable () -> Void) -> UInt64 {
        let (token, closed) = state.withLockedValue { s -> (UInt64, Bool) in
            s.next += 1
            if !s.closed { s.callbacks[s.next] = callback }
            return (s.next, s.closed)
        }
        if closed { callback() }
        return token
    }

    func unregister(_ token: UInt64) {
        _ = state.withLockedValue { $0.callbacks.removeValue(forKey: token) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let callbacks = state.withLockedValue { s -> [@Sendable () -> Void] in
            s.closed = true
            defer { s.callbacks.removeAll() }
            return Array(s.callbacks.values)
        }
        for c in callbacks { c() }
        context.fireChannelInactive()
    }

    /// The notifier of a connection (nil if the pipeline has none, e.g. already torn down).
    static func of(_ channel: any Channel) async -> ConnectionCloseNotifier? {
        try? await channel.pipeline.handler(type: ConnectionCloseNotifier.self).get()
    }
}
