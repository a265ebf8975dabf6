// The portable scalar reference: always built, always tested, and the path for layouts the SIMD
// variants do not take (blocks spanning rows). Also the shared helpers every variant uses
// (activation preparation, absmax decoding, f16 conversion).
#include "ek_internal.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int8_t ek_nf4_q8_code[16];
float ek_nf4_code_f32[16];
float ek_dq_map_f32[256];

void ek_tables_init(void) {
    for (int i = 0; i < 16; i++) {
        float c;
        memcpy(&c, &ek_nf4_code_bits[i], 4);
        ek_nf4_code_f32[i] = c;
        ek_nf4_q8_code[i] = (int8_t)lrintf(c * 127.0f);
    }
    for (int i = 0; i < 256; i++) memcpy(&ek_dq_map_f32[i], &ek_dynamic_map_bits[i], 4);
}

uint16_t ek_f16_bits_from_f32(float x) {
    uint32_t f;
    memcpy(&f, &x, 4);
    const uint32_t sign = (f >> 16) & 0x8000u, e = (f >> 23) & 0xff;
    uint32_t m = f & 0x7fffffu;
    if (e == 0xff) return (uint16_t)(sign | 0x7c00u | (m ? 0x200u | (m >> 13) : 0));
    const int32_t he = (int32_t)e - 127 + 15;
    if (he >= 31) return (uint16_t)(sign | 0x7c00u);
    if (he <= 0) {
        if (he < -10) return (uint16_t)sign;
        m |= 0x800000u;
        const uint32_t shift = (uint32_t)(14 - he), rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        uint32_t hm = m >> shift;
        if (rem > halfway || (rem == halfway && (hm & 1))) hm++;
        return (uint16_t)(sign | hm);
    }
    const uint32_t hm = m >> 13, rem = m & 0x1fffu;
    uint32_t v = ((uint32_t)he << 10) | hm;
    if (rem > 0x1000u || (rem == 0x1000u && (hm & 1))) v++;   // may carry into the exponent
    return (uint16_t)(sign | v);
}

float ek_f16_bits_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {   // subnormal: normalise
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void ek_decode_absmax_range(const ek_nf4_matrix *w, int64_t b0, int64_t count, float *out) {
    if (w->absmax_f32) {
        memcpy(out, w->absmax_f32 + b0, (size_t)count * sizeof(float));
        return;
    }
    // Runs of one nested block at a time: no 64-bit division per block (it cost more than the whole
    // dot product of a 64-weight block in the GEMV), the same fp32 ops in the same order.
    const int64_t nbs = w->nested_blocksize, end = b0 + count;
    const float off = w->offset;
    const uint8_t *q = w->absmax_q8;
    const float *map = w->dq_map;
    int64_t b = b0;
    while (b < end) {
        const int64_t j = b / nbs, stop = EK_MIN(end, (j + 1) * nbs);
        const float na = w->nested_absmax[j];
        for (; b < stop; b++) {
            float m = map[q[b]] * na;
            out[b - b0] = m + off;
        }
    }
}

void ek_prep_f32(const float *x, int64_t cols, int32_t chunk, float *xp) {
    if (chunk == 0) {
        memcpy(xp, x, (size_t)cols * sizeof(float));
        return;
    }
    const int32_t half = chunk / 2;
    for (int64_t c = 0; c < cols; c += chunk)
        for (int32_t j = 0; j < half; j++) {
            xp[c + j] = x[c + 2 * j];
            xp[c + half + j] = x[c + 2 * j + 1];
        }
}

int64_t ek_q8_row_bytes(int64_t cols, const ek_vtable *vt) {
    if (vt->q8_row_bytes) return vt->q8_row_bytes(cols);
    return (cols + vt->q8_group - 1) / vt->q8_group * 2 * vt->q8_group;
}

void ek_prep_q8(const float *x, int64_t cols, int32_t group, uint8_t *xq) {
    const ek_vtable *vt = ek_active();
    if (vt->prep_q8 && vt->q8_group == group) {
        vt->prep_q8(x, cols, xq);
        return;
    }
    const int64_t ngroups = (cols + group - 1) / group;
    const int32_t lanes = group / 8, blocks = group / 32;
    for (int64_t g = 0; g < ngroups; g++) {
        uint8_t *base = xq + g * 2 * group;
        int8_t *ev = (int8_t *)base, *od = (int8_t *)(base + group / 2);
        float *dl = (float *)(base + group);
        int32_t *bias = (int32_t *)(base + group + group / 2);
        for (int32_t L = 0; L < blocks; L++) {
            int64_t e0 = g * group + 32 * L;
            float amax = 0;
            for (int j = 0; j < 32; j++) {
                float v = e0 + j < cols ? fabsf(x[e0 + j]) : 0.0f;
                amax = v > amax ? v : amax;
            }
            float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
            for (int j = 0; j < 16; j++) {
                float a = e0 + 2 * j < cols ? x[e0 + 2 * j] : 0.0f;
                float b = e0 + 2 * j + 1 < cols ? x[e0 + 2 * j + 1] : 0.0f;
                ev[16 * L + j] = (int8_t)lrintf(a * id);
                od[16 * L + j] = (int8_t)lrintf(b * id);
            }
            for (int l = 0; l < 4; l++) dl[4 * L + l] = d / 127.0f;
        }
        for (int32_t l = 0; l < lanes; l++) {
            int32_t s = 0;
            for (int t = 0; t < 4; t++) s += ev[4 * l + t] + od[4 * l + t];
            bias[l] = -128 * s;
        }
    }
}

// ---- Scalar NF4 kernels (any layout) -------------------------------------------------------------

// y[i, r] (+)= sum_k (code * absmax) * x[i, k]: dequantise then multiply, one block run at a time.
static void gemv_f32_scalar(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const float *xp, int64_t n,
                            int64_t xps, float *y, int64_t ldy, int acc, float *sa) {
    (void)sa;
    const int64_t cols = w->cols, bs = w->blocksize;
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t i = 0; i < n; i++) {
            const float *x = xp + i * xps;
            float total = 0;
            int64_t e = r * cols, end = e + cols;
            while (e < end) {
                int64_t b = e / bs, stop = EK_MIN(end, (b + 1) * bs);
                float a = ek_absmax_at(w, b), part = 0;
                for (; e < stop; e++) {
                    uint8_t byte = w->packed[e >> 1];
                    int code = (e & 1) ? (byte & 15) : (byte >> 4);
                    part += (ek_nf4_code_f32[code] * a) * x[e - r * cols];
                }
                total += part;
            }
            y[i * ldy + r] = acc ? y[i * ldy + r] + total : total;
        }
    }
}

// Int8 reference over the q8 layout with group 32 (one activation block per group); the weight
// codebook is ek_nf4_q8_code. Needs cols % blocksize == 0 (blocks never span rows).
static void gemv_q8_scalar(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const uint8_t *xq, int64_t n,
                           int64_t xqs, float *y, int64_t ldy, int acc, float *sa) {
    (void)sa;
    const int64_t cols = w->cols, bs = w->blocksize, ngroups = cols / 32;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w->packed + r * cols / 2;
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *xr = xq + i * xqs;
            float total = 0;
            for (int64_t g = 0; g < ngroups; g++) {
                const int8_t *ev = (const int8_t *)(xr + g * 64), *od = ev + 16;
                const float *dl = (const float *)(xr + g * 64 + 32);
                int32_t isum = 0;
                for (int j = 0; j < 16; j++) {
                    uint8_t byte = row[g * 16 + j];
                    isum += ek_nf4_q8_code[byte >> 4] * ev[j] + ek_nf4_q8_code[byte & 15] * od[j];
                }
                total += (float)isum * dl[0] * ek_absmax_at(w, (r * cols + g * 32) / bs);
            }
            y[i * ldy + r] = acc ? y[i * ldy + r] + total : total;
        }
    }
}

#define EKG(name) name##_scalar
#include "ek_generic_impl.h"
#undef EKG

uint16_t ek_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);           // zero, denormal
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);  // NaN, kept quiet
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// One step of vdpbf16ps for one lane: the product of two bf16 values is exact in f32, so acc + a*b
// rounds once, as the instruction's fused add does; results below FLT_MIN become zero.
static float bf16_step(float acc, float a, float b) {
    float r = acc + a * b;
    return fabsf(r) < FLT_MIN ? copysignf(0.0f, r) : r;
}

int32_t ek_nf4_gemm_bf16_reference(const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx,
                                   float *y, int64_t ldy, int32_t flags) {
    int32_t st = ek_nf4_check(w);
    if (st) return st;
    if (n < 0 || w->cols % 32 != 0 || w->cols % w->blocksize != 0) return EK_ERR_SHAPE;
    if (n > 0 && (!x || !y)) return EK_ERR_NULL;
    if (ldx < w->cols || ldy < w->rows) return EK_ERR_STRIDE;
    const int64_t cols = w->cols;
    float *wr = malloc((size_t)cols * sizeof(float)), *xr = malloc((size_t)cols * sizeof(float));
    if (!wr || !xr) { free(wr); free(xr); return EK_ERR_NOMEM; }
    for (int64_t r = 0; r < w->rows; r++) {
        dequant_tile_scalar(w, r, 1, 0, cols, wr, cols);
        for (int64_t k = 0; k < cols; k++) wr[k] = bf16_value(ek_bf16_bits(wr[k]));
        for (int64_t i = 0; i < n; i++) {
            for (int64_t k = 0; k < cols; k++) xr[k] = bf16_value(ek_bf16_bits(x[i * ldx + k]));
            float p[16] = {0};
            for (int64_t s = 0; s < cols; s += 32)
                for (int l = 0; l < 16; l++) {
                    p[l] = bf16_step(p[l], xr[s + 2 * l + 1], wr[s + 2 * l + 1]);
                    p[l] = bf16_step(p[l], xr[s + 2 * l], wr[s + 2 * l]);
                }
            for (int h = 8; h >= 1; h /= 2)
                for (int l = 0; l < h; l++) p[l] += p[l + h];
            float *o = y + i * ldy + r;
            *o = (flags & EK_ACCUMULATE) ? *o + p[0] : p[0];
        }
    }
    free(wr);
    free(xr);
    return EK_OK;
}

static const ek_vtable scalar_table = {
    .name = "scalar",
    .f32_chunk = 0,
    .gemv_f32 = gemv_f32_scalar,
    .q8_group = 32,
    .gemv_q8 = gemv_q8_scalar,
    .dequant_tile = dequant_tile_scalar,
    .mk32 = mk32_scalar,
    .dot = dot_scalar,
    .axpy = axpy_scalar,
    .q8w_rows = q8w_rows_scalar,
    .decode_absmax = ek_decode_absmax_range,
    .lora_row = lora_row_scalar,
    .q8_quant_row = q8_quant_row_scalar,
    .lora_down_q8 = lora_down_q8_scalar,
    .lora_up_acc_q8 = lora_up_acc_q8_scalar,
    .lora_add_acc = lora_add_acc_scalar,
    .attn_head = attn_head_scalar,
    .rmsnorm_row = rmsnorm_row_scalar,
    .silu_mul = silu_mul_scalar,
    .softmax_row = softmax_row_scalar,
    .f16_to_f32 = f16_to_f32_scalar,
    .f32_to_f16 = f32_to_f16_scalar,
};

const ek_vtable *ek_vtable_scalar(void) { return &scalar_table; }

