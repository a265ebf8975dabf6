import AdapterCache
import ArgumentParser
import Foundation

struct AdapterPack: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack", abstract: "Pack a PEFT LoRA directory into one zstd-compressed artifact.",
        discussion: helpExamples("edgectl adapter pack ./my-peft -o my.tar.zst --name my@1 --base-model ~/models/m",
                                 "edgectl adapter pack ./my-peft --name my@2 --base-model ~/models/m --sign-key signing.key --json"))

    @Argument(help: "PEFT directory (adapter_config.json + adapter_model.safetensors).") var directory: String
    @Option(name: .shortAndLong, help: "Artifact file to write (NAME-VERSION.tar.zst by default).") var output: String?
    @Option(name: .long, help: "Adapter name, or NAME@VERSION (default: the directory's name).") var name: String?
    // Not `--version`: the root command owns that flag (ArgumentParser answers it at any depth).
    @Option(name: .customLong("adapter-version"), help: "Version (default: 1; or give --name NAME@VERSION).") var version: String?
    @Option(name: .long, help: "sha256 of the base model's model.safetensors.") var baseModelDigest: String?
    @Option(name: .long, help: "Base model directory (or its model.safetensors) to compute the digest from.") var baseModel: String?
    @Option(name: .long, help: "ed25519 private key file (from 'adapter keygen') to sign the manifest.") var signKey: String?
    @Option(name: .long, help: "zstd level (1–22).") var level: Int32 = 19
    @Flag(name: .long, help: "Print the manifest as JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            guard baseModelDigest == nil || baseModel == nil else { throw ValidationError("give --base-model-digest or --base-model, not both") }
            let (rawName, nameVersion) = splitReference(name ?? (URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent).lowercased())
            var options = AdapterArtifact.PackOptions(name: try AdapterName(rawName), version: try AdapterName(version ?? nameVersion ?? "1"))
            options.baseModel = try baseModelDigest.map(FileDigest.normalized) ?? baseModel.map(digestOfBaseModel(path:))
            options.signingKey = try signKey.map(SigningKeys.loadPrivate(path:))
            options.level = level
            let (artifact, manifest) = try AdapterArtifact.pack(directory: directory, options: options)
            let out = output ?? "\(manifest.name)-\(manifest.version).tar.zst"
            try AtomicFile.write(artifact, to: (out as NSString).isAbsolutePath ? out : FileManager.default.currentDirectoryPath + "/" + out)
            if json { printJSON(manifest) } else {
                let original = manifest.files[AdapterArtifact.weightsMember]?.size ?? 0
                print("packed \(manifest.name)@\(manifest.version) → \(out): \(humanBytes(Int64(artifact.count))) (safetensors \(humanBytes(original))), rank \(manifest.rank), targets \(manifest.targets.joined(separator: ","))\(manifest.signature != nil ? ", signed" : "")")
            }
        }
    }
}

struct AdapterPublish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish", abstract: "Publish an artifact into a static store directory ({name}/index.json + {name}/{version}.tar.zst).",
        discussion: helpExamples("edgectl adapter publish my.tar.zst --to /srv/adapter-store",
                                 "edgectl adapter publish hand-packed.tar.zst --to /srv/adapter-store --name my@3 --base-model-digest sha256:…"))

    @Argument(help: "Artifact (from 'adapter pack', or a PEFT directory packed with tar --zstd).") var artifact: String
    @Option(name: .long, help: "Store directory.") var to: String
    @Option(name: .long, help: "Name, or NAME@VERSION (required for hand-packed tars).") var name: String?
    @Option(name: .customLong("adapter-version"), help: "Version (required for hand-packed tars unless --name NAME@VERSION).") var version: String?
    @Option(name: .long, help: "sha256 of the base model (for hand-packed tars).") var baseModelDigest: String?
    @Option(name: .long, help: "ed25519 private key file: sign the index entry.") var signKey: String?
    @Flag(name: .long, help: "Replace an already published version with different content.") var replace = false
    @Flag(name: .long, help: "Print the index entry as JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let parts = name.map(splitReference)
            let n = parts?.0, nv = parts?.1 ?? nil
            var o = StorePublisher.Options(name: try n.map(AdapterName.init), version: try (version ?? nv).map(AdapterName.init), baseModel: baseModelDigest.map(FileDigest.normalized),
                                           signingKey: try signKey.map(SigningKeys.loadPrivate(path:)))
            o.replace = replace
            let entry = try StorePublisher.publish(artifact: artifact, to: to, options: o)
            if json { printJSON(entry) } else {
                print("published version \(entry.version) (\(humanBytes(entry.size)), sha256 \(entry.sha256.prefix(16))…) into \(to)")
            }
        }
    }
}

struct AdapterVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check an artifact: structure, digests, signature, and that it decodes.",
        discussion: helpExamples("edgectl adapter verify my.tar.zst", "edgectl adapter verify my.tar.zst --trusted-key signing.key.pub --require-signature --json"))

    @Argument(help: "Artifact file.") var file: String
    @Option(name: .long, help: "Trusted ed25519 public key (base64 or .pub file); repeatable.") var trustedKey: [String] = []
    @Flag(name: .long, help: "Fail when the artifact is not signed.") var requireSignature = false
    @Option(name: .long, help: "Fail unless the adapter was made for this base model sha256.") var baseModelDigest: String?
    @Flag(name: .long, help: "Print the result as JSON.") var json = false

    struct Report: Encodable {
        var file: String
        var sha256: String
        var name: String?
        var version: String?
        var baseModel: String?
        var contentSHA256: String
        var configSHA256: String
        var signed: Bool
        var signatureVerified: Bool
        var modules: Int
        var layers: Int
        var rank: Int
        var projections: [String]
        var decodedBytes: Int
        var ok: Bool
    }

    func run() async throws {
        try await reportingErrors {
            let artifact = try AdapterArtifact.open(path: file)
            let digests = try artifact.verifyContent()
            let m = artifact.manifest
            if let want = baseModelDigest.map(FileDigest.normalized), let have = m?.baseModel, want != have {
                throw AdapterError.baseModelMismatch(adapter: file, adapterBase: have, loadedBase: want)
            }
            let keys = try trustedKey.map(SigningKeys.publicKey)
            var verified = false
            if let m, let sig = m.signature {
                try sig.verify(m.signedStatement, trusted: keys, what: file)
                verified = true
            } else if requireSignature {
                throw AdapterError.signatureRequired(what: file)
            }
            let adapter = try artifact.decode()
            let report = Report(file: file, sha256: try FileDigest.sha256(file: file), name: m?.name, version: m?.version, baseModel: m?.baseModel,
                                contentSHA256: digests.content, configSHA256: digests.config, signed: m?.signature != nil, signatureVerified: verified,
                                modules: adapter.modules.count, layers: Set(adapter.modules.map(\.layer)).count, rank: adapter.maxRank,
                                projections: adapter.projections.map(\.rawValue), decodedBytes: adapter.byteCount, ok: true)
            if json { printJSON(report) } else {
                print("\(file): OK — \(m.map { "\($0.name)@\($0.version)" } ?? "hand-packed PEFT tar (no manifest)"), \(report.modules) modules in \(report.layers) layers, rank \(report.rank), \(verified ? "signature verified" : "unsigned"), sha256 \(report.sha256)")
            }
        }
    }
}

struct AdapterKeygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Create an ed25519 key pair for signing adapters (KEYFILE and KEYFILE.pub).",
        discussion: helpExamples("edgectl adapter keygen signing.key", "edgectl adapter keygen signing.key --json"))

    @Argument(help: "Private key file to create (mode 0600); the public key goes to KEYFILE.pub.") var keyfile: String
    @Flag(name: .long, help: "Print the public key as JSON.") var json = false

    func run() async throws {
        try await reportingErrors {
            let pub = try SigningKeys.generate(path: keyfile)
            if json { printJSON(["private_key_file": keyfile, "public_key_file": keyfile + ".pub", "public_key": pub]) } else {
                print("wrote \(keyfile) (keep it secret) and \(keyfile).pub\npublic key (add to trusted keys): \(pub)")
            }
        }
    }
}

/// "NAME@VERSION" → (NAME, VERSION); "NAME" → (NAME, nil).
func splitReference(_ text: String) -> (String, String?) {
    guard let at = text.firstIndex(of: "@") else { return (text, nil) }
    return (String(text[..<at]), String(text[text.index(after: at)...]))
}
