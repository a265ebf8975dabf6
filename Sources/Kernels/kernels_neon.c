// NEON (+dotprod) kernels for arm64 boards (Cortex-A55/A76 and later: Raspberry Pi 5, RK3588, Jetson).
// Built only for aarch64; scripts/check-neon compiles this file for aarch64 on x86 hosts.
#include "ek_internal.h"

#if defined(EK_ARM64)
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#pragma clang diagnostic ignored "-Wunused-function"
#define EK_HAVE_NEON_F16 1
#define EKG(name) name##_neon
#include "ek_generic_impl.h"
#undef EKG

// 16 float lookups from a 64-byte table (16 scaled codes): each code c selects bytes 4c ..< 4c+4.
static inline float32x4_t lut4(uint8x16x4_t t, uint8x16_t codes, uint8x16_t rep, uint8x16_t off) {
    uint8x16_t i = vaddq_u8(vshlq_n_u8(vqtbl1q_u8(codes, rep), 2), off);
    return vreinterpretq_f32_u8(vqtbl4q_u8(t, i));
}

static inline uint8x16x4_t scaled_table(float a) {
    uint8x16x4_t t;
    t.val[0] = vreinterpretq_u8_f32(vmulq_n_f32(vld1q_f32(ek_nf4_code_f32), a));
    t.val[1] = vreinterpretq_u8_f32(vmulq_n_f32(vld1q_f32(ek_nf4_code_f32 + 4), a));
    t.val[2] = vreinterpretq_u8_f32(vmulq_n_f32(vld1q_f32(ek_nf4_code_f32 + 8), a));
    t.val[3] = vreinterpretq_u8_f32(vmulq_n_f32(vld1q_f32(ek_nf4_code_f32 + 12), a));
    return t;
}

// 32 weights (16 packed bytes) in natural order into out[0..<32] as 8 float vectors.
static inline void decode32(uint8x16x4_t t, const uint8_t *p, float32x4_t out[8]) {
    static const uint8_t rep_b[4][16] = {
        {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
        {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7},
        {8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11},
        {12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15}};
    static const uint8_t off_b[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    const uint8x16_t off = vld1q_u8(off_b);
    uint8x16_t v = vld1q_u8(p);
    uint8x16_t hi = vshrq_n_u8(v, 4), lo = vandq_u8(v, vdupq_n_u8(15));
    uint8x16_t z0 = vzip1q_u8(hi, lo), z1 = vzip2q_u8(hi, lo);
    for (int q = 0; q < 4; q++) {
        uint8x16_t rep = vld1q_u8(rep_b[q]);
        out[q] = lut4(t, z0, rep, off);
        out[4 + q] = lut4(t, z1, rep, off);
    }
}

// f32 GEMV, natural x order; one weight row and one activation row at a time.
static void gemv_f32_neon(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const float *xp, int64_t n,
                          int64_t xps, float *y, int64_t ldy, int acc, float *sa) {
    const int64_t cols = w->cols, bs = w->blocksize, nbr = cols / bs;
    for (int64_t r = r0; r < r1; r++) {
        ek_decode_absmax_range(w, r * nbr, nbr, sa);
        const uint8_t *row = w->packed + r * cols / 2;
        float32x4_t s[8][2];
        for (int64_t i0 = 0; i0 < n; i0 += 8) {
            const int64_t nx = EK_MIN(8, n - i0);
            for (int64_t i = 0; i < nx; i++) s[i][0] = s[i][1] = vdupq_n_f32(0);
            for (int64_t b = 0; b < nbr; b++) {
                uint8x16x4_t t = scaled_table(sa[b]);
                for (int64_t k = b * bs; k < (b + 1) * bs; k += 32) {
                    float32x4_t wv[8];
                    decode32(t, row + k / 2, wv);
                    for (int64_t i = 0; i < nx; i++) {
                        const float *x = xp + (i0 + i) * xps + k;
                        for (int q = 0; q < 8; q += 2) {
                            s[i][0] = vfmaq_f32(s[i][0], wv[q], vld1q_f32(x + 4 * q));
                            s[i][1] = vfmaq_f32(s[i][1], wv[q + 1], vld1q_f32(x + 4 * q + 4));
                        }
                    }
                }
            }
            for (int64_t i = 0; i < nx; i++) {
                float v = vaddvq_f32(vaddq_f32(s[i][0], s[i][1]));
                float *o = y + (i0 + i) * ldy + r;
                *o = acc ? *o + v : v;
            }
        }
    }
}

// int8 GEMV with sdot: signed codebook by vqtbl1q, 16 packed bytes = one 32-element activation block.
__attribute__((target("dotprod")))
static void gemv_q8_neon(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const uint8_t *xq, int64_t n,
                         int64_t xqs, float *y, int64_t ldy, int acc, float *sa) {
    const int64_t cols = w->cols, bs = w->blocksize, nbr = cols / bs, ngroups = cols / 32;
    const int8x16_t tbl = vld1q_s8(ek_nf4_q8_code);
    const uint8x16_t m15 = vdupq_n_u8(15);
    for (int64_t r = r0; r < r1; r++) {
        ek_decode_absmax_range(w, r * nbr, nbr, sa);
        const uint8_t *row = w->packed + r * cols / 2;
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *xr = xq + i * xqs;
            float32x4_t s = vdupq_n_f32(0);
            for (int64_t g = 0; g < ngroups; g++) {
                uint8x16_t v = vld1q_u8(row + g * 16);
                int8x16_t wh = vqtbl1q_s8(tbl, vshrq_n_u8(v, 4)), wl = vqtbl1q_s8(tbl, vandq_u8(v, m15));
                const uint8_t *xg = xr + g * 64;
                int32x4_t a = vdotq_s32(vdupq_n_s32(0), wh, vld1q_s8((const int8_t *)xg));
                a = vdotq_s32(a, wl, vld1q_s8((const int8_t *)(xg + 16)));
                const float d = ((const float *)(xg + 32))[0];
                s = vfmaq_n_f32(s, vcvtq_f32_s32(a), d * sa[g * 32 / bs]);
            }
            float v = vaddvq_f32(s);
            float *o = y + i * ldy + r;
            *o = acc ? *o + v : v;
        }
    }
}

static void dequant_tile_fast_neon(const ek_nf4_matrix *w, int64_t r0, int64_t nr, int64_t k0, int64_t kc,
                                   float *out, int64_t ldo) {
    const int64_t cols = w->cols, bs = w->blocksize;
    for (int64_t j = 0; j < nr; j++) {
        const int64_t r = r0 + j;
        const uint8_t *row = w->packed + r * cols / 2;
        float *o = out + j * ldo;
        int64_t lastb = -1;
        uint8x16x4_t t = scaled_table(1.0f);
        for (int64_t k = k0; k < k0 + kc; k += 32) {
            int64_t b = (r * cols + k) / bs;
            if (b != lastb) { t = scaled_table(ek_absmax_at(w, b)); lastb = b; }
            float32x4_t wv[8];
            decode32(t, row + k / 2, wv);
            for (int q = 0; q < 8; q++) vst1q_f32(o + (k - k0) + 4 * q, wv[q]);
        }
    }
}

static const ek_vtable neon_table = {
    .name = "neon",
    .f32_chunk = 0,
    .gemv_f32 = gemv_f32_neon,
    .q8_group = 32,
    .gemv_q8 = gemv_q8_neon,
    .dequant_tile = dequant_tile_fast_neon,
    .mk32 = mk32_neon,
    .dot = dot_neon,
    .axpy = axpy_neon,
    .q8w_rows = q8w_rows_neon,
    .decode_absmax = ek_decode_absmax_range,
    .lora_row = lora_row_neon,
    .q8_quant_row = q8_quant_row_neon,
    .lora_down_q8 = lora_down_q8_neon,
    .lora_up_acc_q8 = lora_up_acc_q8_neon,
    .lora_add_acc = lora_add_acc_neon,
    .attn_head = attn_head_neon,
    .rmsnorm_row = rmsnorm_row_neon,
    .silu_mul = silu_mul_neon,
    .softmax_row = softmax_row_neon,
    .f16_to_f32 = f16_to_f32_neon,
    .f32_to_f16 = f32_to_f16_neon,
};

const ek_vtable *ek_vtable_neon(void) { return &neon_table; }

#else
const ek_vtable *ek_vtable_neon(void) { return 0; }
#endif
