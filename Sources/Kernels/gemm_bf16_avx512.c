// Prompt products in bf16 (EK_ACT_BF16) on CPUs with AVX512_BF16 (Zen 4, Cooper Lake, Sapphire Rapids):
// vdpbf16ps does 32 multiply-adds per instruction where an f32 FMA does 16, at the same rate here
// (measured on this Zen 4: 3.6 instructions/ns each), so a compute-bound prefill can run twice as fast.
//
// A panel of up to 16 weight rows is dequantised once (code * absmax in f32, as every variant does,
// then rounded to bf16) into natural order, and every activation row (rounded to bf16 once per call)
// is applied to it. Lanes run along k: accumulator lane l of output (i, r) sums the pairs
// (k, k+1) = (32s + 2l, 32s + 2l + 1) for s = 0, 1, ... in order; the 16 lanes are then added by a
// fixed tree (ek_bf16_lane_sum). An output therefore depends only on its own row of x and of W —
// never on the batch around it — and ek_nf4_gemm_bf16_reference repeats exactly these steps.
#include "ek_internal.h"

#if defined(EK_X86)
#include <immintrin.h>
#include <string.h>

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))), apply_to = function)

// The order ek_nf4_gemm_bf16_reference adds lanes in: halves, quarters, pairs, then the last two.
static inline float lane_sum(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

// count values (a multiple of 32) of x to bf16, round to nearest even.
static void bf16_from_f32_avx512(const float *x, int64_t count, uint16_t *out) {
    for (int64_t k = 0; k < count; k += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k));
        _mm512_storeu_si512(out + k, (__m512i)v);
    }
}

// W rows [r0, r0 + nr) as bf16 in natural order, ldt values per row; rows nr ..< 16 zero.
static void dequant_panel_bf16(const ek_nf4_matrix *w, int64_t r0, int64_t nr, uint16_t *tile, int64_t ldt) {
    const int64_t cols = w->cols, bs = w->blocksize, nbr = cols / bs;
    const __m512 code = _mm512_loadu_ps(ek_nf4_code_f32);
    const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    float am[16 * 64];
    for (int64_t j = 0; j < nr; j++) {
        const uint8_t *row = w->packed + (r0 + j) * cols / 2;
        uint16_t *o = tile + j * ldt;
        for (int64_t b0 = 0; b0 < nbr; b0 += 1024) {
            const int64_t nb = EK_MIN(1024, nbr - b0);
            ek_decode_absmax_range(w, (r0 + j) * nbr + b0, nb, am);
            for (int64_t b = 0; b < nb; b++) {
                const __m512 t = _mm512_mul_ps(code, _mm512_set1_ps(am[b]));
                for (int64_t k = (b0 + b) * bs; k < (b0 + b + 1) * bs; k += 32) {
                    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + k / 2)));
                    __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t);   // elements k + 2m
                    __m512 wl = _mm512_permutexvar_ps(v, t);                          // elements k + 2m + 1
                    __m512bh p = _mm512_cvtne2ps_pbh(_mm512_permutex2var_ps(wh, ihi, wl), _mm512_permutex2var_ps(wh, ilo, wl));
                    _mm512_storeu_si512(o + k, (__m512i)p);
                }
            }
        }
    }
    for (int64_t j = nr; j < 16; j++) memset(tile + j * ldt, 0, (size_t)cols * sizeof(uint16_t));
}

// NX activation rows x 4 weight rows over all of k; 16 accumulators, 8 loads per 16 dot products.
static inline __attribute__((always_inline)) void block_bf16(const uint16_t *tile, int64_t ldt, int nr,
                                                            const uint16_t *xb, const int NX, int64_t ldxb,
                                                            int64_t cols, float *y, int64_t ldy, int acc) {
    __m512 s[4][4];
    for (int i = 0; i < NX; i++)
        for (int j = 0; j < 4; j++) s[i][j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < cols; k += 32) {
        __m512bh wv[4];
        for (int j = 0; j < 4; j++) wv[j] = (__m512bh)_mm512_loadu_si512(tile + j * ldt + k);
        for (int i = 0; i < NX; i++) {
            const __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + i * ldxb + k);
            for (int j = 0; j < 4; j++) s[i][j] = _mm512_dpbf16_ps(s[i][j], xv, wv[j]);
        }
    }
    for (int i = 0; i < NX; i++)
        for (int j = 0; j < nr; j++) {
            const float v = lane_sum(s[i][j]);
            float *o = y + i * ldy + j;
            *o = acc ? *o + v : v;
        }
}

static void gemm_bf16_panel_avx512(const ek_nf4_matrix *w, int64_t r0, int64_t nr, const uint16_t *xb, int64_t n,
                                   int64_t ldxb, float *y, int64_t ldy, int acc, uint16_t *tile) {
    const int64_t cols = w->cols;
    dequant_panel_bf16(w, r0, nr, tile, cols);
    for (int64_t i = 0; i < n; i += 4) {
        const int64_t nx = EK_MIN(4, n - i);
        for (int64_t j = 0; j < nr; j += 4) {
            const int jr = (int)EK_MIN(4, nr - j);
            const uint16_t *t = tile + j * cols, *x = xb + i * ldxb;
            float *o = y + i * ldy + r0 + j;
            switch (nx) {
            case 4: block_bf16(t, cols, jr, x, 4, ldxb, cols, o, ldy, acc); break;
            case 3: block_bf16(t, cols, jr, x, 3, ldxb, cols, o, ldy, acc); break;
            case 2: block_bf16(t, cols, jr, x, 2, ldxb, cols, o, ldy, acc); break;
            default: block_bf16(t, cols, jr, x, 1, ldxb, cols, o, ldy, acc); break;
            }
        }
    }
}

#pragma clang attribute pop

void ek_bf16_install_avx512(ek_vtable *t) {
    t->bf16_from_f32 = bf16_from_f32_avx512;
    t->gemm_bf16_panel = gemm_bf16_panel_avx512;
}

#endif
