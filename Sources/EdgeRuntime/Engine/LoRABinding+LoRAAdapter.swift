import AdapterCache
import Kernels

extension LoRABinding {
    /// Binds a decoded adapter (the cache's RAM tier) to a model without copying: the slots point
    /// into the adapter's arena (f32, f16 or int8, as the adapter holds it; the daemon's cache keeps int8),
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
                slots[m.layer][proj.index] = .f32(a: adapter.a(m).baseAddress, b: adapter.b(m).baseAddress, rank: m.rank, scale: m.scale)
            case .f16:
                slots[m.layer][proj.index] = .f16(a: adapter.a16(m).baseAddress, bt: adapter.bt16(m).baseAddress, rank: m.rank, scale: m.scale)
            case .int8:
                let a = adapter.a8(m), bt = adapter.bt8(m)
                slots[m.layer][proj.index] = .int8(a: a.values.baseAddress, aScales: a.scales.baseAddress, bt: bt.values.baseAddress,
                                                   btScales: bt.scales.baseAddress, rank: m.rank, inFeatures: m.inFeatures, scale: m.scale)
            }
        }
        self.init(name: name, slots: slots, byteCount: adapter.byteCount, precision: adapter.precision, owners: [adapter])
    }
}
