// The bitsandbytes 0.50.2 NF4 storage format, reproduced exactly (see shared/NF4.md):
// the blockwise NF4 quantiser, the double quantisation of its absmax, and the reference
// (scalar, flat-rule) dequantisers. These are format code, not hot kernels: the importer runs them
// once per weight, and tests compare them byte for byte with bitsandbytes' own output.
//
// Layout reminders (all tensors row-major, blocks run over the flattened tensor):
//   packed[(n + 1) / 2]     byte j = code[2j] << 4 | code[2j + 1]; odd n padded with code 7 (0.0)
//   absmax[ceil(n / bs)]    fp32 max |x| per block of `bs` elements
//   q8[nb], nested[ceil(nb / nbs)], offset   the double-quantised form of absmax[nb]
#ifndef EDGE_NF4_FORMAT_H
#define EDGE_NF4_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Number of blocks of `blocksize` covering `n` elements (the last may be partial).
static inline int64_t ek_bnb_block_count(int64_t n, int64_t blocksize) {
    return (n + blocksize - 1) / blocksize;
}

/// NF4-quantises x[0..<n] in blocks of `blocksize` (a power of two, 32...4096) exactly as
/// bitsandbytes' `quantize_4bit(quant_type="nf4")` does on CPU.
/// packed: (n + 1) / 2 bytes; absmax: ek_bnb_block_count(n, blocksize) floats.
void ek_bnb_quantize_nf4(const float *x, int64_t n, int32_t blocksize, uint8_t *packed, float *absmax);

/// Double-quantises absmax[0..<nb] (bitsandbytes `compress_statistics=True`): returns the fp32
/// offset (mean of absmax, accumulated in double and rounded); writes q8[nb] codes into the signed
/// dynamic map and nested_absmax[ek_bnb_block_count(nb, nested_blocksize)].
float ek_bnb_double_quantize(const float *absmax, int64_t nb, int32_t nested_blocksize,
                             uint8_t *q8, float *nested_absmax);

/// The same with a given offset (e.g. the one a file stores, or bitsandbytes' own torch mean): the
/// nested absmax and q8 codes are then a pure function of (absmax, offset).
void ek_bnb_double_quantize_with_offset(const float *absmax, int64_t nb, int32_t nested_blocksize, float offset,
                                        uint8_t *q8, float *nested_absmax);

/// Recovers fp32 absmax from its double-quantised form: out[i] = dq_map[q8[i]] * nested[i / nbs] + offset
/// (an fp32 multiply, then an fp32 add — never fused). dq_map is the 256-entry map as stored.
void ek_bnb_dequantize_absmax(const uint8_t *q8, int64_t nb, const float *dq_map,
                              const float *nested_absmax, int32_t nested_blocksize, float offset,
                              float *out);

/// Reference NF4 dequantiser (flat rule): out[k] = code_map[code(k)] * absmax[k / blocksize].
/// code_map is the 16-entry quant_map as stored.
void ek_bnb_dequantize_nf4(const uint8_t *packed, int64_t n, int32_t blocksize, const float *code_map,
                           const float *absmax, float *out);

/// The 65536-entry table bitsandbytes' CPU kernel uses to pick an 8-bit dynamic code: lut[u] is the
/// number of map midpoints strictly below -1 + 2u/65535. Built once, thread-safe.
const uint8_t *ek_bnb_dynamic_lut(void);

#ifdef __cplusplus
}
#endif
#endif
