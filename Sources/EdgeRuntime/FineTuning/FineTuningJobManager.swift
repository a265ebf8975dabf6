import AdapterCache
import Foundation
import Logging

/// The daemon's `FineTuningBackend`: validates and stores jobs under `<state>/finetune/jobs/<id>/`,
/// runs them one at a time on a dedicated SCHED_IDLE thread while the device is idle, checkpoints
/// and pauses when inference arrives, applies the eval gate and publishes promoted adapters as
/// local (never-evicted) versions `1, 2, …` of their name. Promoted PEFT directories are kept in
/// `<state>/finetune/adapters/<name>/<version>/` as the baselines of later versions.
///
/// Concurrency contract: an actor; all job records live in it and are written through to disk on
/// every change. The only work off the actor is the running job's training segment, which owns its
/// own files (checkpoint, events through the locked `FineTuningEventLog`) and talks back only by
/// returning its outcome; cancellation and shutdown reach it through `FineTuningTrainingControl`.
public actor FineTuningJobManager: FineTuningBackend {
    public struct Settings: Sendable {
        public var policy = IdlePolicy()
        public var gate = EvalGate()
        /// Optimiser steps between checkpoints (a checkpoint is also written on every pause).
        public var checkpointEvery = 10
        /// How often the idle policy is re-checked, seconds.
        public var pollInterval = 5.0
        public init() {}
    }

    let stateDirectory: String
    let modelDirectory: String
    let environment: FineTuningEnvironment
    let settings: Settings
    let logger: Logger
    private let formatter: ChatTemplatePromptFormatter
    private var records: [String: FineTuningJobRecord]
    private var logs: [String: FineTuningEventLog]
    private var runningID: String?
    private var runningControl: FineTuningTrainingControl?
    private var runningTask: Task<Void, Never>?
    /// Set by `runPending`: start queued jobs without waiting for the idle policy (inference still
    /// preempts). Cleared when the queue is empty.
    private var forced = false
    private var loop: Task<Void, Never>?

    var jobsDirectory: String { stateDirectory + "/finetune/jobs" }
    var adaptersDirectory: String { stateDirectory + "/finetune/adapters" }

    /// Loads the jobs already in `stateDirectory` (a job that was running when the daemon died goes
    /// back to the queue and resumes from its checkpoint). Call `start()` to begin scheduling.
    public init(stateDirectory: String, modelDirectory: String, environment: FineTuningEnvironment,
                settings: Settings = Settings(), logger: Logger = Logger(label: "edge.finetune")) throws {
        self.stateDirectory = stateDirectory
        self.modelDirectory = modelDirectory
        self.environment = environment
        self.settings = settings
        self.logger = logger
        do {
            formatter = try ChatTemplatePromptFormatter(tokenizer: try Tokenizer(directory: URL(fileURLWithPath: modelDirectory)))
        } catch {
            throw FineTuningError.modelUnavailable(reason: "cannot load the tokenizer and chat template of \(modelDirectory): \(error)")
        }
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: stateDirectory + "/finetune/jobs", withIntermediateDirectories: true)
            try fm.createDirectory(atPath: stateDirectory + "/finetune/adapters", withIntermediateDirectories: true)
        } catch { throw FineTuningError.io(path: stateDirectory + "/finetune", reason: "\(error)") }
        var loaded: [String: FineTuningJobRecord] = [:]
        var loadedLogs: [String: FineTuningEventLog] = [:]
        for name in (try? fm.contentsOfDirectory(atPath: stateDirectory + "/finetune/jobs")) ?? [] {
            let files = FineTuningJobFiles(directory: stateDirectory + "/finetune/jobs/" + name)
            guard fm.fileExists(atPath: files.record) else { continue }  // a create that never finished
            var r: FineTuningJobRecord
            do { r = try files.loadRecord() } catch {
                logger.error("skipping fine-tuning job \(name): \(error)")
                continue
            }
            let log = FineTuningEventLog(path: files.events)
            if r.job.status == "running" {
                r.job.status = "queued"
                try? files.saveRecord(r)
                log.append(jobID: r.job.id, message: "the daemon restarted during training; the job resumes from its last checkpoint")
            }
            loaded[r.job.id] = r
            loadedLogs[r.job.id] = log
        }
        // Half-copied version directories of promotions a crash interrupted; a resumed promotion
        // copies afresh.
        for name in (try? fm.contentsOfDirectory(atPath: stateDirectory + "/finetune/adapters")) ?? [] {
            let dir = stateDirectory + "/finetune/adapters/" + name
            for entry in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where entry.hasSuffix(".tmp") {
                try? fm.removeItem(atPath: dir + "/" + entry)
            }
        }
        records = loaded
        logs = loadedLogs
    }

    /// Begins the scheduling loop (idempotent).
    public func start() {
        guard loop == nil else { return }
        let interval = settings.pollInterval
        loop = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                await self.pump()
                try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
            }
        }
    }

    /// Stops scheduling; a running job pauses at its next step with a checkpoint. Returns once it has.
    public func shutdown() async {
        loop?.cancel()
        loop = nil
        runningControl?.stop()
        await runningTask?.value
    }

    /// Starts queued jobs now, whatever the idle timer says (what `edgectl finetune run-pending`
    /// and its systemd timer ask for). Inference requests still preempt training.
    @discardableResult
    public func runPending() -> [FineTuningJob] {
        forced = true
        pump()
        return records.values.filter { $0.job.status == "queued" || $0.job.status == "running" }.map(\.job).sorted { $0.id < $1.id }
    }

    // MARK: - FineTuningBackend

    public func createJob(_ request: FineTuningJobRequest) async throws -> FineTuningJob {
        guard (try? AdapterName(request.adapterName)) != nil else {
            throw FineTuningError.invalidRequest(message: "'\(request.adapterName)' is not a valid adapter name", param: "suffix")
        }
        var hyper = try Self.hyperparameters(request.hyperparameters, seed: request.seed)
        var start: String?
        if let ref = request.baseAdapter {
            guard let dir = versionDirectory(name: ref.name.value, version: ref.version?.value) else {
                throw FineTuningError.invalidRequest(message: "adapter '\(ref)' was not trained on this device, so there is no PEFT copy to continue from; use model \"base\"", param: "model")
            }
            start = dir
            // Continuing an adapter keeps its shape (rank, alpha, targets).
            do { try FineTuningTrainingSegment.adoptShape(of: dir, into: &hyper) } catch {
                throw FineTuningError.invalidRequest(message: "cannot continue from '\(ref)': \(error)", param: "model")
            }
        }
        // Validate everything up front: rows by line number, sizes, and the held-out split.
        let train = try Self.dataset(request.trainingData, file: "training_data", formatter: formatter, maxLength: hyper.maxLength)
        var trainCount = train.examples.count
        if let v = request.validationData {
            let held = try Self.dataset(v, file: "validation_data", formatter: formatter, maxLength: hyper.maxLength)
            try Self.check { () throws(TrainingError) in try held.requireAtLeast(1, purpose: "the eval gate needs held-out examples") }
            try Self.check { () throws(TrainingError) in try train.requireAtLeast(hyper.minimumExamples, purpose: "too few rows to learn from") }
        } else {
            let (t, _) = try Self.check { () throws(TrainingError) -> (TrainingDataset, TrainingDataset) in try train.split(heldOutFraction: hyper.validationFraction, seed: hyper.seed, minimumTrain: hyper.minimumExamples) }
            trainCount = t.examples.count
        }
        let batches = (trainCount + hyper.batchSize - 1) / hyper.batchSize * hyper.epochs
        let total = min((batches + hyper.gradientAccumulation - 1) / hyper.gradientAccumulation, hyper.maxSteps ?? .max)
        hyper.maxSteps = hyper.maxSteps.map { min($0, total) }

        let now = Date()
        let id = String(format: "ftjob-%012llx%04x", UInt64(now.timeIntervalSince1970 * 1000), UInt32.random(in: 0...0xFFFF))
        let files = FineTuningJobFiles(directory: jobsDirectory + "/" + id)
        var published = request.hyperparameters
        published.nEpochs = hyper.epochs; published.batchSize = hyper.batchSize; published.learningRate = Double(hyper.learningRate)
        published.rank = hyper.rank; published.alpha = Double(hyper.alpha); published.targetModules = hyper.targets.map(\.rawValue)
        published.gradientAccumulation = hyper.gradientAccumulation; published.steps = hyper.maxSteps
        let job = FineTuningJob(id: id, model: request.baseAdapter.map { "\($0)" } ?? "base", status: "queued",
                                createdAt: Int(now.timeIntervalSince1970), hyperparameters: published, seed: hyper.seed)
        let record = FineTuningJobRecord(job: job, adapterName: request.adapterName, startAdapterDirectory: start, hyper: hyper,
                                         hasValidationFile: request.validationData != nil, completedSteps: 0, totalSteps: total)
        // Data first, job.json last: a directory without job.json is an unfinished create and is ignored.
        do { try FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true) } catch {
            throw FineTuningError.io(path: files.directory, reason: "\(error)")
        }
        try FineTuningJobFiles.writeAtomically(Data(request.trainingData), to: files.train)
        if let v = request.validationData { try FineTuningJobFiles.writeAtomically(Data(v), to: files.validation) }
        try files.saveRecord(record)
        let log = FineTuningEventLog(path: files.events)
        log.append(jobID: id, message: "created by uid \(request.requestedByUID): \(trainCount) training rows, \(total) steps; adapter \(request.adapterName)")
        records[id] = record
        logs[id] = log
        pump()
        return records[id]!.job
    }

    public func listJobs(after: String?, limit: Int) async throws -> [FineTuningJob] {
        var jobs = records.values.map(\.job).sorted { $0.id > $1.id }
        if let after { jobs = jobs.filter { $0.id < after } }
        return Array(jobs.prefix(max(0, limit)))
    }

    public func job(id: String) async throws -> FineTuningJob {
        guard let r = records[id] else { throw FineTuningError.jobNotFound(id: id) }
        return r.job
    }

    /// The stored record, with the eval-gate numbers and step counts (for tests and `status`).
    func record(id: String) -> FineTuningJobRecord? { records[id] }

    public func events(jobID: String, after: String?, limit: Int) async throws -> [FineTuningEvent] {
        guard let log = logs[jobID] else { throw FineTuningError.jobNotFound(id: jobID) }
        var all = Array(log.readAll().reversed())
        if let after, let i = all.firstIndex(where: { $0.id == after }) { all = Array(all[(i + 1)...]) }
        return Array(all.prefix(max(0, limit)))
    }

    public func cancel(jobID: String) async throws -> FineTuningJob {
        guard var r = records[jobID] else { throw FineTuningError.jobNotFound(id: jobID) }
        guard !r.isFinished else { throw FineTuningError.notCancellable(id: jobID, status: r.job.status) }
        if runningID == jobID { runningControl?.cancel() }
        r.job.status = "cancelled"
        r.job.finishedAt = Int(Date().timeIntervalSince1970)
        try update(r)
        logs[jobID]?.append(jobID: jobID, level: "warn", message: "cancelled at step \(r.completedSteps)/\(r.totalSteps)")
        return r.job
    }

    // MARK: - Scheduling

    /// Starts the oldest queued job if none runs and the device is idle (or `runPending` forced it).
    func pump() {
        guard runningID == nil else { return }
        guard let next = records.values.filter({ $0.job.status == "queued" }).min(by: { $0.job.id < $1.job.id }) else {
            forced = false
            return
        }
        if environment.inferenceBusy() { return }
        if !forced {
            let snapshot = SystemSnapshot.current(secondsSinceLastRequest: environment.secondsSinceLastRequest())
            if case .wait(let why) = settings.policy.decide(snapshot) {
                logger.trace("fine-tuning waits: \(why)")
                return
            }
        }
        launch(next)
    }

    private func launch(_ record: FineTuningJobRecord) {
        var r = record
        let id = r.job.id
        r.job.status = "running"
        do { try update(r) } catch {
            logger.error("cannot start fine-tuning job \(id): \(error)")
            return
        }
        if r.promotingVersion != nil, let baseline = r.baselineLoss, let heldOut = r.heldOutLoss {
            // Trained, gated and packed before the daemon died mid-promotion: only the publishing is left.
            runningID = id
            logger.info("fine-tuning job \(id) finishes its interrupted promotion as version \(r.promotingVersion!)")
            logs[id]?.append(jobID: id, message: "the daemon restarted while promoting; finishing the promotion as version \(r.promotingVersion!)")
            runningTask = Task { await self.finish(id, .finished(total: r.totalSteps, baseline: baseline, heldOut: heldOut, verdict: .promote, tokens: 0)) }
            return
        }
        let control = FineTuningTrainingControl()
        let segment = FineTuningTrainingSegment(
            record: r, files: files(id), modelDirectory: modelDirectory,
            previousVersionDirectory: versionDirectory(name: r.adapterName, version: nil), gate: settings.gate,
            checkpointEvery: settings.checkpointEvery, events: logs[id]!, control: control, inferenceBusy: environment.inferenceBusy)
        runningID = id
        runningControl = control
        logger.info("fine-tuning job \(id) starts at step \(r.completedSteps)/\(r.totalSteps)")
        runningTask = Task {
            let outcome = await FineTuningTrainingSegment.onTrainingThread { segment.run() }
            await self.finish(id, outcome)
        }
    }

    private func finish(_ id: String, _ outcome: FineTuningTrainingSegment.Outcome) async {
        guard var r = records[id] else {
            clearRunning()
            return
        }
        let log = logs[id]!
        let now = Int(Date().timeIntervalSince1970)
        switch outcome {
        case let .paused(step, total, baseline, tokens):
            r.completedSteps = step; r.totalSteps = total; r.baselineLoss = baseline ?? r.baselineLoss
            r.job.trainedTokens = (r.job.trainedTokens ?? 0) + tokens
            if r.job.status == "running" { r.job.status = "queued" }
        case let .cancelled(step, tokens):
            r.completedSteps = step
            r.job.trainedTokens = (r.job.trainedTokens ?? 0) + tokens
            r.job.status = "cancelled"
            r.job.finishedAt = r.job.finishedAt ?? now
        case let .failed(message):
            if r.job.status != "cancelled" {
                r.job.status = "failed"
                r.job.finishedAt = now
                r.job.error = FineTuningJobError(code: "training_failed", message: message)
                log.append(jobID: id, level: "error", message: "training failed: \(message)")
            }
        case let .finished(total, baseline, heldOut, verdict, tokens):
            r.completedSteps = total; r.totalSteps = total; r.baselineLoss = baseline; r.heldOutLoss = heldOut
            r.job.trainedTokens = (r.job.trainedTokens ?? 0) + tokens
            r.job.finishedAt = now
            switch verdict {
            case .promote:
                do {
                    let version = try await promote(&r)
                    r.publishedVersion = version
                    r.job.fineTunedModel = "\(r.adapterName)@\(version)"
                    r.job.status = "succeeded"
                    log.append(jobID: id, message: String(format: "promoted: held-out loss %.5f → %.5f; serving as %@", baseline, heldOut, r.job.fineTunedModel!))
                } catch {
                    r.job.status = "failed"
                    r.job.error = FineTuningJobError(code: "publish_failed", message: "training succeeded but publishing the adapter failed: \(error)")
                    log.append(jobID: id, level: "error", message: r.job.error!.message)
                }
            case .reject(let why):
                r.job.status = "failed"
                r.job.error = FineTuningJobError(code: "eval_gate_rejected", message: "rejected by the eval gate: \(why); the adapter is kept in \(files(id).adapter)")
                log.append(jobID: id, level: "warn", message: "rejected: \(why)")
            }
        }
        // The outcome is kept in memory even when job.json cannot be written (disk full): the API
        // reports it, and a restart finds the previous record and resumes from the checkpoint.
        records[id] = r
        do { try update(r) } catch { logger.error("cannot record fine-tuning job \(id): \(error)") }
        if r.isFinished { try? FileManager.default.removeItem(atPath: files(id).checkpoint) }
        // Only now may the next job start: its eval-gate baseline may be the version just promoted.
        clearRunning()
        pump()
    }

    private func clearRunning() {
        runningID = nil
        runningControl = nil
        runningTask = nil
    }

    /// Publishes the trained adapter as the next version of its name, in an order a crash at any
    /// point can resume from: pack the artifact (job dir, atomic), reserve the version in job.json,
    /// copy the PEFT dir to `adapters/<name>/<v>.tmp` (fsynced), register it with the cache as a local
    /// adapter (idempotent: same bytes, same sha256), then rename the directory into place. A
    /// restart with a reserved version repeats the steps after the reservation with the same
    /// artifact, so the result is one version, never two, never a mix. Returns the version.
    private func promote(_ r: inout FineTuningJobRecord) async throws -> Int {
        let f = files(r.job.id)
        let fm = FileManager.default
        let version: Int
        if let reserved = r.promotingVersion, fm.fileExists(atPath: f.artifact) {
            version = reserved
        } else {
            version = nextVersion(name: r.adapterName)
            var options = AdapterArtifact.PackOptions(name: try AdapterName(r.adapterName), version: try AdapterName(String(version)),
                                                      baseModel: environment.baseDigest)
            options.level = 3
            let (artifact, _) = try AdapterArtifact.pack(directory: f.adapter, options: options)
            try FineTuningJobFiles.writeAtomically(artifact, to: f.artifact)
            r.promotingVersion = version
            try update(r)
        }
        let nameDir = adaptersDirectory + "/" + r.adapterName
        let dest = nameDir + "/\(version)"
        let tmp = dest + ".tmp"
        let done = fm.fileExists(atPath: dest)
        if !done {
            try fm.createDirectory(atPath: nameDir, withIntermediateDirectories: true)
            try? fm.removeItem(atPath: tmp)
            try fm.copyItem(atPath: f.adapter, toPath: tmp)
            for file in try fm.contentsOfDirectory(atPath: tmp) { try AtomicFile.fsyncFile(tmp + "/" + file) }
            AtomicFile.syncDirectory(of: tmp + "/.")
        }
        try await environment.publish(f.artifact, r.adapterName, String(version))
        if !done {
            guard rename(tmp, dest) == 0 else { throw FineTuningError.io(path: dest, reason: String(cString: strerror(errno))) }
            FineTuningJobFiles.syncDirectory(of: dest)
        }
        // A new version is current even if an earlier rollback pinned an older one. Both steps are
        // idempotent, so a promotion resumed after a crash repeats them safely.
        try await environment.makeCurrent?(r.adapterName, String(version))
        try FineTuningJobFiles.writeAtomically(Data("\(version)\n".utf8), to: currentPointer(name: r.adapterName))
        return version
    }

    // MARK: - Rollback

    /// Makes the version before the current one of `name` current again — for inference (the adapter
    /// cache's bare-NAME resolution) and as the next job's eval-gate baseline. The rolled-back-from
    /// version stays on disk and in the cache (still reachable as NAME@VERSION). The switch is the
    /// cache's single actor call plus one atomic rename of the pointer file; the cache goes first,
    /// so a crash in between leaves the pointer on the newer version and a repeated rollback
    /// converges.
    public func rollback(adapter name: String) async throws -> AdapterRollback {
        guard (try? AdapterName(name)) != nil else {
            throw FineTuningError.invalidRequest(message: "'\(name)' is not a valid adapter name", param: "name")
        }
        let all = versions(name: name)
        guard let current = currentVersion(name: name) else { throw FineTuningError.adapterNotTrainedHere(name: name) }
        guard let previous = all.last(where: { $0 < current }) else {
            throw FineTuningError.noPreviousVersion(name: name, current: current)
        }
        try await environment.makeCurrent?(name, String(previous))
        try FineTuningJobFiles.writeAtomically(Data("\(previous)\n".utf8), to: currentPointer(name: name))
        logger.notice("adapter \(name) rolled back from version \(current) to \(previous)")
        return AdapterRollback(name: name, version: String(previous), rolledBackFrom: String(current), versions: all.map(String.init))
    }

    private func currentPointer(name: String) -> String { adaptersDirectory + "/" + name + "/current" }

    /// The current version of `name`: the pointer file's (set by promotion and rollback) when it
    /// names a kept version, else the newest. nil when nothing was promoted here.
    func currentVersion(name: String) -> Int? {
        let all = versions(name: name)
        if let text = try? String(contentsOfFile: currentPointer(name: name), encoding: .utf8),
           let v = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), all.contains(v) {
            return v
        }
        return all.last
    }

    private func files(_ id: String) -> FineTuningJobFiles { FineTuningJobFiles(directory: jobsDirectory + "/" + id) }

    private func update(_ r: FineTuningJobRecord) throws {
        try files(r.job.id).saveRecord(r)
        records[r.job.id] = r
    }

    /// Integer versions of `name` promoted here, ascending.
    func versions(name: String) -> [Int] {
        ((try? FileManager.default.contentsOfDirectory(atPath: adaptersDirectory + "/" + name)) ?? []).compactMap { Int($0) }.sorted()
    }

    /// One past the newest version on disk or reserved by an unfinished promotion.
    func nextVersion(name: String) -> Int {
        let reserved = records.values.filter { $0.adapterName == name }.compactMap(\.promotingVersion).max() ?? 0
        return max(versions(name: name).last ?? 0, reserved) + 1
    }

    /// PEFT directory of a version trained here (the current one when `version` is nil).
    func versionDirectory(name: String, version: String?) -> String? {
        let v: Int?
        if let version { v = Int(version).flatMap { versions(name: name).contains($0) ? $0 : nil } } else { v = currentVersion(name: name) }
        return v.map { adaptersDirectory + "/\(name)/\($0)" }
    }

    // MARK: - Validation

    /// Maps the API's hyper-parameters onto the trainer's (its defaults for the missing ones).
    static func hyperparameters(_ h: FineTuningHyperparameters, seed: UInt64?) throws(FineTuningError) -> FineTuneHyperparameters {
        var p = FineTuneHyperparameters()
        if let v = h.nEpochs { p.epochs = v }
        if let v = h.batchSize { p.batchSize = v }
        if let v = h.learningRate { p.learningRate = Float(v) }
        if let m = h.learningRateMultiplier {
            guard m > 0, m.isFinite else { throw .invalidRequest(message: "hyperparameters.learning_rate_multiplier must be positive", param: "hyperparameters.learning_rate_multiplier") }
            p.learningRate *= Float(m)
        }
        if let v = h.steps { p.maxSteps = v }
        if let v = h.gradientAccumulation { p.gradientAccumulation = v }
        if let v = h.rank { p.rank = v }
        if let v = h.alpha { p.alpha = Float(v) }
        if let names = h.targetModules {
            p.targets = []
            for n in names {
                guard let t = LoRATarget(name: n) else {
                    throw .invalidRequest(message: "hyperparameters.target_modules: unknown projection '\(n)'; use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj", param: "hyperparameters.target_modules")
                }
                if !p.targets.contains(t) { p.targets.append(t) }
            }
        }
        if let seed { p.seed = seed }
        do { try p.validate() } catch {
            var param = "hyperparameters"
            if case let .invalidHyperparameter(name, _) = error { param += "." + name }
            throw .invalidRequest(message: "\(error)", param: param)
        }
        return p
    }

    static func dataset(_ bytes: [UInt8], file: String, formatter: any TrainingPromptFormatter, maxLength: Int) throws(FineTuningError) -> TrainingDataset {
        try check { () throws(TrainingError) -> TrainingDataset in try TrainingDataset(data: Data(bytes), file: file, formatter: formatter, maxLength: maxLength) }
    }

    /// Trainer errors about the data become 400s naming the file and line.
    static func check<T>(_ body: () throws(TrainingError) -> T) throws(FineTuningError) -> T {
        do { return try body() } catch {
            let param: String? = switch error {
            case let .badRow(file, _, _), let .badRows(file, _), let .datasetTooSmall(file, _, _, _): file
            default: nil
            }
            throw .invalidRequest(message: "\(error)", param: param)
        }
    }
}
