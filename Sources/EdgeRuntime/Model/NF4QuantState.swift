import AdapterCache
import Foundation

/// The `quant_state.bitsandbytes__nf4` JSON bitsandbytes stores beside every NF4 weight
/// (NF4.md §6). Its key order and number spelling are part of the format: transformers writes them
/// with Python's `json.dumps`, so `encoded()` reproduces those bytes exactly.
public struct NF4QuantState: Equatable, Sendable {
    public var quantType: String
    public var blocksize: Int
    /// The dtype of the weights before quantisation ("float32", "float16", "bfloat16").
    public var dtype: String
    /// The original (unpacked) shape, `[out_features, in_features]` for a Linear weight.
    public var shape: [Int]
    /// Present only with double quantisation.
    public var nested: Nested?

    public struct Nested: Equatable, Sendable {
        public var blocksize: Int
        public var dtype: String
        /// As written: a decimal that round-trips through a double; the value used is its fp32 cast.
        public var offset: Double

        public init(blocksize: Int, dtype: String = "float32", offset: Double) {
            self.blocksize = blocksize
            self.dtype = dtype
            self.offset = offset
        }
    }

    public init(quantType: String = "nf4", blocksize: Int, dtype: String = "float32", shape: [Int], nested: Nested?) {
        self.quantType = quantType
        self.blocksize = blocksize
        self.dtype = dtype
        self.shape = shape
        self.nested = nested
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// The JSON text as transformers writes it: `json.dumps` separators, keys in bitsandbytes' order,
    /// the offset as Python's `repr` of the float64 of the fp32 offset (shortest round-trip decimal).
    public func encoded() -> String {
        var s = "{\"quant_type\": \(Self.quote(quantType)), \"blocksize\": \(blocksize), \"dtype\": \(Self.quote(dtype)), "
        s += "\"shape\": [\(shape.map(String.init).joined(separator: ", "))]"
        if let nested {
            s += ", \"nested_blocksize\": \(nested.blocksize), \"nested_dtype\": \(Self.quote(nested.dtype)), "
            s += "\"nested_offset\": \(Self.pythonRepr(nested.offset))"
        }
        return s + "}"
    }

    /// Python's `repr(float)`: Swift's `description` of a Double is the same shortest round-trip
    /// spelling (`1e-05`, `0.0001`, `1e+16`, `10.0`); non-finite values never occur in a valid state.
    static func pythonRepr(_ value: Double) -> String { value.description }

    private static func quote(_ s: String) -> String { OrderedJSON.quoted(s) }

    /// Parses the stored JSON bytes. `path`/`tensor` name the file and tensor in errors.
    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String, tensor: String) throws(ModelError) -> NF4QuantState {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw .badQuantState(path: path, tensor: tensor, reason: "the quant_state bytes are not valid UTF-8")
        }
        let raw: Raw
        do {
            raw = try JSONDecoder().decode(Raw.self, from: Data(bytes))
        } catch {
            throw .badQuantState(path: path, tensor: tensor, reason: "quant_state JSON is invalid: \(ModelError.describe(decoding: error))")
        }
        guard raw.quant_type == "nf4" else {
            throw .badQuantState(path: path, tensor: tensor, reason: "quant_type is '\(raw.quant_type)'; only 'nf4' is supported")
        }
        let blocksize = raw.blocksize
        guard blocksize >= 32, blocksize <= 4096, blocksize & (blocksize - 1) == 0 else {
            throw .badQuantState(path: path, tensor: tensor, reason: "blocksize \(blocksize) is not a power of two in 32...4096")
        }
        guard ["float32", "float16", "bfloat16"].contains(raw.dtype) else {
            throw .badQuantState(path: path, tensor: tensor, reason: "dtype '\(raw.dtype)' is not float32, float16 or bfloat16")
        }
        guard raw.shape.allSatisfy({ $0 >= 0 }) else {
            throw .badQuantState(path: path, tensor: tensor, reason: "shape \(raw.shape) has a negative dimension")
        }
        var nested: Nested?
        if raw.nested_blocksize != nil || raw.nested_offset != nil || raw.nested_dtype != nil {
            guard let nbs = raw.nested_blocksize, let ndtype = raw.nested_dtype, let offset = raw.nested_offset else {
                throw .badQuantState(path: path, tensor: tensor, reason: "nested_blocksize, nested_dtype and nested_offset must appear together")
            }
            guard nbs > 0 else { throw .badQuantState(path: path, tensor: tensor, reason: "nested_blocksize \(nbs) must be positive") }
            guard ndtype == "float32" else {
                throw .badQuantState(path: path, tensor: tensor, reason: "nested_dtype '\(ndtype)' is not float32")
            }
            guard offset.isFinite else { throw .badQuantState(path: path, tensor: tensor, reason: "nested_offset is not finite") }
            nested = Nested(blocksize: nbs, dtype: ndtype, offset: offset)
        }
        return NF4QuantState(quantType: raw.quant_type, blocksize: blocksize, dtype: raw.dtype, shape: raw.shape, nested: nested)
    }

    /// The JSON as bitsandbytes spells it (snake_case keys).
    private struct Raw: Decodable {
        let quant_type: String
        let blocksize: Int
        let dtype: String
        let shape: [Int]
        let nested_blocksize: Int?
        let nested_dtype: String?
        let nested_offset: Double?
    }
}
