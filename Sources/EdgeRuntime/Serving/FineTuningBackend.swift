import AdapterCache
/// The seam for on-device fine-tuning (`/v1/fine_tuning/jobs…`). The daemon routes those endpoints
/// here; without one configured they answer 503 "fine-tuning is not available".
///
/// Concurrency contract: as `GenerationBackend` — callable from many tasks at once. Errors are
/// `HTTPStatusError`s: 400 for bad data or hyper-parameters (naming the JSONL line or the key),
/// 404 for an unknown job id, 409 when cancelling a finished job.
public protocol FineTuningBackend: Sendable {
    /// Validates the uploaded data (JSONL bytes, never a path the daemon would read), stores it with
    /// the job and queues it for the idle-time trainer. Returns the job in `validating_files` or
    /// `queued` state.
    func createJob(_ request: FineTuningJobRequest) async throws -> FineTuningJob

    /// Newest first; `after` is a job id for pagination (jobs older than it).
    func listJobs(after: String?, limit: Int) async throws -> [FineTuningJob]

    func job(id: String) async throws -> FineTuningJob

    /// Newest first; `after` is an event id for pagination.
    func events(jobID: String, after: String?, limit: Int) async throws -> [FineTuningEvent]

    func cancel(jobID: String) async throws -> FineTuningJob

    /// Starts queued jobs now, whatever the idle timer says (inference still preempts them);
    /// returns the queued and running jobs.
    func runPending() async throws -> [FineTuningJob]

    /// Makes the previous promoted version of adapter `adapter` current again (404 when none was
    /// trained here, 409 when the current one is the oldest). The newer version stays on disk.
    func rollback(adapter: String) async throws -> AdapterRollback
}

extension FineTuningBackend {
    public func runPending() async throws -> [FineTuningJob] {
        throw APIError.unavailable("this fine-tuning backend has no run-pending", code: "fine_tuning_unavailable")
    }

    public func rollback(adapter: String) async throws -> AdapterRollback {
        throw APIError.unavailable("this fine-tuning backend keeps no adapter versions to roll back", code: "fine_tuning_unavailable")
    }
}

/// Answer of `POST /v1/adapters/{name}/rollback`: `version` is current now, `rolled_back_from` was.
public struct AdapterRollback: Sendable, Equatable, Codable {
    public var object = "adapter.rollback"
    public var name: String
    public var version: String
    public var rolledBackFrom: String
    /// Every version trained on this device, ascending (all still on disk).
    public var versions: [String]

    public init(name: String, version: String, rolledBackFrom: String, versions: [String]) {
        self.name = name
        self.version = version
        self.rolledBackFrom = rolledBackFrom
        self.versions = versions
    }

    enum CodingKeys: String, CodingKey {
        case object, name, version, versions
        case rolledBackFrom = "rolled_back_from"
    }
}

/// What `POST /v1/fine_tuning/jobs` carries. Wire shape (JSON):
/// `{"model": "base"|"NAME", "suffix": "NAME", "training_data": "<JSONL text>",
///   "validation_data": "<JSONL text>"?, "hyperparameters": {...}?, "seed": N?}`.
/// `suffix` is the adapter the result is published as (a new version of it); `model` is the
/// starting point ("base" = fresh LoRA weights, an adapter name = continue from its newest version).
public struct FineTuningJobRequest: Sendable {
    public var baseAdapter: AdapterReference?
    public var adapterName: String
    /// JSONL rows: `{"messages": [...]}` or `{"instruction", "input", "output"}`.
    public var trainingData: [UInt8]
    public var validationData: [UInt8]?
    public var hyperparameters: FineTuningHyperparameters
    public var seed: UInt64?
    /// uid of the client that asked, for the job record and logs.
    public var requestedByUID: UInt32

    public init(baseAdapter: AdapterReference?, adapterName: String, trainingData: [UInt8], validationData: [UInt8]?, hyperparameters: FineTuningHyperparameters, seed: UInt64?, requestedByUID: UInt32) {
        self.baseAdapter = baseAdapter
        self.adapterName = adapterName
        self.trainingData = trainingData
        self.validationData = validationData
        self.hyperparameters = hyperparameters
        self.seed = seed
        self.requestedByUID = requestedByUID
    }
}

/// Every field optional: the trainer supplies its defaults. JSON keys as OpenAI's plus LoRA ones.
public struct FineTuningHyperparameters: Sendable, Equatable, Codable {
    public var nEpochs: Int?
    public var batchSize: Int?
    public var learningRate: Double?
    public var learningRateMultiplier: Double?
    public var steps: Int?
    public var gradientAccumulation: Int?
    public var rank: Int?
    public var alpha: Double?
    public var targetModules: [String]?

    public init(nEpochs: Int? = nil, batchSize: Int? = nil, learningRate: Double? = nil, learningRateMultiplier: Double? = nil, steps: Int? = nil, gradientAccumulation: Int? = nil, rank: Int? = nil, alpha: Double? = nil, targetModules: [String]? = nil) {
        self.nEpochs = nEpochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.learningRateMultiplier = learningRateMultiplier
        self.steps = steps
        self.gradientAccumulation = gradientAccumulation
        self.rank = rank
        self.alpha = alpha
        self.targetModules = targetModules
    }

    enum CodingKeys: String, CodingKey {
        case nEpochs = "n_epochs", batchSize = "batch_size", learningRate = "learning_rate"
        case learningRateMultiplier = "learning_rate_multiplier", steps
        case gradientAccumulation = "gradient_accumulation", rank, alpha
        case targetModules = "target_modules"
    }
}

/// OpenAI's fine-tuning job object (JSON keys as OpenAI's).
public struct FineTuningJob: Sendable, Equatable, Codable {
    public var id: String
    public var object: String = "fine_tuning.job"
    /// "base" or the adapter it started from.
    public var model: String
    /// `NAME@VERSION` of the adapter produced, once it passed the eval gate.
    public var fineTunedModel: String?
    /// validating_files | queued | running | succeeded | failed | cancelled
    public var status: String
    public var createdAt: Int
    public var finishedAt: Int?
    public var trainedTokens: Int?
    public var hyperparameters: FineTuningHyperparameters
    public var error: FineTuningJobError?
    public var seed: UInt64?

    public init(id: String, model: String, fineTunedModel: String? = nil, status: String, createdAt: Int, finishedAt: Int? = nil, trainedTokens: Int? = nil, hyperparameters: FineTuningHyperparameters, error: FineTuningJobError? = nil, seed: UInt64? = nil) {
        self.id = id
        self.model = model
        self.fineTunedModel = fineTunedModel
        self.status = status
        self.createdAt = createdAt
        self.finishedAt = finishedAt
        self.trainedTokens = trainedTokens
        self.hyperparameters = hyperparameters
        self.error = error
        self.seed = seed
    }

    enum CodingKeys: String, CodingKey {
        case id, object, model, status, hyperparameters, error, seed
        case fineTunedModel = "fine_tuned_model", createdAt = "created_at", finishedAt = "finished_at"
        case trainedTokens = "trained_tokens"
    }
}

public struct FineTuningJobError: Sendable, Equatable, Codable {
    public var code: String
    public var message: String
    public var param: String?

    public init(code: String, message: String, param: String? = nil) {
        self.code = code
        self.message = message
        self.param = param
    }
}

/// OpenAI's `fine_tuning.job.event` (JSON keys as OpenAI's); `data` carries step metrics
/// (`{"step", "train_loss", "valid_loss"}`) for metrics events.
public struct FineTuningEvent: Sendable, Equatable, Codable {
    public var id: String
    public var object: String = "fine_tuning.job.event"
    public var createdAt: Int
    /// "info" | "warn" | "error"
    public var level: String
    public var message: String
    /// "message" | "metrics"
    public var type: String
    public var data: [String: Double]?

    public init(id: String, createdAt: Int, level: String, message: String, type: String = "message", data: [String: Double]? = nil) {
        self.id = id
        self.createdAt = createdAt
        self.level = level
        self.message = message
        self.type = type
        self.data = data
    }

    enum CodingKeys: String, CodingKey {
        case id, object, level, message, type, data
        case createdAt = "created_at"
    }
}
