// AVX-512 (F/BW/VL/DQ; VNNI where present) kernels. Every function here carries the target
// attribute through the pragma, so the file builds without -mavx512* and runs only after dispatch
// has checked the CPU (Skylake-SP / Ice Lake / Zen 4 and later).
#include "ek_internal.h"

#if defined(EK_X86)
#include <immintrin.h>
#include <math.h>
#include <string.h>

int ek_avx512_has_vnni(void);
int ek_avx512_has_vbmi(void);
void ek_q8w_rows_avx2(const ek_q8_matrix *w, int64_t r0, int64_t r1, const int8_t *xq, const float *xd,
                      int64_t n, float *y, int64_t ldy);
void ek_gemv_q8_avx2(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const uint8_t *xq, int64_t n,
                     int64_t xqs, float *y, int64_t ldy, int acc, float *sa);

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq"))), apply_to = function)

#define EK_HAVE_F16C 1
#define EK_HAVE_AVX512_F16 1
#define EKG(name) name##_avx512
#include "ek_generic_impl.h"
#undef EKG

// Absmax of one row's blocks into dst, followed by 16 zeros (vector loads may read past the row).
static inline void load_row_absmax(const ek_nf4_matrix *w, int64_t r, int64_t nbr, float *dst) {
    ek_decode_absmax_range(w, r * nbr, nbr, dst);
    memset(dst + nbr, 0, 16 * sizeof(float));
}

// ---- f32 GEMV: 4 weight rows per pass, up to 4 activation rows per pass -----------------------------
// x is pre-permuted per 32 elements into [16 evens, 16 odds], matching the nibble order of 16 bytes.
static inline __attribute__((always_inline)) void gemv4_f32(const ek_nf4_matrix *w, int64_t r, int nr,
                                                           const float *xp, const int NX, int64_t xps,
                                                           float *y, int64_t ldy, int acc, const float *sa,
                                                           int64_t sas) {
    const int64_t cols = w->cols, bs = w->blocksize, nbr = cols / bs;
    const __m512 code = _mm512_loadu_ps(ek_nf4_code_f32);
    const uint8_t *row[4];
    for (int j = 0; j < 4; j++) row[j] = w->packed + (r + (j < nr ? j : nr - 1)) * cols / 2;
    __m512 s[4][4];
    for (int i = 0; i < NX; i++)
        for (int j = 0; j < 4; j++) s[i][j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nbr; b++) {
        __m512 t[4];
        for (int j = 0; j < 4; j++) t[j] = _mm512_mul_ps(code, _mm512_set1_ps(sa[j * sas + b]));
        for (int64_t k = b * bs; k < (b + 1) * bs; k += 32) {
            __m512 wh[4], wl[4];
            for (int j = 0; j < 4; j++) {
                __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row[j] + k / 2)));
                wh[j] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t[j]);
                wl[j] = _mm512_permutexvar_ps(v, t[j]);   // vpermps reads only index bits 3:0 = low nibble
            }
            for (int i = 0; i < NX; i++) {
                __m512 xe = _mm512_loadu_ps(xp + i * xps + k), xo = _mm512_loadu_ps(xp + i * xps + k + 16);
                for (int j = 0; j < 4; j++) s[i][j] = _mm512_fmadd_ps(wl[j], xo, _mm512_fmadd_ps(wh[j], xe, s[i][j]));
            }
        }
    }
    for (int i = 0; i < NX; i++)
        for (int j = 0; j < nr; j++) {
            float v = _mm512_reduce_add_ps(s[i][j]);
            float *o = y + i * ldy + r + j;
            *o = acc ? *o + v : v;
        }
}

static void gemv_f32_avx512(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const float *xp, int64_t n,
                            int64_t xps, float *y, int64_t ldy, int acc, float *sa) {
    const int64_t nbr = w->cols / w->blocksize, sas = nbr + 16;
    for (int64_t r = r0; r < r1; r += 4) {
        int nr = (int)EK_MIN(4, r1 - r);
        for (int j = 0; j < 4; j++) load_row_absmax(w, r + (j < nr ? j : nr - 1), nbr, sa + j * sas);
        for (int64_t i = 0; i < n; i += 4) {
            int64_t nx = EK_MIN(4, n - i);
            const float *x = xp + i * xps;
            float *yy = y + i * ldy;
            switch (nx) {
            case 4: gemv4_f32(w, r, nr, x, 4, xps, yy, ldy, acc, sa, sas); break;
            case 3: gemv4_f32(w, r, nr, x, 3, xps, yy, ldy, acc, sa, sas); break;
            case 2: gemv4_f32(w, r, nr, x, 2, xps, yy, ldy, acc, sa, sas); break;
            default: gemv4_f32(w, r, nr, x, 1, xps, yy, ldy, acc, sa, sas); break;
            }
        }
    }
}

// One body for both int8 GEMV variants; they differ only in how a packed byte becomes two code bytes.
#define EK_DEFINE_GEMV_Q8(X, UNPACK_HI, UNPACK_LO)                                                                                       \
static inline __attribute__((always_inline)) void gemv4_q8_##X(const ek_nf4_matrix *w, int64_t r, int nr,              \
                                                               const uint8_t *xq, const int NX, int64_t xqs,           \
                                                               float *y, int64_t ldy, int acc,                         \
                                                               const float *sa, int64_t sas) {                         \
    const int64_t cols = w->cols, bs = w->blocksize, ngroups = (cols + 127) / 128;                                     \
    int8_t tb[16];                                                                                                     \
    for (int i = 0; i < 16; i++) tb[i] = (int8_t)(ek_nf4_q8_code[i] + 128);                                            \
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)tb));                                  \
    __m512i idx = _mm512_setzero_si512();                                                                              \
    if (bs < 128) {                                                                                                    \
        int32_t ii[16];                                                                                                \
        for (int l = 0; l < 16; l++) ii[l] = (int32_t)(8 * l / bs);                                                    \
        idx = _mm512_loadu_si512(ii);                                                                                  \
    }                                                                                                                  \
    const uint8_t *row[4];                                                                                             \
    for (int j = 0; j < 4; j++) row[j] = w->packed + (r + (j < nr ? j : nr - 1)) * cols / 2;                           \
    __m512 s[4][4];                                                                                                    \
    for (int i = 0; i < NX; i++)                                                                                       \
        for (int j = 0; j < 4; j++) s[i][j] = _mm512_setzero_ps();                                                     \
    const int64_t tail_bytes = (cols % 128) / 2;                                                                       \
    for (int64_t g = 0; g < ngroups; g++) {                                                                            \
        const __mmask64 mask = (g == ngroups - 1 && tail_bytes) ? (((__mmask64)1 << tail_bytes) - 1) : ~(__mmask64)0;  \
        const int64_t blk = g * 128 / bs;                                                                              \
        __m512i wh[4], wl[4];                                                                                          \
        __m512 dw[4];                                                                                                  \
        for (int j = 0; j < 4; j++) {                                                                                  \
            __m512i v = _mm512_maskz_loadu_epi8(mask, row[j] + g * 64);                                                \
            wh[j] = UNPACK_HI(v, tbl);                                                                                 \
            wl[j] = UNPACK_LO(v, tbl);                                                                                 \
            dw[j] = bs < 128 ? _mm512_permutexvar_ps(idx, _mm512_loadu_ps(sa + j * sas + blk))                         \
                             : _mm512_set1_ps(sa[j * sas + blk]);                                                      \
        }                                                                                                              \
        for (int i = 0; i < NX; i++) {                                                                                 \
            const uint8_t *xg = xq + i * xqs + g * 256;                                                                \
            __m512i xe = _mm512_loadu_si512(xg), xo = _mm512_loadu_si512(xg + 64);                                     \
            __m512 dl = _mm512_loadu_ps(xg + 128);                                                                     \
            __m512i bias = _mm512_loadu_si512(xg + 192);                                                               \
            for (int j = 0; j < 4; j++) {                                                                              \
                __m512i a = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, wh[j], xe), wl[j], xo);                      \
                s[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a), dl), dw[j], s[i][j]);                   \
            }                                                                                                          \
        }                                                                                                              \
    }                                                                                                                  \
    for (int i = 0; i < NX; i++)                                                                                       \
        for (int j = 0; j < nr; j++) {                                                                                 \
            float v = _mm512_reduce_add_ps(s[i][j]);                                                                   \
            float *o = y + i * ldy + r + j;                                                                            \
            *o = acc ? *o + v : v;                                                                                     \
        }                                                                                                              \
}                                                                                                                      \
                                                                                                                       \
static void gemv_q8_##X(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const uint8_t *xq, int64_t n,                  \
                         int64_t xqs, float *y, int64_t ldy, int acc, float *sa) {                                     \
    const int64_t nbr = w->cols / w->blocksize, sas = nbr + 16;                                                        \
    for (int64_t r = r0; r < r1; r += 4) {                                                                             \
        int nr = (int)EK_MIN(4, r1 - r);                                                                               \
        for (int j = 0; j < 4; j++) load_row_absmax(w, r + (j < nr ? j : nr - 1), nbr, sa + j * sas);                  \
        for (int64_t i = 0; i < n; i += 4) {                                                                           \
            int64_t nx = EK_MIN(4, n - i);                                                                             \
            const uint8_t *x = xq + i * xqs;                                                                           \
            float *yy = y + i * ldy;                                                                                   \
            switch (nx) {                                                                                              \
            case 4: gemv4_q8_##X(w, r, nr, x, 4, xqs, yy, ldy, acc, sa, sas); break;                                   \
            case 3: gemv4_q8_##X(w, r, nr, x, 3, xqs, yy, ldy, acc, sa, sas); break;                                   \
            case 2: gemv4_q8_##X(w, r, nr, x, 2, xqs, yy, ldy, acc, sa, sas); break;                                   \
            default: gemv4_q8_##X(w, r, nr, x, 1, xqs, yy, ldy, acc, sa, sas); break;                                  \
            }                                                                                                          \
        }                                                                                                              \
    }                                                                                                                  \
}

// ---- int8 GEMV with VNNI: weights as unsigned bytes (code + 128) via one byte shuffle per nibble ------
// dpbusd(u8 weight, s8 activation) sums 4 products per int32 lane; the +128 is removed by the
// precomputed per-lane bias (-128 * sum of the lane's activations), so no per-row correction is needed.
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), apply_to = function)
#define EK_UNPACK_HI_SHUFFLE(v, tbl) _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(15)))
#define EK_UNPACK_LO_SHUFFLE(v, tbl) _mm512_shuffle_epi8(tbl, _mm512_and_si512(v, _mm512_set1_epi8(15)))
EK_DEFINE_GEMV_Q8(vnni, EK_UNPACK_HI_SHUFFLE, EK_UNPACK_LO_SHUFFLE)

// int8 weight rows (quantised head): dpbusd(|x| as u8, weight with x's sign), 64 values per step,
// lanes 0-7 hold the first 32-block's sum and lanes 8-15 the second's; 4 rows per pass share x.
static void q8w_rows_vnni(const ek_q8_matrix *w, int64_t r0, int64_t r1, const int8_t *xq, const float *xd,
                          int64_t n, float *y, int64_t ldy) {
    const int64_t ld = w->ld, nc = ld / 64;
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t i = 0; i < n; i++) {
        const int8_t *xr = xq + i * ld;
        const float *dr = xd + i * (ld / 32);
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
            const int8_t *w0 = w->q + r * ld, *w1 = w0 + ld, *w2 = w1 + ld, *w3 = w2 + ld;
            __m512 f0 = _mm512_setzero_ps(), f1 = f0, f2 = f0, f3 = f0;
            for (int64_t c = 0; c < nc; c++) {
                const __m512i xv = _mm512_loadu_si512(xr + 64 * c);
                const __m512i ax = _mm512_abs_epi8(xv);
                const __mmask64 neg = _mm512_movepi8_mask(xv);
                const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(dr[2 * c]), _mm256_set1_ps(dr[2 * c + 1]), 1);
#define EK_Q8W_STEP(f, wp)                                                                                   \
    do {                                                                                                    \
        __m512i wv = _mm512_loadu_si512(wp + 64 * c);                                                       \
        f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, ax, _mm512_mask_sub_epi8(wv, neg, zero, wv))), d, f); \
    } while (0)
                EK_Q8W_STEP(f0, w0); EK_Q8W_STEP(f1, w1); EK_Q8W_STEP(f2, w2); EK_Q8W_STEP(f3, w3);
            }
            y[i * ldy + r] = _mm512_reduce_add_ps(f0) * w->scale[r];
            y[i * ldy + r + 1] = _mm512_reduce_add_ps(f1) * w->scale[r + 1];
            y[i * ldy + r + 2] = _mm512_reduce_add_ps(f2) * w->scale[r + 2];
            y[i * ldy + r + 3] = _mm512_reduce_add_ps(f3) * w->scale[r + 3];
        }
        for (; r < r1; r++) {
            const int8_t *w0 = w->q + r * ld;
            __m512 f0 = _mm512_setzero_ps();
            for (int64_t c = 0; c < nc; c++) {
                const __m512i xv = _mm512_loadu_si512(xr + 64 * c);
                const __m512i ax = _mm512_abs_epi8(xv);
                const __mmask64 neg = _mm512_movepi8_mask(xv);
                const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(dr[2 * c]), _mm256_set1_ps(dr[2 * c + 1]), 1);
                EK_Q8W_STEP(f0, w0);
            }
#undef EK_Q8W_STEP
            y[i * ldy + r] = _mm512_reduce_add_ps(f0) * w->scale[r];
        }
    }
}
#pragma clang attribute pop
// The same with AVX512_VBMI (Ice Lake, Zen 4): vpermb reads only index bits 5:0 and never zeroes, so
// with the 16-entry table repeated four times a packed byte indexes its low nibble directly and the
// shifted byte its high nibble — no masking (2 of the 12 vector ops per row and 128 weights).
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi"))), apply_to = function)
#define EK_UNPACK_HI_VPERMB(v, tbl) _mm512_permutexvar_epi8(_mm512_srli_epi16(v, 4), tbl)
#define EK_UNPACK_LO_VPERMB(v, tbl) _mm512_permutexvar_epi8(v, tbl)
EK_DEFINE_GEMV_Q8(vbmi, EK_UNPACK_HI_VPERMB, EK_UNPACK_LO_VPERMB)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq"))), apply_to = function)

// ---- Tiles for the GEMM: dequantise in natural order ------------------------------------------------
static void dequant_tile_fast_avx512(const ek_nf4_matrix *w, int64_t r0, int64_t nr, int64_t k0, int64_t kc,
                                     float *out, int64_t ldo) {
    const int64_t cols = w->cols, bs = w->blocksize;
    const __m512 code = _mm512_loadu_ps(ek_nf4_code_f32);
    const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int64_t j = 0; j < nr; j++) {
        const int64_t r = r0 + j;
        const uint8_t *row = w->packed + r * cols / 2;
        float *o = out + j * ldo;
        int64_t lastb = -1;
        __m512 t = code;
        for (int64_t k = k0; k < k0 + kc; k += 32) {
            int64_t b = (r * cols + k) / bs;
            if (b != lastb) { t = _mm512_mul_ps(code, _mm512_set1_ps(ek_absmax_at(w, b))); lastb = b; }
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + k / 2)));
            __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t);
            __m512 wl = _mm512_permutexvar_ps(v, t);
            _mm512_storeu_ps(o + (k - k0), _mm512_permutex2var_ps(wh, ilo, wl));
            _mm512_storeu_ps(o + (k - k0) + 16, _mm512_permutex2var_ps(wh, ihi, wl));
        }
    }
}

// c[i, :nc] += a[i, :kc] · b[:kc, :32]: 8 rows x 2 zmm of accumulators (10 loads per 16 FMAs).
static inline __attribute__((always_inline)) void mk32_rows(const int MR, int64_t kc, const float *a, int64_t lda,
                                                           const float *b, int64_t ldb, float *c, int64_t ldc,
                                                           __mmask16 m0, __mmask16 m1) {
    __m512 s0[8], s1[8];
    for (int q = 0; q < MR; q++) s0[q] = s1[q] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b + k * ldb), b1 = _mm512_loadu_ps(b + k * ldb + 16);
        for (int q = 0; q < MR; q++) {
            __m512 av = _mm512_set1_ps(a[q * lda + k]);
            s0[q] = _mm512_fmadd_ps(av, b0, s0[q]);
            s1[q] = _mm512_fmadd_ps(av, b1, s1[q]);
        }
    }
    for (int q = 0; q < MR; q++) {
        float *ci = c + q * ldc;
        _mm512_mask_storeu_ps(ci, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), s0[q]));
        _mm512_mask_storeu_ps(ci + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), s1[q]));
    }
}

static void mk32_fast_avx512(int64_t m, int64_t nc, int64_t kc, const float *a, int64_t lda, const float *b,
                             int64_t ldb, float *c, int64_t ldc) {
    const __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xffffu : (1u << nc) - 1);
    const __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xffffu : nc > 16 ? (1u << (nc - 16)) - 1 : 0);
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) mk32_rows(8, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, m0, m1);
    switch (m - i) {
    case 7: mk32_rows(7, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, m0, m1); break;
    case 6: mk32_rows(6, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, m0, m1); break;
    case 5: mk32_rows(5, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, m0, m1); break;
    case 4: mk32_rows(4, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, m0, m1); break;
    case 3: mk32_rows(3, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, m0, m1); break;
    case 2: mk32_rows(2, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, m0, m1); break;
    case 1: mk32_rows(1, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, m0, m1); break;
    default: break;
    }
}

#pragma clang attribute pop

static ek_vtable avx512_table = {
    .name = "avx512",
    .f32_chunk = 32,
    .gemm_by_rows = 1,
    .gemv_f32 = gemv_f32_avx512,
    .q8_group = 128,
    .gemv_q8 = gemv_q8_vnni,
    .dequant_tile = dequant_tile_fast_avx512,
    .mk32 = mk32_fast_avx512,
    .dot = dot_avx512,
    .axpy = axpy_avx512,
    .q8w_rows = q8w_rows_vnni,
    .lora_row = lora_row_avx512,
    .attn_head = attn_head_avx512,
    .attn_group = ek_attn_group_avx512,
    .rmsnorm_row = rmsnorm_row_avx512,
    .silu_mul = silu_mul_avx512,
    .softmax_row = softmax_row_avx512,
    .f16_to_f32 = f16_to_f32_avx512,
};

const ek_vtable *ek_vtable_avx512(void) {
    if (ek_avx512_has_vnni() && ek_avx512_has_vbmi()) avx512_table.gemv_q8 = gemv_q8_vbmi;
    // Without VNNI (Skylake-SP), the int8 path uses the AVX2 maddubs kernel and its layout.
    if (!ek_avx512_has_vnni()) {
        avx512_table.q8_group = 64;
        avx512_table.gemv_q8 = ek_gemv_q8_avx2;
        avx512_table.q8w_rows = ek_q8w_rows_avx2;
    }
    return &avx512_table;
}

#else
const ek_vtable *ek_vtable_avx512(void) { return 0; }
#endif
