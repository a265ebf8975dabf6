/// Where a decoder reads LoRA tensors from: a plain safetensors image (a PEFT directory or a
/// hand-packed tar) or the byte-plane form inside a packed artifact.
protocol AdapterTensorSource {
    /// Names the source in errors (file path, or artifact path + member).
    var label: String { get }
    var tensorInfos: [SafetensorsTensorInfo] { get }
    /// Writes the tensor as f32 into `dst` (element count = product of its shape). Returns false if
    /// a value is NaN or infinite.
    func decode(_ info: SafetensorsTensorInfo, into dst: UnsafeMutablePointer<Float>) -> Bool
}

/// A plain safetensors file as a tensor source.
struct SafetensorsTensorSource: AdapterTensorSource {
    let file: SafetensorsFile
    var label: String { file.path }
    var tensorInfos: [SafetensorsTensorInfo] { Array(file.tensors.values) }

    func decode(_ info: SafetensorsTensorInfo, into dst: UnsafeMutablePointer<Float>) -> Bool {
        let start = file.fileBytes.baseAddress! + file.dataOffset + info.byteRange.lowerBound
        return TensorDecoding.decode(start, count: info.elementCount, dtype: info.dtype, into: dst)
    }
}
