import Foundation

/// The parts of PEFT's `adapter_config.json` (a `LoraConfig`) that decide how the weights are
/// applied: rank and alpha with their per-module patterns, rsLoRA scaling, and the target modules.
/// Options that change the maths in ways the engine does not implement (DoRA, LoRA bias,
/// `modules_to_save`, embedding LoRA) are refused here with an error naming the key, never ignored.
public struct PEFTConfig: Sendable, Equatable {
    public enum TargetModules: Sendable, Equatable {
        /// Module names; PEFT matches a module whose name equals one or ends with `.` + one.
        case names([String])
        /// A regular expression PEFT matches against the full module name (`re.fullmatch`).
        case regex(String)
        /// PEFT's `"all-linear"` shorthand: every linear layer except the output layer.
        case allLinear
    }

    public let r: Int
    public let loraAlpha: Double
    public let useRSLoRA: Bool
    /// Keys in file order: PEFT tries them in insertion order and the first match wins.
    public let rankPattern: [(String, Int)]
    public let alphaPattern: [(String, Double)]
    public let targetModules: TargetModules
    /// PEFT's `layers_to_transform`: the only decoder layers with LoRA modules (nil: every layer).
    public let layersToTransform: Set<Int>?
    public let baseModelNameOrPath: String?
    /// The file's bytes, kept so an artifact carries the config exactly as PEFT wrote it.
    public let raw: Data

    public static func == (a: PEFTConfig, b: PEFTConfig) -> Bool { a.raw == b.raw }

    public init(contentsOf path: String) throws(AdapterError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, reason: FileManager.default.fileExists(atPath: path) ? "not readable" : "no such file (a PEFT directory holds adapter_config.json)")
        }
        try self.init(data: data, label: path)
    }

    public init(data: Data, label: String) throws(AdapterError) {
        guard data.count <= 16 << 20 else { throw .tooLarge(path: label, what: "adapter_config.json", limit: 16 << 20) }
        let json: OrderedJSON
        do { json = try OrderedJSON.parse(data) } catch {
            throw .badConfig(path: label, key: "(file)", reason: "not valid JSON at byte \(error.offset): \(error.reason)")
        }
        guard case .object = json else { throw .badConfig(path: label, key: "(file)", reason: "must be a JSON object") }
        raw = data

        func bool(_ key: String, default d: Bool) throws(AdapterError) -> Bool {
            switch json[key] {
            case nil, .null?: return d
            case .bool(let b)?: return b
            default: throw .badConfig(path: label, key: key, reason: "must be true or false")
            }
        }
        func isSet(_ key: String) -> Bool {
            switch json[key] {
            case nil, .null?, .bool(false)?: return false
            case .array(let a)?: return !a.isEmpty
            case .object(let o)?: return !o.isEmpty
            case .string(let s)?: return !s.isEmpty
            default: return true
            }
        }

        if let type = json["peft_type"] {
            guard case .string(let t) = type, t.uppercased() == "LORA" else {
                throw .unsupported(path: label, key: "peft_type", reason: "only LORA adapters are supported, found \(type)")
            }
        }
        guard let rv = json["r"]?.number, rv == rv.rounded(), rv >= 1, rv <= 65536 else {
            throw .badConfig(path: label, key: "r", reason: "must be a positive integer rank")
        }
        r = Int(rv)
        switch json["lora_alpha"] {
        case nil, .null?: loraAlpha = 8  // PEFT's default
        case let v? where v.number?.isFinite == true: loraAlpha = v.number!
        default: throw .badConfig(path: label, key: "lora_alpha", reason: "must be a finite number")
        }
        useRSLoRA = try bool("use_rslora", default: false)
        if try bool("use_dora", default: false) {
            throw .unsupported(path: label, key: "use_dora", reason: "DoRA adapters need a magnitude vector the engine does not apply; train a plain LoRA adapter")
        }
        if try bool("lora_bias", default: false) {
            throw .unsupported(path: label, key: "lora_bias", reason: "LoRA bias terms are not applied by the engine")
        }
        if case .string(let bias)? = json["bias"], bias != "none" {
            throw .unsupported(path: label, key: "bias", reason: "bias '\(bias)' trains base-model biases; only \"none\" is supported")
        }
        if isSet("modules_to_save") {
            throw .unsupported(path: label, key: "modules_to_save", reason: "the adapter replaces whole modules (e.g. lm_head or embeddings); only LoRA weights on the attention and MLP projections are supported")
        }
        if isSet("trainable_token_indices") {
            throw .unsupported(path: label, key: "trainable_token_indices", reason: "trainable token embeddings are not supported")
        }

        var rp: [(String, Int)] = []
        switch json["rank_pattern"] {
        case nil, .null?: break
        case .object(let pairs)?:
            for (k, v) in pairs {
                guard let n = v.number, n == n.rounded(), n >= 1, n <= 65536 else {
                    throw .badConfig(path: label, key: "rank_pattern.\(k)", reason: "must be a positive integer rank")
                }
                rp.append((k, Int(n)))
            }
        default: throw .badConfig(path: label, key: "rank_pattern", reason: "must be an object of pattern → rank")
        }
        var ap: [(String, Double)] = []
        switch json["alpha_pattern"] {
        case nil, .null?: break
        case .object(let pairs)?:
            for (k, v) in pairs {
                guard let n = v.number, n.isFinite else { throw .badConfig(path: label, key: "alpha_pattern.\(k)", reason: "must be a finite number") }
                ap.append((k, n))
            }
        default: throw .badConfig(path: label, key: "alpha_pattern", reason: "must be an object of pattern → alpha")
        }
        for (k, _) in rp where ModulePattern(suffix: k) == nil {
            throw .badConfig(path: label, key: "rank_pattern.\(k)", reason: "is not a valid regular expression")
        }
        for (k, _) in ap where ModulePattern(suffix: k) == nil {
            throw .badConfig(path: label, key: "alpha_pattern.\(k)", reason: "is not a valid regular expression")
        }
        rankPattern = rp
        alphaPattern = ap

        switch json["target_modules"] {
        case nil, .null?: targetModules = .names([])
        case .string(let s)?:
            if s == "all-linear" {
                targetModules = .allLinear
            } else {
                guard ModulePattern(fullMatch: s) != nil else {
                    throw .badConfig(path: label, key: "target_modules", reason: "is not a valid regular expression")
                }
                targetModules = .regex(s)
            }
        case .array(let items)?:
            var names: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw .badConfig(path: label, key: "target_modules", reason: "must be a list of module names or a regex string") }
                names.append(s)
            }
            targetModules = .names(names)
        default: throw .badConfig(path: label, key: "target_modules", reason: "must be a list of module names or a regex string")
        }
        switch json["layers_to_transform"] {
        case nil, .null?: layersToTransform = nil
        case .int(let n)? where n >= 0: layersToTransform = [n]
        case .array(let items)?:
            var layers = Set<Int>()
            for item in items {
                guard case .int(let n) = item, n >= 0 else {
                    throw .badConfig(path: label, key: "layers_to_transform", reason: "must be a layer index or a list of layer indices")
                }
                layers.insert(n)
            }
            layersToTransform = layers
        default: throw .badConfig(path: label, key: "layers_to_transform", reason: "must be a layer index or a list of layer indices")
        }
        if case .string(let s)? = json["base_model_name_or_path"] { baseModelNameOrPath = s } else { baseModelNameOrPath = nil }
    }

    /// PEFT's `get_pattern_key`: the first pattern key `p` (in file order) for which
    /// `re.match(rf"(.*\.)?({p})$", module)` succeeds.
    public static func patternKey(_ keys: [String], matching module: String) -> String? {
        keys.first { ModulePattern(suffix: $0)?.matches(module) == true }
    }

    /// Rank and alpha PEFT uses for `module` (the module's name in the base model, e.g.
    /// `model.layers.3.self_attn.q_proj`).
    public func rankAndAlpha(forModule module: String) -> (rank: Int, alpha: Double) {
        rankAndAlpha(forModules: [module])[0]
    }

    /// `rankAndAlpha(forModule:)` for many modules, each pattern compiled once (an adapter's decoder
    /// asks for every module it holds).
    public func rankAndAlpha(forModules modules: [String]) -> [(rank: Int, alpha: Double)] {
        let ranks = rankPattern.compactMap { k, v in ModulePattern(suffix: k).map { ($0, v) } }
        let alphas = alphaPattern.compactMap { k, v in ModulePattern(suffix: k).map { ($0, v) } }
        return modules.map { module in
            (ranks.first { $0.0.matches(module) }?.1 ?? r, alphas.first { $0.0.matches(module) }?.1 ?? loraAlpha)
        }
    }

    /// The factor PEFT multiplies `B·A·x` by: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    public func scale(rank: Int, alpha: Double) -> Float {
        Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank))
    }

    /// PEFT's `check_target_module_exists` for a module name.
    public func targets(module: String) -> Bool {
        switch targetModules {
        case .allLinear: return true
        case .regex(let pattern):
            return ModulePattern(fullMatch: pattern)?.matches(module) == true
        case .names(let names):
            return names.contains { module == $0 || module.hasSuffix("." + $0) }
        }
    }

    /// Target modules as a list for manifests and listings.
    public var targetDescription: [String] {
        switch targetModules {
        case .names(let n): n.sorted()
        case .regex(let r): [r]
        case .allLinear: ["all-linear"]
        }
    }
}

/// A PEFT module-name pattern, compiled with Swift's own regex engine.
///
/// Not `NSRegularExpression`: on Linux, Foundation's `_CFRegularExpressionCreate` copies a pattern
/// longer than 256 UTF-16 units into a heap buffer it never frees, so every compile of such a key
/// (once per module while an adapter loads) leaked it (found by the adapter-config fuzzer).
/// Matching is by Unicode scalar, as Python's `re` matches code points.
struct ModulePattern {
    private let regex: Regex<AnyRegexOutput>

    /// PEFT's `get_pattern_key` test, `re.match(rf"(.*\.)?({key})$", module)`: the key matches a
    /// dot-separated suffix of the module name.
    init?(suffix key: String) {
        self.init(wrapped: "(.*\\.)?(\(key))")
    }

    /// PEFT's `re.fullmatch(target_modules, module)`.
    init?(fullMatch pattern: String) {
        self.init(wrapped: "(?:\(pattern))")
    }

    private init?(wrapped: String) {
        guard let r = try? Regex(wrapped) else { return nil }
        regex = r.matchingSemantics(.unicodeScalar)
    }

    func matches(_ module: String) -> Bool {
        (try? regex.wholeMatch(in: module)) != nil
    }
}
