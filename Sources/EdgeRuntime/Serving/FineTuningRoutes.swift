import AdapterCache
import Foundation
import Hummingbird

/// `/v1/fine_tuning/jobs…`, shaped like OpenAI's, forwarded to the `FineTuningBackend`; 503 when the
/// daemon has none. The training data travels in the request body (`training_data`, JSONL text),
/// never as a path the daemon would have to be allowed to read.
struct FineTuningRoutes {
    let state: ServingState

    private func backend(_ ctx: ServingRequestContext) async throws -> any FineTuningBackend {
        try APIRoutes.authorize(state, ctx, .manage)
        guard let b = await state.settledFineTuning() else {
            throw APIError.unavailable("fine-tuning is not available in this daemon", code: "fine_tuning_unavailable")
        }
        return b
    }

    func create(_ req: Request, _ ctx: ServingRequestContext) async throws -> Response {
        let b = try await backend(ctx)
        let json = try await APIRoutes.json(req, limit: state.settings.maxUploadBytes, key: "max_upload_bytes")
        let f = FieldReader(json: json)
        if json["training_file"] != nil && json["training_data"] == nil {
            throw APIError.badRequest("this server takes the training data inline: send the JSONL text as 'training_data' (edgectl finetune create FILE does this)", param: "training_file")
        }
        guard let training = try f.string("training_data"), !training.isEmpty else {
            throw APIError.badRequest("'training_data' is required: the JSONL training rows as one string", param: "training_data")
        }
        let validation = try f.string("validation_data")
        let model = try f.string("model") ?? "base"
        var baseAdapter: AdapterReference?
        if model != "base" && !model.isEmpty {
            do { baseAdapter = try AdapterReference(parsing: model) } catch { throw APIError.badRequest(error.message, param: "model", code: error.errorCode) }
        }
        guard let suffix = try f.string("suffix") ?? baseAdapter?.name.value else {
            throw APIError.badRequest("'suffix' is required: the adapter name the result is published as", param: "suffix")
        }
        do { _ = try AdapterReference(parsing: suffix) } catch { throw APIError.badRequest(error.message, param: "suffix", code: error.errorCode) }
        var hyper = FineTuningHyperparameters()
        if let h = json["hyperparameters"], !h.isNull {
            guard case .object = h else { throw APIError.badRequest("'hyperparameters' must be an object", param: "hyperparameters") }
            do {
                hyper = try JSONDecoder().decode(FineTuningHyperparameters.self, from: Data(h.serialized.utf8))
            } catch {
                throw APIError.badRequest("'hyperparameters' has a field of the wrong type (numbers for n_epochs, batch_size, learning_rate, steps, rank, alpha; strings for target_modules)", param: "hyperparameters")
            }
        }
        let seed = try f.int("seed", min: Int64.min, max: Int64.max).map { UInt64(bitPattern: $0) }
        let job = try await b.createJob(FineTuningJobRequest(
            baseAdapter: baseAdapter, adapterName: suffix, trainingData: Array(training.utf8),
            validationData: validation.map { Array($0.utf8) }, hyperparameters: hyper, seed: seed,
            requestedByUID: ctx.peer.uid))
        ctx.logger.info("fine-tuning job created", metadata: ["job.id": "\(job.id)", "adapter.name": "\(suffix)"])
        return APIRoutes.respond(try APIRoutes.encodable(job))
    }

    private func page(_ req: Request) throws -> (after: String?, limit: Int) {
        let after = req.uri.queryParameters.get("after")
        var limit = 20
        if let l = req.uri.queryParameters.get("limit") {
            guard let v = Int(l), (1...100).contains(v) else { throw APIError.badRequest("'limit' must be an integer from 1 to 100", param: "limit") }
            limit = v
        }
        return (after, limit)
    }

    func list(_ req: Request, _ ctx: ServingRequestContext) async throws -> Response {
        let b = try await backend(ctx)
        let (after, limit) = try page(req)
        let jobs = try await b.listJobs(after: after, limit: limit + 1)
        return APIRoutes.respond(.object([
            ("object", "list"), ("data", try APIRoutes.encodable(Array(jobs.prefix(limit)))), ("has_more", .bool(jobs.count > limit)),
        ]))
    }

    func get(_ ctx: ServingRequestContext) async throws -> Response {
        let b = try await backend(ctx)
        return APIRoutes.respond(try APIRoutes.encodable(try await b.job(id: ctx.parameters.get("id") ?? "")))
    }

    func events(_ req: Request, _ ctx: ServingRequestContext) async throws -> Response {
        let b = try await backend(ctx)
        let (after, limit) = try page(req)
        let events = try await b.events(jobID: ctx.parameters.get("id") ?? "", after: after, limit: limit + 1)
        return APIRoutes.respond(.object([
            ("object", "list"), ("data", try APIRoutes.encodable(Array(events.prefix(limit)))), ("has_more", .bool(events.count > limit)),
        ]))
    }

    func cancel(_ ctx: ServingRequestContext) async throws -> Response {
        let b = try await backend(ctx)
        let job = try await b.cancel(jobID: ctx.parameters.get("id") ?? "")
        ctx.logger.info("fine-tuning job cancelled", metadata: ["job.id": "\(job.id)"])
        return APIRoutes.respond(try APIRoutes.encodable(job))
    }

    /// `POST /v1/adapters/{name}/rollback` (management permission): the previous version trained
    /// on this device becomes current.
    func rollback(_ ctx: ServingRequestContext) async throws -> Response {
        let b = try await backend(ctx)
        let result = try await b.rollback(adapter: ctx.parameters.get("name") ?? "")
        ctx.logger.notice("adapter rolled back", metadata: ["adapter.name": "\(result.name)", "adapter.version": "\(result.version)", "from": "\(result.rolledBackFrom)"])
        return APIRoutes.respond(try APIRoutes.encodable(result))
    }

    /// `POST /v1/fine_tuning/run_pending`: start queued jobs now, ignoring the idle timer (what
    /// `edgectl finetune run-pending` and its systemd timer call). Answers with the pending jobs.
    func runPending(_ ctx: ServingRequestContext) async throws -> Response {
        let b = try await backend(ctx)
        let jobs = try await b.runPending()
        ctx.logger.info("fine-tuning: run pending jobs now", metadata: ["jobs": "\(jobs.count)"])
        return APIRoutes.respond(.object([("object", "list"), ("data", try APIRoutes.encodable(jobs)), ("has_more", .bool(false))]))
    }
}
