import AdapterCache
import Kernels

extension LoRABinding {
    /// Binds a decoded adapter (the cache's RAM tier) to a model without copying: the slots point
    /// into the adapter's arena (f32 or f16, as the adapter holds it; the serving cache keeps f16),
    /// which the binding keeps alive. `weight` is not applied here (it
    /// belongs to the request, see `AdapterMix`). Keys naming layers or projections the model does
    /// not have, and shapes that do not fit, are errors naming the key.
    public convenience init(adapter: LoRAAdapter, name: String, hyperparameters hp: LlamaHyperparameters) throws(EngineError) {
        do {
            try adapter.validate(layerCount: hp.layerCount) { _, p in
                guard let proj = LlamaProjection(moduleName: p.rawValue) else { return nil }
                let s = proj.shape(hp)
                return (out: s.rows, in: s.cols)
            }
        } catch {
            let key: String
            if case .shapeMismatch(let k, _, _) = error { key = k } else { key = adapter.label }
            throw .adapterMismatch(adapter: name, key: key, reason: error.description)
        }
        var slots = [[ek_lora_slot?]](repeating: [ek_lora_slot?](repeating: nil, count: LlamaProjection.allCases.count), count: hp.layerCount)
        for m in adapter.modules {
            guard let proj = LlamaProjection(moduleName: m.projection.rawValue) else {
                throw .adapterMismatch(adapter: name, key: m.keyA, reason: "adapts \(m.projection.rawValue), which a Llama layer does not have")
            }
            guard m.rank >= 1, m.rank <= 256 else {
                throw .adapterMismatch(adapter: name, key: m.keyA, reason: "has rank \(m.rank); ranks 1…256 are supported")
            }
            switch adapter.precision {
            case .f32:
                slots[m.layer][proj.index] = ek_lora_slot(a: adapter.a(m).baseAddress, b: adapter.b(m).baseAddress, bt: nil, rank: Int32(m.rank), scale: m.scale,
                                                         dtype: Int32(EK_DTYPE_F32), a16: nil, b16: nil, bt16: nil)
            case .f16:
                slots[m.layer][proj.index] = ek_lora_slot(a: nil, b: nil, bt: nil, rank: Int32(m.rank), scale: m.scale,
                                                         dtype: Int32(EK_DTYPE_F16), a16: adapter.a16(m).baseAddress, b16: nil, bt16: adapter.bt16(m).baseAddress)
            }
        }
        self.init(name: name, slots: slots, byteCount: adapter.byteCount, precision: adapter.precision, owners: [adapter])
    }
}
