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
int ek_avx512_has_bf16(void);
void ek_q8w_rows_avx2(const ek_q8_matrix *w, int64_t r0, int64_t r1, const int8_t *xq, const float *xd,
                      int64_t n, float *y, int64_t ldy, void *scratch);
void ek_gemv_q8_avx2(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const uint8_t *xq, int64_t n,
                     int64_t xqs, float *y, int64_t ldy, int acc, float *sa);

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq"))), apply_to = function)

#define EK_HAVE_F16C 1
#define EK_HAVE_AVX512_F16 1
#define EK_HAVE_SILU_MUL 1
#define EKG(name) name##_avx512
#include "ek_generic_impl.h"
#undef EKG
#include "ek_exp_avx512.h"

// out = silu(gate) * up, 16 at a time: the scalar loop's expf call was ~4% of an 8-stream decode step.
// sigmoid(g) from t = exp(-|g|) <= 1, which never overflows: 1 / (1 + t) for g >= 0, t / (1 + t) below.
static void silu_mul_avx512(const float *gate, const float *up, float *out, int64_t count) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t k = 0; k < count; k += 16) {
        const __mmask16 m = count - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (count - k)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + k), u = _mm512_maskz_loadu_ps(m, up + k);
        const __m512 t = exp_le0(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(g)));
        const __mmask16 neg = _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_LT_OQ);
        const __m512 sig = _mm512_div_ps(_mm512_mask_blend_ps(neg, one, t), _mm512_add_ps(one, t));
        _mm512_mask_storeu_ps(out + k, m, _mm512_mul_ps(_mm512_mul_ps(g, sig), u));
    }
}

// ek_decode_absmax_range 16 blocks at a time (it was 8% of a decode profile as scalar code): the
// 256-entry map read by 8 two-table permutes (index bits 4:0) and a blend tree on bits 7:5 — a
// gather measured ~4x slower here — then the same fp32 multiply and add per block: bit-identical.
static inline __m512 map256(const __m512 t[16], __m512i code) {
    __m512 r[8];
    for (int k = 0; k < 8; k++) r[k] = _mm512_permutex2var_ps(t[2 * k], code, t[2 * k + 1]);
    const __mmask16 b5 = _mm512_test_epi32_mask(code, _mm512_set1_epi32(32));
    const __mmask16 b6 = _mm512_test_epi32_mask(code, _mm512_set1_epi32(64));
    const __mmask16 b7 = _mm512_test_epi32_mask(code, _mm512_set1_epi32(128));
    for (int k = 0; k < 4; k++) r[k] = _mm512_mask_blend_ps(b5, r[2 * k], r[2 * k + 1]);
    for (int k = 0; k < 2; k++) r[k] = _mm512_mask_blend_ps(b6, r[2 * k], r[2 * k + 1]);
    return _mm512_mask_blend_ps(b7, r[0], r[1]);
}

static void decode_absmax_avx512(const ek_nf4_matrix *w, int64_t b0, int64_t count, float *out) {
    if (w->absmax_f32) {
        memcpy(out, w->absmax_f32 + b0, (size_t)count * sizeof(float));
        return;
    }
    __m512 t[16];
    for (int k = 0; k < 16; k++) t[k] = _mm512_loadu_ps(w->dq_map + 16 * k);
    const int64_t nbs = w->nested_blocksize, end = b0 + count;
    const __m512 off = _mm512_set1_ps(w->offset);
    const uint8_t *q = w->absmax_q8;
    int64_t b = b0;
    while (b < end) {
        const int64_t j = b / nbs, stop = EK_MIN(end, (j + 1) * nbs);
        const __m512 na = _mm512_set1_ps(w->nested_absmax[j]);
        for (; b < stop; b += 16) {
            const int64_t left = stop - b;
            const __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            const __m512 v = map256(t, _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, q + b)));
            _mm512_mask_storeu_ps(out + (b - b0), m, _mm512_add_ps(_mm512_mul_ps(v, na), off));
        }
        b = stop;
    }
}

// Absmax of one row's blocks into dst, followed by 16 zeros (vector loads may read past the row).
static inline void load_row_absmax(const ek_nf4_matrix *w, int64_t r, int64_t nbr, float *dst) {
    decode_absmax_avx512(w, r * nbr, nbr, dst);
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

// ---- int8 GEMV: JR weight rows x NX activation rows per pass -----------------------------------------
// Each 256-weight group of JR rows is loaded and unpacked once per pass and applied to up to 8
// activation rows while it is in registers, so a decode batch of 8 streams reads and unpacks every
// weight byte once. JR = 4 for 1-2 activation rows (more independent load streams per activation
// load), 2 for 3-8 (2 x 8 = 16 accumulators). Accumulators are kept only in registers when every index
// into them is a constant: the loops over them are fully unrolled (otherwise clang stored all 16 on
// every group). Every (activation row, weight row) output runs the same operations in the same order
// whatever JR, NX and the batch are, so a row's bits never depend on its batch-mates.
// Paired lanes (the layout of prep_q8_paired): a group's 128 packed bytes, loaded as R0 and R1, become
// P0 = unpacklo_epi64(R0, R1) and P1 = unpackhi_epi64(R0, R1). Lane m of both then holds bytes of one
// 16-byte chunk, q(m) = (m & 2 ? 4 : 0) + m / 4 (dwords m % 2 and 2 + m % 2): 32 weights that share one
// activation block and one weight block (bs >= 32). So each int32 lane sums 16 products over four
// dpbusd before its one conversion and two scale multiplies. With 128-weight groups and lanes of 8
// weights it was two dpbusd per conversion: 3 of every 5 vector ops per weight and activation row
// were float work, and the 8-row decode GEMV of a batch of streams was bound by them, not by memory.
// The lane scales (the absmax of lane m's block, (g*256 + 32 q(m)) / bs) are one permute of the row's
// decoded absmax per group and row. Writing them out expanded per group first (16 floats per group and
// row) cost a store per group and row: without it the hot one-row GEMV ran ~25% faster.
// Software prefetch distance per weight row (bytes) within a pass, into L2 like the next pass's rows
// (see gemv_q8_X): into L1 the prefetches compete for the L1 miss buffers with the loads (cold 576x1536
// at 2 threads 70% -> ~80% of the memory read with L2, 4096x11008 86% -> 89%).
#define EK_Q8_PREFETCH 1024
// At most this many weight rows have their absmax decoded together (scratch per task: EK_Q8_RB rows of
// absmax + 16 floats, and 8 partial-sum vectors per row).
#define EK_Q8_RB 16

#define EK_DEFINE_GEMV_Q8(X, UNPACK_HI, UNPACK_LO, UNPACK_HI256, UNPACK_LO256, DECODE)                           \
static inline __attribute__((always_inline)) void q8_group_##X(const uint8_t *const *row, const float *const *lw, \
                                                               const int JR, const int NX, int64_t g,             \
                                                               __mmask64 m0, __mmask64 m1, const int full,        \
                                                               __m512i tbl, const uint8_t *xq, int64_t xqs,       \
                                                               int64_t pfo, __m512i lidx, int bsh, __m512 *s) {  \
    _Pragma("clang loop unroll(full)")                                                                           \
    for (int j = 0; j < JR; j++) {                                                                               \
        const uint8_t *p = row[j] + g * 128;                                                                     \
        __m512i r0 = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(m0, p);                              \
        __m512i r1 = full ? _mm512_loadu_si512(p + 64) : _mm512_maskz_loadu_epi8(m1, p + 64);                    \
        if (full) {                                                                                              \
            _mm_prefetch((const char *)(p + EK_Q8_PREFETCH), _MM_HINT_T1);                                       \
            _mm_prefetch((const char *)(p + EK_Q8_PREFETCH + 64), _MM_HINT_T1);                                  \
            _mm_prefetch((const char *)(p + pfo), _MM_HINT_T1);                                                  \
            _mm_prefetch((const char *)(p + pfo + 64), _MM_HINT_T1);                                             \
        }                                                                                                        \
        const __m512i p0 = _mm512_unpacklo_epi64(r0, r1), p1 = _mm512_unpackhi_epi64(r0, r1);                   \
        const __m512i h0 = UNPACK_HI(p0, tbl), l0 = UNPACK_LO(p0, tbl);                                          \
        const __m512i h1 = UNPACK_HI(p1, tbl), l1 = UNPACK_LO(p1, tbl);                                          \
        const __m512 lv = _mm512_permutexvar_ps(lidx, _mm512_loadu_ps(lw[j] + ((g * 256) >> bsh)));              \
        /* Weight row by weight row (the activations reloaded from L1 for each): with all JR rows' vectors    \
           live, clang interleaved the rows' int32 chains and spilled (16 of them beside 16 accumulators). */ \
        _Pragma("clang loop unroll(full)")                                                                       \
        for (int i = 0; i < NX; i++) {                                                                           \
            const uint8_t *xg = xq + i * xqs + g * 384;                                                          \
            __m512i a = _mm512_dpbusd_epi32(_mm512_loadu_si512(xg + 320), h0, _mm512_loadu_si512(xg));           \
            a = _mm512_dpbusd_epi32(a, l0, _mm512_loadu_si512(xg + 64));                                         \
            a = _mm512_dpbusd_epi32(a, h1, _mm512_loadu_si512(xg + 128));                                        \
            a = _mm512_dpbusd_epi32(a, l1, _mm512_loadu_si512(xg + 192));                                        \
            s[i * JR + j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_loadu_ps(xg + 256)), lv, \
                                            s[i * JR + j]);                                                      \
        }                                                                                                        \
    }                                                                                                            \
}                                                                                                                \
                                                                                                                 \
/* A last group of at most 128 weights (64 bytes, one load: the 64-weight tail of SmolLM2's 576 columns)   \
   as a half group in 256-bit vectors: A = bytes 0-31, B = bytes 32-63, lane m (of 8) holds chunk        \
   (m & 2 ? 2 : 0) + m / 4, the activations in the half-size paired layout (192 bytes). A masked full group \
   did the work of 256 weights for these 64; 256-bit ops cost half of 512-bit ones where the 512-bit      \
   ones are split in two (Zen 4). */                                                                     \
static inline __attribute__((always_inline)) void q8_half_##X(const uint8_t *const *row, const float *const *lw, \
                                                              const int JR, const int NX, int64_t g,              \
                                                              __mmask64 m0, __m512i tbl, const uint8_t *xq,       \
                                                              int64_t xqs, __m512i lidx, int bsh, __m512 *s) {    \
    const __m256i tbl8 = _mm512_castsi512_si256(tbl);                                                            \
    const __m256i li = _mm512_castsi512_si256(lidx);                                                             \
    _Pragma("clang loop unroll(full)")                                                                           \
    for (int j = 0; j < JR; j++) {                                                                               \
        const uint8_t *p = row[j] + g * 128;                                                                     \
        const __m256i a = _mm256_maskz_loadu_epi8((__mmask32)m0, p);                                            \
        const __m256i b = _mm256_maskz_loadu_epi8((__mmask32)(m0 >> 32), p + 32);                                \
        const __m256i p0 = _mm256_unpacklo_epi64(a, b), p1 = _mm256_unpackhi_epi64(a, b);                        \
        const __m256i h0 = UNPACK_HI256(p0, tbl8), l0 = UNPACK_LO256(p0, tbl8);                                  \
        const __m256i h1 = UNPACK_HI256(p1, tbl8), l1 = UNPACK_LO256(p1, tbl8);                                  \
        const __m256 lv = _mm256_permutexvar_ps(li, _mm256_loadu_ps(lw[j] + ((g * 256) >> bsh)));                \
        _Pragma("clang loop unroll(full)")                                                                       \
        for (int i = 0; i < NX; i++) {                                                                           \
            const uint8_t *xg = xq + i * xqs + g * 384;                                                          \
            __m256i t = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)(xg + 160)), h0,                 \
                                            _mm256_loadu_si256((const __m256i *)xg));                            \
            t = _mm256_dpbusd_epi32(t, l0, _mm256_loadu_si256((const __m256i *)(xg + 32)));                      \
            t = _mm256_dpbusd_epi32(t, h1, _mm256_loadu_si256((const __m256i *)(xg + 64)));                      \
            t = _mm256_dpbusd_epi32(t, l1, _mm256_loadu_si256((const __m256i *)(xg + 96)));                      \
            const __m256 dl = _mm256_loadu_ps((const float *)(xg + 128));                                        \
            const __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(t), dl), lv);                        \
            s[i * JR + j] = _mm512_add_ps(s[i * JR + j], _mm512_zextps256_ps512(v));                             \
        }                                                                                                        \
    }                                                                                                            \
}                                                                                                                \
                                                                                                                 \
/* lw[j]: weight row j's decoded block absmax (+ 16 readable floats); bsh = log2(blocksize). */                  \
static inline __attribute__((always_inline)) void gemv_q8_tile_##X(const uint8_t *const *row, const float *const *lw, \
                                                                   const int JR, const uint8_t *xq, const int NX, \
                                                                   int64_t xqs, int64_t g0, int64_t g1,           \
                                                                   int64_t nfull, __mmask64 m0, __mmask64 m1,     \
                                                                   int64_t pfo, int bsh, float *accv) {           \
    const int first = g0 == 0;                                                                                   \
    /* Lane m's block within the group's first block: 32 q(m) / bs (bs >= 32, a power of two); in a half group   \
       (the low 8 lanes of lidx_h) 32 ((m & 2 ? 2 : 0) + m / 4) / bs. */                                         \
    const __m512i lidx = _mm512_srli_epi32(_mm512_setr_epi32(0, 0, 128, 128, 32, 32, 160, 160, 64, 64, 192, 192, \
                                                             96, 96, 224, 224), (unsigned)bsh);                   \
    const __m512i lidx_h = _mm512_srli_epi32(_mm512_setr_epi32(0, 0, 64, 64, 32, 32, 96, 96, 0, 0, 0, 0, 0, 0,    \
                                                               0, 0), (unsigned)bsh);                             \
    int8_t tb[16];                                                                                               \
    for (int i = 0; i < 16; i++) tb[i] = (int8_t)(ek_nf4_q8_code[i] + 128);                                      \
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)tb));                            \
    __m512 s[32];                                                                                                \
    _Pragma("clang loop unroll(full)")                                                                           \
    for (int k = 0; k < NX * JR; k++) s[k] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(accv + 16 * k);       \
    for (int64_t g = g0; g < EK_MIN(g1, nfull); g++)                                                             \
        q8_group_##X(row, lw, JR, NX, g, ~(__mmask64)0, ~(__mmask64)0, 1, tbl, xq, xqs, pfo, lidx, bsh, s);      \
    if (g1 > nfull && !m1)                                                                                       \
        q8_half_##X(row, lw, JR, NX, nfull, m0, tbl, xq, xqs, lidx_h, bsh, s);                                   \
    else if (g1 > nfull)                                                                                         \
        q8_group_##X(row, lw, JR, NX, nfull, m0, m1, 0, tbl, xq, xqs, pfo, lidx, bsh, s);                        \
    /* Constant indices only (loops fully unrolled): one runtime index keeps all of s in memory, stored on every \
       group. */                                                                                                 \
    _Pragma("clang loop unroll(full)")                                                                           \
    for (int k = 0; k < NX * JR; k++) _mm512_storeu_ps(accv + 16 * k, s[k]);                                     \
}                                                                                                                \
                                                                                                                 \
static inline __attribute__((always_inline)) void gemv_q8_pass_##X(const uint8_t *const *row, const float *const *lw, \
                                                                   const int JR, const uint8_t *xq, int64_t nx,   \
                                                                   int64_t xqs, int64_t g0, int64_t g1,           \
                                                                   int64_t nfull, __mmask64 m0, __mmask64 m1,     \
                                                                   int64_t pfo, int bsh, float *accv) {           \
    if (JR == 4) {                                                                                               \
        switch (nx) {                                                                                            \
        case 2: gemv_q8_tile_##X(row, lw, 4, xq, 2, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;          \
        default: gemv_q8_tile_##X(row, lw, 4, xq, 1, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;         \
        }                                                                                                        \
    } else {                                                                                                     \
        switch (nx) {                                                                                            \
        case 8: gemv_q8_tile_##X(row, lw, 2, xq, 8, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;        \
        case 7: gemv_q8_tile_##X(row, lw, 2, xq, 7, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;        \
        case 6: gemv_q8_tile_##X(row, lw, 2, xq, 6, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;        \
        case 5: gemv_q8_tile_##X(row, lw, 2, xq, 5, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;        \
        case 4: gemv_q8_tile_##X(row, lw, 2, xq, 4, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;        \
        case 3: gemv_q8_tile_##X(row, lw, 2, xq, 3, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;        \
        case 2: gemv_q8_tile_##X(row, lw, 2, xq, 2, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;        \
        default: gemv_q8_tile_##X(row, lw, 2, xq, 1, xqs, g0, g1, nfull, m0, m1, pfo, bsh, accv); break;       \
        }                                                                                                        \
    }                                                                                                            \
}                                                                                                                \
                                                                                                                 \
static void gemv_q8_##X(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const uint8_t *xq, int64_t n,            \
                         int64_t xqs, float *y, int64_t ldy, int acc, float *sa) {                               \
    const int64_t cols = w->cols, nbr = cols / w->blocksize, ngroups = (cols + 255) / 256;                       \
    const int64_t tail_bytes = (cols % 256) / 2, nfull = tail_bytes ? ngroups - 1 : ngroups;                     \
    /* The last group's bytes (cols is a multiple of bs >= 32: 16 to 112 of them) as masks on R0 and R1. */      \
    const __mmask64 m0 = tail_bytes >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << tail_bytes) - 1;                    \
    const __mmask64 m1 = tail_bytes > 64 ? ((__mmask64)1 << (tail_bytes - 64)) - 1 : 0;                          \
    const int JR = n >= 3 ? 2 : 4;                                                                               \
    const int bsh = __builtin_ctzll((unsigned long long)w->blocksize);                                           \
    float *accv = sa + (EK_Q8_RB * nbr + 16 + 15) / 16 * 16;                                                     \
    for (int64_t rb = r0; rb < r1; rb += EK_Q8_RB) {                                                             \
        const int64_t nrb = EK_MIN(EK_Q8_RB, r1 - rb);                                                           \
        /* The block's rows have consecutive absmax blocks: one decode. */                                       \
        DECODE(w, rb * nbr, nrb * nbr, sa);                                                                      \
        memset(sa + nrb * nbr, 0, 16 * sizeof(float));                                                          \
        for (int64_t i = 0; i < n; i += 8) {                                                                     \
            const int64_t nx = EK_MIN(8, n - i);                                                                 \
            /* Column chunks that keep 8 activation rows in L1 measured slower (the weight stream of 16 rows in   \
               short runs), so every pass runs whole rows. */                                                    \
            for (int64_t r = rb; r < rb + nrb; r += JR) {                                                        \
                const int64_t nr = EK_MIN(JR, rb + nrb - r);                                                     \
                const uint8_t *row[4];                                                                           \
                const float *lw[4];                                                                              \
                for (int j = 0; j < 4; j++) {                                                                    \
                    const int64_t jj = (r - rb) + (j < nr ? j : nr - 1);                                         \
                    row[j] = w->packed + (rb + jj) * cols / 2;                                                   \
                    lw[j] = sa + jj * nbr;                                                                       \
                }                                                                                                \
                /* The next pass's rows (the same columns JR rows on, also past this task: a thread alone takes   \
                   the next task) are fetched into L2 during this pass: at the start of a pass its JR streams     \
                   begin cold, and the hardware prefetchers need a while to follow them. Cold 4096 x 11008 at 2   \
                   threads went from ~45% to ~70% of the read bandwidth with it (into L1 instead: ~50%). */      \
                const int64_t pfo = r + JR < w->rows ? JR * cols / 2 : EK_Q8_PREFETCH;                           \
                gemv_q8_pass_##X(row, lw, JR, xq + i * xqs, nx, xqs, 0, ngroups, nfull, m0, m1, pfo, bsh,        \
                                 accv + (r - rb) * 8 * 16);                                                      \
            }                                                                                                    \
            /* accv of pass starting at row r holds (activation row ii, weight row j) at index ii * JR + j. */  \
            for (int64_t r = rb; r < rb + nrb; r += JR) {                                                        \
                const int64_t nr = EK_MIN(JR, rb + nrb - r);                                                     \
                for (int64_t ii = 0; ii < nx; ii++)                                                              \
                    for (int64_t j = 0; j < nr; j++) {                                                           \
                        const float v = _mm512_reduce_add_ps(_mm512_loadu_ps(accv + ((r - rb) * 8 + ii * JR + j) * 16)); \
                        float *o = y + (i + ii) * ldy + r + j;                                                   \
                        *o = acc ? *o + v : v;                                                                   \
                    }                                                                                            \
            }                                                                                                    \
        }                                                                                                        \
    }                                                                                                            \
}

// ---- int8 GEMV with VNNI: weights as unsigned bytes (code + 128) via one byte shuffle per nibble ------
// dpbusd(u8 weight, s8 activation) sums 4 products per int32 lane; the +128 is removed by the
// precomputed per-lane bias (-128 * sum of the lane's activations), so no per-row correction is needed.
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), apply_to = function)
#define EK_UNPACK_HI_SHUFFLE(v, tbl) _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(15)))
#define EK_UNPACK_LO_SHUFFLE(v, tbl) _mm512_shuffle_epi8(tbl, _mm512_and_si512(v, _mm512_set1_epi8(15)))
#define EK_UNPACK_HI_SHUFFLE256(v, tbl) _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(15)))
#define EK_UNPACK_LO_SHUFFLE256(v, tbl) _mm256_shuffle_epi8(tbl, _mm256_and_si256(v, _mm256_set1_epi8(15)))
EK_DEFINE_GEMV_Q8(vnni, EK_UNPACK_HI_SHUFFLE, EK_UNPACK_LO_SHUFFLE, EK_UNPACK_HI_SHUFFLE256, EK_UNPACK_LO_SHUFFLE256,
                  decode_absmax_avx512)

// One block of 32 activations x[0 ..< min(left, 32)] (zero past left) by the EK_ACT_INT8 rule: the
// rounded int32 values of elements 0-15 in *q0 and 16-31 in *q1, and the block's max |x| returned.
// The same max, product and rounding as the scalar loop: NaN never enters the max (max_ps returns its
// second operand when either is NaN), and the callers' vpmovdb keeps the low byte as int8_t does.
static inline float quantize_block32(const float *x, int64_t left, __m512i *q0, __m512i *q1) {
    const __mmask16 k0 = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
    const __mmask16 k1 = left >= 32 ? (__mmask16)0xffff : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
    const __m512 v0 = _mm512_maskz_loadu_ps(k0, x), v1 = _mm512_maskz_loadu_ps(k1, x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps())));
    const __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    *q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
    *q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
    return amax;
}

// The paired q8 layout (ek_internal.h) of gemv_q8_X: the standard layout's quantised values
// (quantize_block32; scale amax / 127 / 127), placed for the paired lanes. In a group of L lanes (16;
// 8 for a last group of at most 128 values) block q's 16 even values E and 16 odd values O are four
// 8-byte runs: E[0..8) and E[8..16) are lanes 2p, 2p+1 of the first and the second even vector, O
// likewise, with p = 2q for q < L/4 and 2(q - L/4) + 1 above.
static int64_t q8_row_bytes_paired(int64_t cols) {
    const int64_t tail = cols % 256;
    return cols / 256 * 384 + (tail == 0 ? 0 : tail <= 128 ? 192 : 384);
}

static void prep_q8_paired(const float *x, int64_t cols, uint8_t *xq) {
    const int64_t ngroups = (cols + 255) / 256;
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    const __m512i c128 = _mm512_set1_epi8((char)0x80);
    for (int64_t g = 0; g < ngroups; g++) {
        uint8_t *base = xq + g * 384;
        const int L = cols - g * 256 <= 128 ? 8 : 16, half = L / 4;
        float *dl = (float *)(base + 16 * L);
        for (int q = 0; q < L / 2; q++) {
            const int64_t e0 = g * 256 + 32 * q;
            __m512i q0, q1;
            const float d = quantize_block32(x + e0, cols - e0, &q0, &q1) / 127.0f;
            const __m128i ev = _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(q0, ie, q1));
            const __m128i od = _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(q0, io, q1));
            const int p = q < half ? 2 * q : 2 * (q - half) + 1;
            _mm_storel_epi64((__m128i *)(base + 8 * p), ev);
            _mm_storel_epi64((__m128i *)(base + 4 * L + 8 * p), od);
            _mm_storel_epi64((__m128i *)(base + 8 * L + 8 * p), _mm_unpackhi_epi64(ev, ev));
            _mm_storel_epi64((__m128i *)(base + 12 * L + 8 * p), _mm_unpackhi_epi64(od, od));
            dl[2 * p] = dl[2 * p + 1] = d / 127.0f;
        }
        const __mmask64 lm = L == 16 ? ~(__mmask64)0 : ((__mmask64)1 << 32) - 1;
        __m512i sum = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) sum = _mm512_dpbusd_epi32(sum, c128, _mm512_maskz_loadu_epi8(lm, base + 4 * L * k));
        _mm512_mask_storeu_epi32(base + 20 * L, (__mmask16)(L == 16 ? 0xffff : 0xff), _mm512_sub_epi32(_mm512_setzero_si512(), sum));
    }
}

// ---- int8 weight rows (quantised head): JR weight rows x NX activation rows per pass -------------------
// dpbusd needs one unsigned operand: the weight byte xor 0x80 is w + 128 as u8 — one op per weight
// vector, shared by every activation row — and the per-lane bias -128 * (sum of the lane's
// activations) removes the +128, so each int32 lane is exactly the sum of its products w * x.
// Paired lanes, as in gemv_q8_X: 128 values of a row, loaded as R0 and R1, become
// unpacklo/unpackhi_epi64(R0, R1), whose lane m both hold 4 values of the 16-value chunk
// q(m) = (m & 2 ? 4 : 0) + m / 4, inside one activation block of 32 (scale xd[block q(m) / 2]). So an
// int32 lane sums 8 products over two dpbusd before its conversion and fma: with one dpbusd per
// conversion the 8-row head (a decode batch of streams) was bound by the float work. A last 64 values
// (ld = 576 for SmolLM2) run as one plain load, lanes 0-7 in the first block and 8-15 in the second.
// Lanes are accumulated in fp32 and reduced at the end: the same operations in the same order for a row
// whatever its batch. The activations' paired vectors, lane biases and scales are built once per call
// in scratch (q8w_lane_bytes per row).
// Each weight line is prefetched EK_Q8W_PREFETCH_ROWS rows ahead into L2 (ek_internal.h).
static inline int64_t q8w_lane_bytes(int64_t ld) { return ld / 128 * 256 + (ld % 128 ? 192 : 0); }

static inline __attribute__((always_inline)) void q8w_tile_vnni(const ek_q8_matrix *w, int64_t r, const int JR,
                                                               const uint8_t *lane, int64_t lstride, const int NX,
                                                               float *y, int64_t ldy) {
    const int64_t ld = w->ld, np = ld / 128;
    const int8_t *wr[4];
    for (int j = 0; j < JR; j++) wr[j] = w->q + (r + j) * ld;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512 f[8][4];
#pragma clang loop unroll(full)
    for (int i = 0; i < NX; i++)
#pragma clang loop unroll(full)
        for (int j = 0; j < JR; j++) f[i][j] = _mm512_setzero_ps();
#pragma clang loop unroll(disable)
    for (int64_t c = 0; c < np; c++) {
        __m512i u0[4], u1[4];
        for (int j = 0; j < JR; j++) {
            const int8_t *p = wr[j] + 128 * c;
            _mm_prefetch((const char *)(p + EK_Q8W_PREFETCH_ROWS * ld), _MM_HINT_T1);
            _mm_prefetch((const char *)(p + EK_Q8W_PREFETCH_ROWS * ld + 64), _MM_HINT_T1);
            const __m512i r0 = _mm512_loadu_si512(p), r1 = _mm512_loadu_si512(p + 64);
            u0[j] = _mm512_xor_si512(_mm512_unpacklo_epi64(r0, r1), flip);
            u1[j] = _mm512_xor_si512(_mm512_unpackhi_epi64(r0, r1), flip);
        }
#pragma clang loop unroll(full)
        for (int i = 0; i < NX; i++) {
            const uint8_t *lp = lane + i * lstride + c * 256;
            const __m512i x0 = _mm512_loadu_si512(lp), x1 = _mm512_loadu_si512(lp + 64);
            const __m512i bias = _mm512_loadu_si512(lp + 128);
            const __m512 d = _mm512_loadu_ps(lp + 192);
#pragma clang loop unroll(full)
            for (int j = 0; j < JR; j++)
                f[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, u0[j], x0), u1[j], x1)),
                                          d, f[i][j]);
        }
    }
    if (ld % 128) {
        __m512i u[4];
        for (int j = 0; j < JR; j++) {
            const int8_t *p = wr[j] + 128 * np;
            _mm_prefetch((const char *)(p + EK_Q8W_PREFETCH_ROWS * ld), _MM_HINT_T1);
            u[j] = _mm512_xor_si512(_mm512_loadu_si512(p), flip);
        }
#pragma clang loop unroll(full)
        for (int i = 0; i < NX; i++) {
            const uint8_t *lp = lane + i * lstride + np * 256;
            const __m512i xv = _mm512_loadu_si512(lp), bias = _mm512_loadu_si512(lp + 64);
            const __m512 d = _mm512_loadu_ps(lp + 128);
#pragma clang loop unroll(full)
            for (int j = 0; j < JR; j++) f[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(bias, u[j], xv)), d, f[i][j]);
        }
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < NX; i++)
#pragma clang loop unroll(full)
        for (int j = 0; j < JR; j++) y[i * ldy + r + j] = _mm512_reduce_add_ps(f[i][j]) * w->scale[r + j];
}

static void q8w_rows_vnni(const ek_q8_matrix *w, int64_t r0, int64_t r1, const int8_t *xq, const float *xd,
                          int64_t n, float *y, int64_t ldy, void *scratch) {
    const int64_t ld = w->ld, np = ld / 128, lstride = q8w_lane_bytes(ld);
    uint8_t *lane = scratch;
    const __m512i c128 = _mm512_set1_epi8((char)0x80);
    // Lane m of a pair holds block q(m) / 2 of its 4: 0 0 2 2 0 0 2 2 1 1 3 3 1 1 3 3.
    const __m512i bidx = _mm512_setr_epi32(0, 0, 2, 2, 0, 0, 2, 2, 1, 1, 3, 3, 1, 1, 3, 3);
    for (int64_t i = 0; i < n; i++) {
        const int8_t *x = xq + i * ld;
        const float *dr = xd + i * (ld / 32);
        uint8_t *lp = lane + i * lstride;
        for (int64_t c = 0; c < np; c++, lp += 256) {
            const __m512i a = _mm512_loadu_si512(x + 128 * c), b = _mm512_loadu_si512(x + 128 * c + 64);
            const __m512i x0 = _mm512_unpacklo_epi64(a, b), x1 = _mm512_unpackhi_epi64(a, b);
            const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, x0), c128, x1);
            _mm512_storeu_si512(lp, x0);
            _mm512_storeu_si512(lp + 64, x1);
            _mm512_storeu_si512(lp + 128, _mm512_sub_epi32(_mm512_setzero_si512(), sum));
            _mm512_storeu_ps(lp + 192, _mm512_permutexvar_ps(bidx, _mm512_castps128_ps512(_mm_loadu_ps(dr + 4 * c))));
        }
        if (ld % 128) {
            const __m512i xv = _mm512_loadu_si512(x + 128 * np);
            _mm512_storeu_si512(lp, xv);
            _mm512_storeu_si512(lp + 64, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, xv)));
            _mm512_storeu_ps(lp + 128, _mm512_insertf32x8(_mm512_set1_ps(dr[4 * np]), _mm256_set1_ps(dr[4 * np + 1]), 1));
        }
    }
    for (int64_t i = 0; i < n; i += 8) {
        const int64_t nx = EK_MIN(8, n - i);
        const uint8_t *lp = lane + i * lstride;
        float *yy = y + i * ldy;
        int64_t r = r0;
#define EK_Q8W_CASE(JR, NX) case NX: q8w_tile_vnni(w, r, JR, lp, lstride, NX, yy, ldy); break;
        // 4 weight rows for up to 4 activation rows, 2 for 5-8 (8 x 2 accumulators; 8 x 3 spilled).
        if (nx <= 4) {
            for (; r + 4 <= r1; r += 4) {
                switch (nx) { EK_Q8W_CASE(4, 4) EK_Q8W_CASE(4, 3) EK_Q8W_CASE(4, 2) default: q8w_tile_vnni(w, r, 4, lp, lstride, 1, yy, ldy); }
            }
        } else {
            for (; r + 2 <= r1; r += 2) {
                switch (nx) { EK_Q8W_CASE(2, 8) EK_Q8W_CASE(2, 7) EK_Q8W_CASE(2, 6) default: q8w_tile_vnni(w, r, 2, lp, lstride, 5, yy, ldy); }
            }
        }
        for (; r < r1; r++) {
            switch (nx) {
            EK_Q8W_CASE(1, 8) EK_Q8W_CASE(1, 7) EK_Q8W_CASE(1, 6) EK_Q8W_CASE(1, 5) EK_Q8W_CASE(1, 4) EK_Q8W_CASE(1, 3) EK_Q8W_CASE(1, 2)
            default: q8w_tile_vnni(w, r, 1, lp, lstride, 1, yy, ldy);
            }
        }
#undef EK_Q8W_CASE
    }
}

// ---- int8 LoRA slots with VNNI: the same bits as q8_quant_row, lora_down_q8 and lora_up_acc_q8 in
// ek_generic_impl.h (exact int32 lanes from dpbusd, then the same fmas and the same halving sum).
// dpbusd wants one unsigned operand: the stored int8 xor 0x80 is value + 128 as u8, and a bias of
// -128 * (the sum of the other operand's bytes in the lane) takes the 128s back out.

// The halving sum f[l] += f[l + s] for s = 8, 4, 2, 1, step by step (not _mm512_reduce_add_ps, whose
// order is the compiler's choice).
static inline float lora_halving_sum(__m512 f) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(f), _mm512_extractf32x8_ps(f, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
}

// q8_quant_row: the blocks of quantize_block32 in natural order.
static void q8_quant_row_vnni(const float *x, int64_t cols, int64_t ld, int8_t *xq, float *xd) {
    for (int64_t b = 0; b < ld / 32; b++) {
        const int64_t k0 = 32 * b;
        __m512i q0, q1;
        xd[b] = quantize_block32(x + k0, cols - k0, &q0, &q1) / 127.0f;
        _mm_storeu_si128((__m128i *)(xq + k0), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(xq + k0 + 16), _mm512_cvtepi32_epi8(q1));
    }
}

// R A rows per pass (16 for a rank-16 slot: one pass) share each activation chunk, its bias and its
// lane scales, which are made once per chunk and pass.
static inline __attribute__((always_inline)) void lora_down_rows_vnni(const int8_t *a, int64_t ld, const int R,
                                                                      const int8_t *xq, const float *xd, __m512 f[16]) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int r = 0; r < R; r++) f[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < ld / 64; c++) {
        const __m512i xv = _mm512_loadu_si512(xq + 64 * c);
        const __m512i bias = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, xv));
        const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(xd[2 * c]), _mm256_set1_ps(xd[2 * c + 1]), 1);
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            const __m512i av = _mm512_xor_si512(_mm512_loadu_si512(a + r * ld + 64 * c), flip);
            f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(bias, av, xv)), d, f[r]);
        }
    }
}

static void lora_down_q8_vnni(const ek_lora_slot *s, const int8_t *xq, const float *xd, float *u) {
    const int64_t ld = s->a8_ld;
    __m512 f[16];
    int32_t t = 0;
    for (; t + 16 <= s->rank; t += 16) {
        lora_down_rows_vnni(s->a8 + t * ld, ld, 16, xq, xd, f);
        for (int r = 0; r < 16; r++) u[t + r] = lora_halving_sum(f[r]) * s->a8_scale[t + r];
    }
    for (; t + 4 <= s->rank; t += 4) {
        lora_down_rows_vnni(s->a8 + t * ld, ld, 4, xq, xd, f);
        for (int r = 0; r < 4; r++) u[t + r] = lora_halving_sum(f[r]) * s->a8_scale[t + r];
    }
    for (; t < s->rank; t++) {
        lora_down_rows_vnni(s->a8 + t * ld, ld, 1, xq, xd, f);
        u[t] = lora_halving_sum(f[0]) * s->a8_scale[t];
    }
}

// 16 outputs per int32 vector: a rank quad of Bᵀ is 64 bytes (16 outputs x 4 ranks), one dpbusd with
// the quad's 4 v8 bytes broadcast; the bias -128 * sum(v8) is the accumulators' start.
static void lora_up_acc_q8_vnni(const int8_t *bt8, int32_t rank, int64_t out, int64_t ld, const int8_t *v8,
                                int32_t *acc) {
    const int64_t nq = (rank + 3) / 4;
    int32_t vsum = 0;
    for (int64_t t = 0; t < 4 * nq; t++) vsum += v8[t];
    const __m512i bias = _mm512_set1_epi32(-128 * vsum), flip = _mm512_set1_epi8((char)0x80);
    int64_t j = 0;
    for (; j + 64 <= out; j += 64) {
        __m512i a0 = bias, a1 = bias, a2 = bias, a3 = bias;
        for (int64_t q = 0; q < nq; q++) {
            int32_t vq;
            memcpy(&vq, v8 + 4 * q, 4);
            const __m512i v = _mm512_set1_epi32(vq);
            const int8_t *b = bt8 + (q * ld + j) * 4;
            a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(_mm512_loadu_si512(b), flip), v);
            a1 = _mm512_dpbusd_epi32(a1, _mm512_xor_si512(_mm512_loadu_si512(b + 64), flip), v);
            a2 = _mm512_dpbusd_epi32(a2, _mm512_xor_si512(_mm512_loadu_si512(b + 128), flip), v);
            a3 = _mm512_dpbusd_epi32(a3, _mm512_xor_si512(_mm512_loadu_si512(b + 192), flip), v);
        }
        _mm512_storeu_si512(acc + j, a0);
        _mm512_storeu_si512(acc + j + 16, a1);
        _mm512_storeu_si512(acc + j + 32, a2);
        _mm512_storeu_si512(acc + j + 48, a3);
    }
    for (; j < out; j += 16) {
        const int64_t nj = EK_MIN(16, out - j);
        const __mmask16 my = nj == 16 ? (__mmask16)0xffff : (__mmask16)((1u << nj) - 1);
        const __mmask64 mb = nj == 16 ? ~(__mmask64)0 : ((__mmask64)1 << (4 * nj)) - 1;
        __m512i a = bias;
        for (int64_t q = 0; q < nq; q++) {
            int32_t vq;
            memcpy(&vq, v8 + 4 * q, 4);
            // Masked-off bytes load as 0, which the xor makes 128: those lanes are never stored.
            a = _mm512_dpbusd_epi32(a, _mm512_xor_si512(_mm512_maskz_loadu_epi8(mb, bt8 + (q * ld + j) * 4), flip), _mm512_set1_epi32(vq));
        }
        _mm512_mask_storeu_epi32(acc + j, my, a);
    }
}

#pragma clang attribute pop
// The same with AVX512_VBMI (Ice Lake, Zen 4): vpermb reads only index bits 5:0 and never zeroes, so
// with the 16-entry table repeated four times a packed byte indexes its low nibble directly and the
// shifted byte its high nibble — no masking (2 of the 12 vector ops per row and 128 weights).
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi"))), apply_to = function)
#define EK_UNPACK_HI_VPERMB(v, tbl) _mm512_permutexvar_epi8(_mm512_srli_epi16(v, 4), tbl)
#define EK_UNPACK_LO_VPERMB(v, tbl) _mm512_permutexvar_epi8(v, tbl)
// ek_decode_absmax_range 64 blocks at a time: the 256-entry map as four byte planes (plane p = byte p of
// every entry, 4 vectors each), looked up by two 128-entry vpermt2b and a blend on index bit 7 per
// plane, then interleaved back into floats (8 unpacks, the codes pre-permuted so the floats come out in
// order) — 0.5 vector op per block against 1.4 for the float permutes of decode_absmax_avx512, which
// was a fifth of the one-row GEMV. Same map entries, then the same fp32 multiply and add: bit-identical.
static void decode_absmax_vbmi(const ek_nf4_matrix *w, int64_t b0, int64_t count, float *out) {
    const int64_t nbs = w->nested_blocksize;
    if (w->absmax_f32 || nbs < 64) {
        decode_absmax_avx512(w, b0, count, out);
        return;
    }
    // planes[p][q]: byte p of map entries 64q ..< 64q+64. Two map vectors (32 entries) give planes 0|1 and
    // 2|3 of those entries as 32-byte halves; shuffle_i64x2 joins the halves of two such pairs.
    __m512i planes[4][4];
    const __m512i i01 = _mm512_set_epi8(125, 121, 117, 113, 109, 105, 101, 97, 93, 89, 85, 81, 77, 73, 69, 65,
                                        61, 57, 53, 49, 45, 41, 37, 33, 29, 25, 21, 17, 13, 9, 5, 1,
                                        124, 120, 116, 112, 108, 104, 100, 96, 92, 88, 84, 80, 76, 72, 68, 64,
                                        60, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0);
    const __m512i i23 = _mm512_add_epi8(i01, _mm512_set1_epi8(2));
    for (int q = 0; q < 4; q++) {
        const int32_t *m = (const int32_t *)w->dq_map + 64 * q;
        const __m512i d0 = _mm512_loadu_si512(m), d1 = _mm512_loadu_si512(m + 16);
        const __m512i d2 = _mm512_loadu_si512(m + 32), d3 = _mm512_loadu_si512(m + 48);
        const __m512i a01 = _mm512_permutex2var_epi8(d0, i01, d1), b01 = _mm512_permutex2var_epi8(d2, i01, d3);
        const __m512i a23 = _mm512_permutex2var_epi8(d0, i23, d1), b23 = _mm512_permutex2var_epi8(d2, i23, d3);
        planes[0][q] = _mm512_shuffle_i64x2(a01, b01, 0x44);
        planes[1][q] = _mm512_shuffle_i64x2(a01, b01, 0xee);
        planes[2][q] = _mm512_shuffle_i64x2(a23, b23, 0x44);
        planes[3][q] = _mm512_shuffle_i64x2(a23, b23, 0xee);
    }
    // Code byte 16k + 4L + t goes to byte 16L + 4k + t: the per-128-bit-lane unpacks then leave float
    // vector k holding codes 16k ..< 16k+16 in order.
    const __m512i tperm = _mm512_set_epi8(63, 62, 61, 60, 47, 46, 45, 44, 31, 30, 29, 28, 15, 14, 13, 12,
                                          59, 58, 57, 56, 43, 42, 41, 40, 27, 26, 25, 24, 11, 10, 9, 8,
                                          55, 54, 53, 52, 39, 38, 37, 36, 23, 22, 21, 20, 7, 6, 5, 4,
                                          51, 50, 49, 48, 35, 34, 33, 32, 19, 18, 17, 16, 3, 2, 1, 0);
    const __m512 off = _mm512_set1_ps(w->offset);
    const uint8_t *qs = w->absmax_q8;
    const int64_t end = b0 + count;
    int64_t b = b0;
    while (b < end) {
        const int64_t j = b / nbs, stop = EK_MIN(end, (j + 1) * nbs);
        const __m512 na = _mm512_set1_ps(w->nested_absmax[j]);
        for (; b < stop; b += 64) {
            const int64_t left = stop - b;
            const __mmask64 lm = left >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << left) - 1;
            const __m512i c = _mm512_permutexvar_epi8(tperm, _mm512_maskz_loadu_epi8(lm, qs + b));
            const __mmask64 hi = _mm512_movepi8_mask(c);
            __m512i pl[4];
            for (int p = 0; p < 4; p++)
                pl[p] = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(planes[p][0], c, planes[p][1]),
                                               _mm512_permutex2var_epi8(planes[p][2], c, planes[p][3]));
            const __m512i u0 = _mm512_unpacklo_epi8(pl[0], pl[1]), u1 = _mm512_unpackhi_epi8(pl[0], pl[1]);
            const __m512i u2 = _mm512_unpacklo_epi8(pl[2], pl[3]), u3 = _mm512_unpackhi_epi8(pl[2], pl[3]);
            const __m512i r[4] = {_mm512_unpacklo_epi16(u0, u2), _mm512_unpackhi_epi16(u0, u2),
                                  _mm512_unpacklo_epi16(u1, u3), _mm512_unpackhi_epi16(u1, u3)};
            for (int k = 0; k < 4; k++) {
                const __mmask16 sm = (__mmask16)(lm >> (16 * k));
                if (!sm) break;
                const __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_castsi512_ps(r[k]), na), off);
                _mm512_mask_storeu_ps(out + (b - b0) + 16 * k, sm, v);
            }
        }
        b = stop;
    }
}

#define EK_UNPACK_HI_VPERMB256(v, tbl) _mm256_permutexvar_epi8(_mm256_srli_epi16(v, 4), tbl)
#define EK_UNPACK_LO_VPERMB256(v, tbl) _mm256_permutexvar_epi8(v, tbl)
EK_DEFINE_GEMV_Q8(vbmi, EK_UNPACK_HI_VPERMB, EK_UNPACK_LO_VPERMB, EK_UNPACK_HI_VPERMB256, EK_UNPACK_LO_VPERMB256,
                  decode_absmax_vbmi)
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

// An int8 LoRA slot's update from its int32 sums (the same fmas as the generic code, 16 at a time).
static void lora_add_acc_avx512_simd(const int32_t *acc, float sv, float *y, int64_t count) {
    const __m512 s = _mm512_set1_ps(sv);
    for (int64_t j = 0; j < count; j += 16) {
        const int64_t nj = EK_MIN(16, count - j);
        const __mmask16 m = nj == 16 ? (__mmask16)0xffff : (__mmask16)((1u << nj) - 1);
        _mm512_mask_storeu_ps(y + j, m, _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, acc + j)),
                                                         _mm512_maskz_loadu_ps(m, y + j)));
    }
}

#pragma clang attribute pop

static ek_vtable avx512_table = {
    .name = "avx512",
    .f32_chunk = 32,
    .gemm_by_rows = 1,
    .gemv_f32 = gemv_f32_avx512,
    .q8_group = 256,
    .q8_row_bytes = q8_row_bytes_paired,
    .gemv_q8 = gemv_q8_vnni,
    .prep_q8 = prep_q8_paired,
    .dequant_tile = dequant_tile_fast_avx512,
    .mk32 = mk32_fast_avx512,
    .dot = dot_avx512,
    .axpy = axpy_avx512,
    .q8w_rows = q8w_rows_vnni,
    .decode_absmax = decode_absmax_avx512,
    .lora_row = lora_row_avx512,
    .q8_quant_row = q8_quant_row_avx512,
    .lora_down_q8 = lora_down_q8_avx512,
    .lora_up_acc_q8 = lora_up_acc_q8_avx512,
    .lora_add_acc = lora_add_acc_avx512_simd,
    .attn_head = attn_head_avx512,
    .attn_group = ek_attn_group_avx512,
    .rmsnorm_row = rmsnorm_row_avx512,
    .silu_mul = silu_mul_avx512,
    .softmax_row = softmax_row_avx512,
    .f16_to_f32 = f16_to_f32_avx512,
    .f32_to_f16 = f32_to_f16_avx512,
};

const ek_vtable *ek_vtable_avx512(void) {
    if (ek_avx512_has_vnni()) {
        avx512_table.q8_quant_row = q8_quant_row_vnni;
        avx512_table.lora_down_q8 = lora_down_q8_vnni;
        avx512_table.lora_up_acc_q8 = lora_up_acc_q8_vnni;
    }
    if (ek_avx512_has_vnni() && ek_avx512_has_vbmi()) {
        avx512_table.gemv_q8 = gemv_q8_vbmi;
        avx512_table.decode_absmax = decode_absmax_vbmi;
    }
    if (ek_avx512_has_bf16()) ek_bf16_install_avx512(&avx512_table);
    // Without VNNI (Skylake-SP), the int8 path uses the AVX2 maddubs kernel and its layout.
    if (!ek_avx512_has_vnni()) {
        avx512_table.q8_group = 64;
        avx512_table.q8_row_bytes = 0;
        avx512_table.prep_q8 = 0;
        avx512_table.gemv_q8 = ek_gemv_q8_avx2;
        avx512_table.q8w_rows = ek_q8w_rows_avx2;
    }
    return &avx512_table;
}

#else
const ek_vtable *ek_vtable_avx512(void) { return 0; }
#endif
