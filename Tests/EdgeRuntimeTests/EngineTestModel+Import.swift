import EdgeRuntime

extension EngineTestModel {
    /// The project's importer: GGUF → NF4 model directory (NF4.md layout, bit-exact with bitsandbytes).
    static func importModel(gguf: String, into directory: String) throws {
        _ = try ModelImporter(source: gguf, output: directory).run()
    }
}
