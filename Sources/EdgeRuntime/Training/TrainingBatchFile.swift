import AdapterCache

/// Pre-tokenized batches in a safetensors file: `{prefix}.input_ids`, `.attention_mask`, `.labels`
/// (integer [B, T]; labels −100 where unscored; right padding). The format of the reference
/// fixtures, used by `edgectl finetune bench`.
public enum TrainingBatchFile {
    /// All `batch{i}` groups in index order.
    public static func batches(_ file: SafetensorsFile, prefix: String = "batch") throws(TrainingError) -> [TrainingBatch] {
        var out: [TrainingBatch] = []
        var i = 0
        while file.tensors["\(prefix)\(i).input_ids"] != nil {
            out.append(try batch(file, "\(prefix)\(i)"))
            i += 1
        }
        return out
    }

    public static func batch(_ file: SafetensorsFile, _ prefix: String) throws(TrainingError) -> TrainingBatch {
        func ints(_ key: String) throws(TrainingError) -> ([Int32], [Int]) {
            guard let info = file.tensors[key] else { throw .missingTensor(file: file.path, key: key) }
            guard let raw = try? file.bytes(of: key) else { throw .missingTensor(file: file.path, key: key) }
            guard info.shape.count == 2 else { throw .shapeMismatch(what: "\(file.path): \(key)", expected: [-1, -1], found: info.shape) }
            let n = info.elementCount
            switch info.dtype {
            case .i64: return ((0..<n).map { Int32(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }, info.shape)
            case .i32: return ((0..<n).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self) }, info.shape)
            default: throw .io(path: file.path, reason: "\(key) has dtype \(info.dtype.rawValue); I64 or I32 expected")
            }
        }
        let (ids, shape) = try ints(prefix + ".input_ids")
        let (mask, mshape) = try ints(prefix + ".attention_mask")
        let (labels, lshape) = try ints(prefix + ".labels")
        guard mshape == shape, lshape == shape else { throw .shapeMismatch(what: "\(file.path): \(prefix)", expected: shape, found: lshape) }
        let b = shape[0], t = shape[1]
        let lens = (0..<b).map { i in Int(mask[(i * t)..<((i + 1) * t)].reduce(0, +)) }
        return try TrainingBatch(batchSize: b, seqLen: t, inputIds: ids, labels: labels, validLengths: lens)
    }
}
