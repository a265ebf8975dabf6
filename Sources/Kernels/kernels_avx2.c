// AVX2 + FMA (+F16C) kernels: Haswell / Zen 1 and later. 16 ymm registers, so the GEMV works on 2
// weight rows per pass (two scaled 8-entry half tables per row).
#include "ek_internal.h"

#if defined(EK_X86)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)

#define EK_HAVE_F16C 1
#define EKG(name) name##_avx2
#include "ek_generic_impl.h"
#undef EKG

static inline void load_row_absmax(const ek_nf4_matrix *w, int64_t r, int64_t nbr, float *dst) {
    ek_decode_absmax_range(w, r * nbr, nbr, dst);
    memset(dst + nbr, 0, 16 * sizeof(float));
}

// 16-entry float lookup from two 8-entry halves; bit 3 of the index picks the half.
static inline __m256 lut16(__m256 lo, __m256 hi, __m256i idx) {
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx),
                            _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

// x pre-permuted per 16 elements into [8 evens, 8 odds].
static inline __attribute__((always_inline)) void gemv2_f32(const ek_nf4_matrix *w, int64_t r, int nr,
                                                           const float *xp, const int NX, int64_t xps,
                                                           float *y, int64_t ldy, int acc, const float *sa,
                                                           int64_t sas) {
    const int64_t cols = w->cols, bs = w->blocksize, nbr = cols / bs;
    const __m256 clo = _mm256_loadu_ps(ek_nf4_code_f32), chi = _mm256_loadu_ps(ek_nf4_code_f32 + 8);
    const uint8_t *row[2];
    for (int j = 0; j < 2; j++) row[j] = w->packed + (r + (j < nr ? j : nr - 1)) * cols / 2;
    __m256 s[2][2];
    for (int i = 0; i < NX; i++) s[i][0] = s[i][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nbr; b++) {
        __m256 tl[2], th[2];
        for (int j = 0; j < 2; j++) {
            __m256 a = _mm256_set1_ps(sa[j * sas + b]);
            tl[j] = _mm256_mul_ps(clo, a);
            th[j] = _mm256_mul_ps(chi, a);
        }
        for (int64_t k = b * bs; k < (b + 1) * bs; k += 16) {
            __m256 wh[2], wl[2];
            for (int j = 0; j < 2; j++) {
                __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row[j] + k / 2)));
                wh[j] = lut16(tl[j], th[j], _mm256_srli_epi32(v, 4));
                wl[j] = lut16(tl[j], th[j], v);   // lut16 reads only bits 3:0 of each index
            }
            for (int i = 0; i < NX; i++) {
                __m256 xe = _mm256_loadu_ps(xp + i * xps + k), xo = _mm256_loadu_ps(xp + i * xps + k + 8);
                for (int j = 0; j < 2; j++) s[i][j] = _mm256_fmadd_ps(wl[j], xo, _mm256_fmadd_ps(wh[j], xe, s[i][j]));
            }
        }
    }
    for (int i = 0; i < NX; i++)
        for (int j = 0; j < nr; j++) {
            __m128 q = _mm_add_ps(_mm256_castps256_ps128(s[i][j]), _mm256_extractf128_ps(s[i][j], 1));
            q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            q = _mm_add_ss(q, _mm_movehdup_ps(q));
            float v = _mm_cvtss_f32(q);
            float *o = y + i * ldy + r + j;
            *o = acc ? *o + v : v;
        }
}

static void gemv_f32_avx2(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const float *xp, int64_t n,
                          int64_t xps, float *y, int64_t ldy, int acc, float *sa) {
    const int64_t nbr = w->cols / w->blocksize, sas = nbr + 16;
    for (int64_t r = r0; r < r1; r += 2) {
        int nr = (int)EK_MIN(2, r1 - r);
        for (int j = 0; j < 2; j++) load_row_absmax(w, r + (j < nr ? j : nr - 1), nbr, sa + j * sas);
        for (int64_t i = 0; i < n; i += 2) {
            const float *x = xp + i * xps;
            float *yy = y + i * ldy;
            if (n - i >= 2) gemv2_f32(w, r, nr, x, 2, xps, yy, ldy, acc, sa, sas);
            else gemv2_f32(w, r, nr, x, 1, xps, yy, ldy, acc, sa, sas);
        }
    }
}

// ---- int8 GEMV: signed codebook by byte shuffle, maddubs with the sign trick (|w| * sign(x, w)) -------
// JR weight rows x NX activation rows per pass: each weight group is unpacked once and applied to every
// activation row of the pass while it is in registers. Every (activation row, weight row) output is the
// same ops in the same order whatever JR and NX, so a row's bits do not depend on its batch or tile.
// One weight row x 8 activation rows measured faster at n = 8 than 2 x 4 (and 2 x 2 before, which
// unpacked each group once per pair of activation rows); n = 1 keeps 2 weight rows per pass.
static inline __attribute__((always_inline)) void gemv_tile_q8(const ek_nf4_matrix *w, int64_t r, int nr,
                                                              const int JR, const uint8_t *xq, const int NX,
                                                              int64_t xqs, float *y, int64_t ldy, int acc,
                                                              const float *sa, int64_t sas) {
    const int64_t cols = w->cols, bs = w->blocksize, ngroups = (cols + 63) / 64;
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ek_nf4_q8_code));
    const __m256i m15 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const __m256i idx = bs < 64 ? _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1) : _mm256_setzero_si256();
    const uint8_t *row[2];
    for (int j = 0; j < JR; j++) row[j] = w->packed + (r + (j < nr ? j : nr - 1)) * cols / 2;
    __m256 s[8];
    _Pragma("clang loop unroll(full)")
    for (int k = 0; k < NX * JR; k++) s[k] = _mm256_setzero_ps();
    const int half_tail = (cols % 64) != 0;
    for (int64_t g = 0; g < ngroups; g++) {
        const int64_t blk = g * 64 / bs;
        __m256i wh[2], wl[2], ah[2], al[2];
        __m256 dw[2];
        _Pragma("clang loop unroll(full)")
        for (int j = 0; j < JR; j++) {
            __m256i v = (g == ngroups - 1 && half_tail)
                            ? _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(row[j] + g * 32)))
                            : _mm256_loadu_si256((const __m256i *)(row[j] + g * 32));
            wh[j] = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(v, 4), m15));
            wl[j] = _mm256_shuffle_epi8(tbl, _mm256_and_si256(v, m15));
            ah[j] = _mm256_abs_epi8(wh[j]);
            al[j] = _mm256_abs_epi8(wl[j]);
            dw[j] = _mm256_permutevar8x32_ps(_mm256_loadu_ps(sa + j * sas + blk), idx);
        }
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < NX; i++) {
            const uint8_t *xg = xq + i * xqs + g * 128;
            __m256i xe = _mm256_loadu_si256((const __m256i *)xg), xo = _mm256_loadu_si256((const __m256i *)(xg + 32));
            __m256 dl = _mm256_loadu_ps((const float *)(xg + 64));
            _Pragma("clang loop unroll(full)")
            for (int j = 0; j < JR; j++) {
                __m256i pe = _mm256_madd_epi16(_mm256_maddubs_epi16(ah[j], _mm256_sign_epi8(xe, wh[j])), ones);
                __m256i po = _mm256_madd_epi16(_mm256_maddubs_epi16(al[j], _mm256_sign_epi8(xo, wl[j])), ones);
                __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(pe, po)), dl);
                s[i * JR + j] = _mm256_fmadd_ps(f, dw[j], s[i * JR + j]);
            }
        }
    }
    _Pragma("clang loop unroll(full)")
    for (int i = 0; i < NX; i++)
        _Pragma("clang loop unroll(full)")
        for (int j = 0; j < JR; j++) {
            if (j >= nr) continue;
            __m128 q = _mm_add_ps(_mm256_castps256_ps128(s[i * JR + j]), _mm256_extractf128_ps(s[i * JR + j], 1));
            q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            q = _mm_add_ss(q, _mm_movehdup_ps(q));
            float v = _mm_cvtss_f32(q);
            float *o = y + i * ldy + r + j;
            *o = acc ? *o + v : v;
        }
}

#define EK_Q8T(NX) case NX: gemv_tile_q8(w, r, 1, 1, x, NX, xqs, yy, ldy, acc, sa, sas); break;

void ek_gemv_q8_avx2(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const uint8_t *xq, int64_t n,
                     int64_t xqs, float *y, int64_t ldy, int acc, float *sa) {
    const int64_t nbr = w->cols / w->blocksize, sas = nbr + 16;
    if (n == 1) {
        for (int64_t r = r0; r < r1; r += 2) {
            int nr = (int)EK_MIN(2, r1 - r);
            for (int j = 0; j < 2; j++) load_row_absmax(w, r + (j < nr ? j : nr - 1), nbr, sa + j * sas);
            gemv_tile_q8(w, r, nr, 2, xq, 1, xqs, y, ldy, acc, sa, sas);
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        load_row_absmax(w, r, nbr, sa);
        for (int64_t i = 0; i < n; i += 8) {
            const uint8_t *x = xq + i * xqs;
            float *yy = y + i * ldy;
            switch (EK_MIN(8, n - i)) {
                EK_Q8T(8) EK_Q8T(7) EK_Q8T(6) EK_Q8T(5) EK_Q8T(4) EK_Q8T(3) EK_Q8T(2)
                default: gemv_tile_q8(w, r, 1, 1, x, 1, xqs, yy, ldy, acc, sa, sas);
            }
        }
    }
}
#undef EK_Q8T

// ---- GEMM tiles -------------------------------------------------------------------------------------------
static void dequant_tile_fast_avx2(const ek_nf4_matrix *w, int64_t r0, int64_t nr, int64_t k0, int64_t kc,
                                   float *out, int64_t ldo) {
    const int64_t cols = w->cols, bs = w->blocksize;
    const __m256 clo = _mm256_loadu_ps(ek_nf4_code_f32), chi = _mm256_loadu_ps(ek_nf4_code_f32 + 8);
    for (int64_t j = 0; j < nr; j++) {
        const int64_t r = r0 + j;
        const uint8_t *row = w->packed + r * cols / 2;
        float *o = out + j * ldo;
        int64_t lastb = -1;
        __m256 tl = clo, th = chi;
        for (int64_t k = k0; k < k0 + kc; k += 16) {
            int64_t b = (r * cols + k) / bs;
            if (b != lastb) {
                __m256 a = _mm256_set1_ps(ek_absmax_at(w, b));
                tl = _mm256_mul_ps(clo, a);
                th = _mm256_mul_ps(chi, a);
                lastb = b;
            }
            __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + k / 2)));
            __m256 wh = lut16(tl, th, _mm256_srli_epi32(v, 4)), wl = lut16(tl, th, v);
            __m256 lo = _mm256_unpacklo_ps(wh, wl), hi = _mm256_unpackhi_ps(wh, wl);
            _mm256_storeu_ps(o + (k - k0), _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(o + (k - k0) + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        }
    }
}

// c[i, :nc] += a[i, :kc] · b[:kc, :16]: 6 rows x 2 ymm of accumulators.
static void mk16_fast_avx2(int64_t m, int64_t nc, int64_t kc, const float *a, int64_t lda, const float *b,
                           int64_t ldb, float *c, int64_t ldc) {
    int64_t i = 0;
    for (; i + 6 <= m; i += 6) {
        __m256 s[6][2];
        for (int q = 0; q < 6; q++) s[q][0] = s[q][1] = _mm256_setzero_ps();
        const float *ai = a + i * lda;
        for (int64_t k = 0; k < kc; k++) {
            __m256 b0 = _mm256_loadu_ps(b + k * ldb), b1 = _mm256_loadu_ps(b + k * ldb + 8);
            for (int q = 0; q < 6; q++) {
                __m256 av = _mm256_broadcast_ss(ai + q * lda + k);
                s[q][0] = _mm256_fmadd_ps(av, b0, s[q][0]);
                s[q][1] = _mm256_fmadd_ps(av, b1, s[q][1]);
            }
        }
        for (int q = 0; q < 6; q++) {
            float tmp[16];
            _mm256_storeu_ps(tmp, s[q][0]);
            _mm256_storeu_ps(tmp + 8, s[q][1]);
            float *ci = c + (i + q) * ldc;
            for (int64_t l = 0; l < nc; l++) ci[l] += tmp[l];
        }
    }
    if (i < m) mk16_avx2(m - i, nc, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc);
}

static void mk32_fast_avx2(int64_t m, int64_t nc, int64_t kc, const float *a, int64_t lda, const float *b,
                           int64_t ldb, float *c, int64_t ldc) {
    mk16_fast_avx2(m, EK_MIN(nc, 16), kc, a, lda, b, ldb, c, ldc);
    if (nc > 16) mk16_fast_avx2(m, nc - 16, kc, a, lda, b + 16, ldb, c + 16, ldc);
}

// ---- int8 weight rows (quantised head): llama.cpp's Q8_0 dot, 4 rows per pass -----------------------
// maddubs needs an unsigned operand: |x| as u8 and the weight with x's sign moved onto it; pair sums
// stay <= 2*127*127, below the int16 saturation point.
static inline float hsum8(__m256 v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

// JR weight rows x NX activation rows per pass, each 32-byte weight chunk loaded once for all NX rows
// (the head's 28 MB of weights then stream from DRAM once per call instead of once per activation row).
// Per (activation row, weight row) the ops and their order are those of the one-row form, so a row's
// bits do not depend on its batch.
static inline __attribute__((always_inline)) void q8w_tile_avx2(const ek_q8_matrix *w, int64_t r, const int JR,
                                                               const int8_t *xq, const float *xd, const int NX,
                                                               float *y, int64_t ldy) {
    const int64_t ld = w->ld, nb = ld / 32;
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *wr = w->q + r * ld;
    __m256 f[8];
    _Pragma("clang loop unroll(full)")
    for (int k = 0; k < NX * JR; k++) f[k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        // Short rows: prefetch EK_Q8W_PREFETCH_ROWS ahead into L2 (ek_internal.h), one line per two steps.
        if ((b & 1) == 0)
            _Pragma("clang loop unroll(full)")
            for (int j = 0; j < JR; j++)
                _mm_prefetch((const char *)(wr + (EK_Q8W_PREFETCH_ROWS + j) * ld + 32 * b), _MM_HINT_T1);
        __m256i wv[4];
        _Pragma("clang loop unroll(full)")
        for (int j = 0; j < JR; j++) wv[j] = _mm256_loadu_si256((const __m256i *)(wr + j * ld + 32 * b));
        _Pragma("clang loop unroll(full)")
        for (int i = 0; i < NX; i++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + i * ld + 32 * b));
            const __m256i ax = _mm256_sign_epi8(xv, xv);
            const __m256 d = _mm256_set1_ps(xd[i * nb + b]);
            _Pragma("clang loop unroll(full)")
            for (int j = 0; j < JR; j++)
                f[i * JR + j] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv[j], xv)), ones)),
                    d, f[i * JR + j]);
        }
    }
    _Pragma("clang loop unroll(full)")
    for (int i = 0; i < NX; i++)
        _Pragma("clang loop unroll(full)")
        for (int j = 0; j < JR; j++) y[i * ldy + r + j] = hsum8(f[i * JR + j]) * w->scale[r + j];
}

#define EK_Q8W_T(NX) case NX: q8w_tile_avx2(w, r, 1, x, d, NX, yy, ldy); break;

// n = 1: 4 weight rows per pass as before; batches: 1 weight row x up to 8 activation rows (measured
// faster at n = 8 than 2 x 4).
void ek_q8w_rows_avx2(const ek_q8_matrix *w, int64_t r0, int64_t r1, const int8_t *xq, const float *xd,
                      int64_t n, float *y, int64_t ldy, void *scratch) {
    (void)scratch;
    const int64_t ld = w->ld, nb = ld / 32;
    if (n == 1) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) q8w_tile_avx2(w, r, 4, xq, xd, 1, y, ldy);
        for (; r < r1; r++) q8w_tile_avx2(w, r, 1, xq, xd, 1, y, ldy);
        return;
    }
    for (int64_t r = r0; r < r1; r++)
        for (int64_t i = 0; i < n; i += 8) {
            const int8_t *x = xq + i * ld;
            const float *d = xd + i * nb;
            float *yy = y + i * ldy;
            switch (EK_MIN(8, n - i)) {
                EK_Q8W_T(8) EK_Q8W_T(7) EK_Q8W_T(6) EK_Q8W_T(5) EK_Q8W_T(4) EK_Q8W_T(3) EK_Q8W_T(2)
                default: q8w_tile_avx2(w, r, 1, x, d, 1, yy, ldy);
            }
        }
#undef EK_Q8W_T
}

// ---- int8 LoRA slots: the same bits as q8_quant_row, lora_down_q8 and lora_up_acc_q8 in
// ek_generic_impl.h.
// Products by maddubs on |x| and sign(w, x): each pair sum is at most 2 * 127 * 127 (int8 values are
// -127...127 here), so no int16 saturates; madd with ones makes the int32 lane of 4 products exact.
// 16 lanes per 64 values as two 8-lane halves, scaled and accumulated per lane as the generic code.

static inline __m256i dot4_i8_abs_avx2(__m256i w, __m256i x, __m256i ax) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, x)), _mm256_set1_epi16(1));
}
static inline __m256i dot4_i8_avx2(__m256i w, __m256i x) { return dot4_i8_abs_avx2(w, x, _mm256_sign_epi8(x, x)); }

// The generic halving sum over 16 lanes held as lo (0-7) and hi (8-15).
static inline float lora_halving_sum_avx2(__m256 lo, __m256 hi) {
    __m256 h = _mm256_add_ps(lo, hi);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
}

// The low byte of each int32 lane (the scalar code's int8_t conversion of lrintf), 8 lanes to 8 bytes.
static inline void store_low_bytes_avx2(int8_t *dst, __m256i v) {
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i b = _mm256_shuffle_epi8(v, pick);
    const int32_t lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(b)), hi = _mm_cvtsi128_si32(_mm256_extracti128_si256(b, 1));
    memcpy(dst, &lo, 4);
    memcpy(dst + 4, &hi, 4);
}

static void q8_quant_row_avx2_simd(const float *x, int64_t cols, int64_t ld, int8_t *xq, float *xd) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < ld / 32; b++) {
        const int64_t k0 = 32 * b;
        if (k0 + 32 > cols) {   // the partial and empty blocks past cols: the portable loop
            q8_quant_row_avx2(x + k0, EK_MAX(0, cols - k0), 32, xq + k0, xd + b);
            continue;
        }
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int q = 0; q < 4; q++) {
            v[q] = _mm256_loadu_ps(x + k0 + 8 * q);
            // max(|v|, mx) returns mx when |v| is NaN, as fmaxf skips NaN.
            mx = _mm256_max_ps(_mm256_andnot_ps(sign, v[q]), mx);
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
        const float amax = _mm_cvtss_f32(m);
        const __m256 id = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        for (int q = 0; q < 4; q++) store_low_bytes_avx2(xq + k0 + 8 * q, _mm256_cvtps_epi32(_mm256_mul_ps(v[q], id)));
        xd[b] = amax / 127.0f;
    }
}

// R A rows per pass share each activation chunk, its |x| and its block scales.
static inline __attribute__((always_inline)) void lora_down_rows_avx2(const int8_t *a, int64_t ld, const int R, const int8_t *xq,
                                                                      const float *xd, __m256 f[4][2]) {
    for (int r = 0; r < R; r++) f[r][0] = f[r][1] = _mm256_setzero_ps();
    for (int64_t c = 0; c < ld / 64; c++) {
        const __m256i xl = _mm256_loadu_si256((const __m256i *)(xq + 64 * c)), xh = _mm256_loadu_si256((const __m256i *)(xq + 64 * c + 32));
        const __m256i axl = _mm256_sign_epi8(xl, xl), axh = _mm256_sign_epi8(xh, xh);
        const __m256 dl = _mm256_set1_ps(xd[2 * c]), dh = _mm256_set1_ps(xd[2 * c + 1]);
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            const int8_t *ar = a + r * ld + 64 * c;
            f[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot4_i8_abs_avx2(_mm256_loadu_si256((const __m256i *)ar), xl, axl)), dl, f[r][0]);
            f[r][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot4_i8_abs_avx2(_mm256_loadu_si256((const __m256i *)(ar + 32)), xh, axh)), dh, f[r][1]);
        }
    }
}

static void lora_down_q8_avx2_simd(const ek_lora_slot *s, const int8_t *xq, const float *xd, float *u) {
    const int64_t ld = s->a8_ld;
    __m256 f[4][2];
    int32_t t = 0;
    for (; t + 4 <= s->rank; t += 4) {
        lora_down_rows_avx2(s->a8 + t * ld, ld, 4, xq, xd, f);
        for (int r = 0; r < 4; r++) u[t + r] = lora_halving_sum_avx2(f[r][0], f[r][1]) * s->a8_scale[t + r];
    }
    for (; t < s->rank; t++) {
        lora_down_rows_avx2(s->a8 + t * ld, ld, 1, xq, xd, f);
        u[t] = lora_halving_sum_avx2(f[0][0], f[0][1]) * s->a8_scale[t];
    }
}

// 8 outputs per int32 vector: 32 bytes of a rank quad, the quad's 4 v8 bytes broadcast.
static void lora_up_acc_q8_avx2_simd(const int8_t *bt8, int32_t rank, int64_t out, int64_t ld, const int8_t *v8,
                                     int32_t *acc) {
    const int64_t nq = (rank + 3) / 4;
    int64_t j = 0;
    for (; j + 32 <= out; j += 32) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t q = 0; q < nq; q++) {
            int32_t vq;
            memcpy(&vq, v8 + 4 * q, 4);
            const __m256i v = _mm256_set1_epi32(vq);
            const int8_t *b = bt8 + (q * ld + j) * 4;
            a0 = _mm256_add_epi32(a0, dot4_i8_avx2(_mm256_loadu_si256((const __m256i *)b), v));
            a1 = _mm256_add_epi32(a1, dot4_i8_avx2(_mm256_loadu_si256((const __m256i *)(b + 32)), v));
            a2 = _mm256_add_epi32(a2, dot4_i8_avx2(_mm256_loadu_si256((const __m256i *)(b + 64)), v));
            a3 = _mm256_add_epi32(a3, dot4_i8_avx2(_mm256_loadu_si256((const __m256i *)(b + 96)), v));
        }
        _mm256_storeu_si256((__m256i *)(acc + j), a0);
        _mm256_storeu_si256((__m256i *)(acc + j + 8), a1);
        _mm256_storeu_si256((__m256i *)(acc + j + 16), a2);
        _mm256_storeu_si256((__m256i *)(acc + j + 24), a3);
    }
    for (; j + 8 <= out; j += 8) {
        __m256i a = _mm256_setzero_si256();
        for (int64_t q = 0; q < nq; q++) {
            int32_t vq;
            memcpy(&vq, v8 + 4 * q, 4);
            a = _mm256_add_epi32(a, dot4_i8_avx2(_mm256_loadu_si256((const __m256i *)(bt8 + (q * ld + j) * 4)), _mm256_set1_epi32(vq)));
        }
        _mm256_storeu_si256((__m256i *)(acc + j), a);
    }
    if (j < out) lora_up_acc_q8_avx2(bt8 + 4 * j, rank, out - j, ld, v8, acc + j);   // the last < 8 outputs
}

static void lora_add_acc_avx2_simd(const int32_t *acc, float sv, float *y, int64_t count) {
    const __m256 s = _mm256_set1_ps(sv);
    int64_t j = 0;
    for (; j + 8 <= count; j += 8)
        _mm256_storeu_ps(y + j, _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + j))), _mm256_loadu_ps(y + j)));
    if (j < count) lora_add_acc_avx2(acc + j, sv, y + j, count - j);
}

#pragma clang attribute pop

static const ek_vtable avx2_table = {
    .name = "avx2",
    .f32_chunk = 16,
    .gemv_f32 = gemv_f32_avx2,
    .q8_group = 64,
    .gemv_q8 = ek_gemv_q8_avx2,
    .dequant_tile = dequant_tile_fast_avx2,
    .mk32 = mk32_fast_avx2,
    .dot = dot_avx2,
    .axpy = axpy_avx2,
    .q8w_rows = ek_q8w_rows_avx2,
    .decode_absmax = ek_decode_absmax_range,
    .lora_row = lora_row_avx2,
    .q8_quant_row = q8_quant_row_avx2_simd,
    .lora_down_q8 = lora_down_q8_avx2_simd,
    .lora_up_acc_q8 = lora_up_acc_q8_avx2_simd,
    .lora_add_acc = lora_add_acc_avx2_simd,
    .attn_head = attn_head_avx2,
    .rmsnorm_row = rmsnorm_row_avx2,
    .silu_mul = silu_mul_avx2,
    .softmax_row = softmax_row_avx2,
    .f16_to_f32 = f16_to_f32_avx2,
    .f32_to_f16 = f32_to_f16_avx2,
};

const ek_vtable *ek_vtable_avx2(void) { return &avx2_table; }

#else
const ek_vtable *ek_vtable_avx2(void) { return 0; }
#endif
