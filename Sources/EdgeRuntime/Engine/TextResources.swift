import Foundation
import Logging

/// The tokenizer side of a served model — tokenizer, chat template — loaded on its own thread so
/// the daemon's start-up is only mapping and validating the weights (parsing tokenizer.json is
/// most of a cold start). Anything that needs text waits for it.
///
/// Concurrency contract: `start` once; `wait` (blocking) and `ready` (async) from any thread; the
/// loaded value is immutable and published under `lock`.
final class TextResources: @unchecked Sendable {
    struct Loaded: Sendable {
        let local: LocalModel
        let chatTemplate: ChatTemplate?
        let chatTemplateError: String?
    }

    let directory: String
    let weights: LlamaWeights
    let logger: Logger
    private let lock = NSCondition()
    // Guarded by `lock`.
    private var result: Result<Loaded, APIError>?
    private var waiters: [CheckedContinuation<Loaded, Error>] = []

    init(directory: String, weights: LlamaWeights, logger: Logger) {
        self.directory = directory
        self.weights = weights
        self.logger = logger
    }

    /// Starts loading; `onLoad` runs on the loading thread before anyone is released.
    func start(onLoad: @escaping @Sendable (Loaded) -> Void) {
        let thread = Thread { [self] in
            let started = ContinuousClock.now
            let outcome: Result<Loaded, APIError>
            do {
                let tokenizer = try Tokenizer(directory: URL(fileURLWithPath: directory))
                let local = LocalModel(directory: directory, weights: weights, tokenizer: tokenizer)
                var template: ChatTemplate?
                var templateError: String?
                do { template = try ChatTemplate(tokenizer: tokenizer) } catch { templateError = "\(error)" }
                let loaded = Loaded(local: local, chatTemplate: template, chatTemplateError: templateError)
                onLoad(loaded)
                outcome = .success(loaded)
                logger.info("tokenizer loaded", metadata: ["startup.tokenizer_ms": "\(Int((ContinuousClock.now - started) / .milliseconds(1)))"])
            } catch {
                let message = "the tokenizer of \(directory) failed to load (\(error)): re-import the model with `edgectl model import` and restart the daemon"
                logger.error("\(message)")
                outcome = .failure(.unavailable(message, code: "tokenizer_unavailable"))
            }
            lock.lock()
            result = outcome
            let resumed = waiters
            waiters = []
            lock.broadcast()
            lock.unlock()
            for w in resumed { w.resume(with: outcome.mapError { $0 as Error }) }
        }
        thread.name = "edge-runtime tokenizer load"
        thread.start()
    }

    /// Blocks until loaded (only during the first moments after start-up).
    func wait() throws -> Loaded {
        lock.lock()
        defer { lock.unlock() }
        while result == nil { lock.wait() }
        return try result!.get()
    }

    /// Suspends (without holding a thread) until loaded.
    func ready() async throws -> Loaded {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Loaded, Error>) in
            lock.lock()
            if let result {
                lock.unlock()
                c.resume(with: result.mapError { $0 as Error })
            } else {
                waiters.append(c)
                lock.unlock()
            }
        }
    }
}
