// The bitsandbytes 0.50.2 NF4 format, bit for bit (shared/NF4.md §2–§5).
//
// Every rounding step here is deliberate: a full block multiplies by the fp32 reciprocal of its absmax,
// the partial last block divides; the offset is a double-accumulated mean; the 8-bit code comes from the
// same 65536-entry table bitsandbytes' CPU kernel uses. Contraction into FMAs would move last bits on
// targets that have FMA in their baseline (aarch64), so it is switched off for the whole file.
#pragma STDC FP_CONTRACT OFF

#include "edge_nf4_format.h"
#include "edge_kernels.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

static inline float bits_to_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float clamp_unit(float s) {
    return fminf(fmaxf(s, -1.0f), 1.0f);
}

// ---- NF4 blocks ----------------------------------------------------------------------------------

// Code = number of thresholds strictly below s (a value on a threshold takes the lower code).
// Written as a sum of comparisons so the compiler vectorises it over a block.
static void nf4_codes(const float *scaled, int64_t len, uint8_t *codes) {
    float t[15];
    for (int i = 0; i < 15; i++) t[i] = bits_to_float(ek_nf4_threshold_bits[i]);
    for (int64_t k = 0; k < len; k++) {
        const float s = scaled[k];
        int c = 0;
        for (int i = 0; i < 15; i++) c += s > t[i];
        codes[k] = (uint8_t)c;
    }
}

void ek_bnb_quantize_nf4(const float *x, int64_t n, int32_t blocksize, uint8_t *packed, float *absmax) {
    const int64_t nblocks = ek_bnb_block_count(n, blocksize);
    float scaled[4096];
    uint8_t codes[4096 + 1];
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t start = b * blocksize;
        const int64_t len = n - start < blocksize ? n - start : blocksize;
        const float *xb = x + start;
        float amax = 0.0f;
        for (int64_t k = 0; k < len; k++) amax = fmaxf(amax, fabsf(xb[k]));
        absmax[b] = amax;
        const float denom = fmaxf(amax, 1e-38f);
        if (len == blocksize) {
            const float inv = 1.0f / denom;
            for (int64_t k = 0; k < len; k++) scaled[k] = clamp_unit(xb[k] * inv);
        } else {
            for (int64_t k = 0; k < len; k++) scaled[k] = clamp_unit(xb[k] / denom);
        }
        nf4_codes(scaled, len, codes);
        // Blocks start at even offsets (blocksize is even), so byte pairs never straddle two blocks;
        // only the very last element of an odd-length tensor is paired with the padding code 7 (0.0).
        int64_t pairs = len / 2;
        uint8_t *out = packed + start / 2;
        for (int64_t j = 0; j < pairs; j++) out[j] = (uint8_t)((codes[2 * j] << 4) | codes[2 * j + 1]);
        if (len % 2 != 0) out[pairs] = (uint8_t)((codes[len - 1] << 4) | 7);
    }
}

void ek_bnb_dequantize_nf4(const uint8_t *packed, int64_t n, int32_t blocksize, const float *code_map,
                           const float *absmax, float *out) {
    for (int64_t k = 0; k < n; k++) {
        const uint8_t byte = packed[k / 2];
        const uint8_t code = (k % 2 == 0) ? (uint8_t)(byte >> 4) : (uint8_t)(byte & 0x0f);
        out[k] = code_map[code] * absmax[k / blocksize];
    }
}

// ---- double quantisation -------------------------------------------------------------------------

static uint8_t dynamic_lut[65536];
static pthread_once_t dynamic_lut_once = PTHREAD_ONCE_INIT;

static void build_dynamic_lut(void) {
    float mid[255];
    for (int t = 0; t < 255; t++) {
        mid[t] = 0.5f * (bits_to_float(ek_dynamic_map_bits[t]) + bits_to_float(ek_dynamic_map_bits[t + 1]));
    }
    // The probe value rises with u and the midpoints ascend, so the count is a monotone walk.
    int count = 0;
    for (uint32_t u = 0; u < 65536; u++) {
        const float probe = -1.0f + (2.0f * (float)u) / 65535.0f;
        while (count < 255 && mid[count] < probe) count++;
        dynamic_lut[u] = (uint8_t)count;
    }
}

const uint8_t *ek_bnb_dynamic_lut(void) {
    pthread_once(&dynamic_lut_once, build_dynamic_lut);
    return dynamic_lut;
}

float ek_bnb_double_quantize(const float *absmax, int64_t nb, int32_t nested_blocksize,
                             uint8_t *q8, float *nested_absmax) {
    double sum = 0.0;
    for (int64_t i = 0; i < nb; i++) sum += (double)absmax[i];
    const float offset = nb > 0 ? (float)(sum / (double)nb) : 0.0f;
    ek_bnb_double_quantize_with_offset(absmax, nb, nested_blocksize, offset, q8, nested_absmax);
    return offset;
}

void ek_bnb_double_quantize_with_offset(const float *absmax, int64_t nb, int32_t nested_blocksize, float offset,
                                        uint8_t *q8, float *nested_absmax) {
    const uint8_t *lut = ek_bnb_dynamic_lut();
    const int64_t nnested = ek_bnb_block_count(nb, nested_blocksize);
    for (int64_t j = 0; j < nnested; j++) {
        const int64_t start = j * nested_blocksize;
        const int64_t len = nb - start < nested_blocksize ? nb - start : nested_blocksize;
        float amax = 0.0f;
        for (int64_t i = 0; i < len; i++) amax = fmaxf(amax, fabsf(absmax[start + i] - offset));
        nested_absmax[j] = amax;
        if (amax == 0.0f) {
            memset(q8 + start, 0, (size_t)len);
            continue;
        }
        const float inv = 1.0f / amax;
        for (int64_t i = 0; i < len; i++) {
            const float v = clamp_unit((absmax[start + i] - offset) * inv);
            const float pos = ((v + 1.0f) * 0.5f) * 65535.0f + 0.5f;
            q8[start + i] = lut[(uint16_t)pos];
        }
    }
}

void ek_bnb_dequantize_absmax(const uint8_t *q8, int64_t nb, const float *dq_map,
                              const float *nested_absmax, int32_t nested_blocksize, float offset,
                              float *out) {
    for (int64_t i = 0; i < nb; i++) {
        const float scaled = dq_map[q8[i]] * nested_absmax[i / nested_blocksize];
        out[i] = scaled + offset;
    }
}
