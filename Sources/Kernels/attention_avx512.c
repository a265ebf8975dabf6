// AVX-512 attention over one KV head's group of query heads and a range of positions (the vtable's
// attn_group; ek_attention splits long rows into position chunks and merges them). Decode reads a
// whole KV cache per token for one query row, so the work is organised around the K/V rows:
//  - scores: 16 positions at a time per query head; each position's dot is a 16-lane vector and the
//    16 vectors are reduced together by a transposing add tree (about 3 shuffles/adds per position
//    instead of a full horizontal reduction each). An f16 K block is converted once for all heads.
//  - softmax: a vectorised exp (Cephes polynomial, 2^n by scalef) over each head's scores.
//  - values: each V row (a 16-wide column slice of it) is loaded once and applied to up to 4 query
//    heads whose sums stay in registers.
// Sums run in a different order than the portable attn_head (the reference): results agree to ~1e-6
// relative, and depend only on the row's own data and range, never on the batch around it.
#include "ek_internal.h"

#if defined(EK_X86)
#include <immintrin.h>
#include <math.h>

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq"))), apply_to = function)
#include "ek_exp_avx512.h"

// r[i] = sum of the 16 lanes of v[i], for i < 16.
static inline __attribute__((always_inline)) __m512 transpose_sum16(const __m512 v[16]) {
    __m512 t[8], u[4], w[2];
    for (int i = 0; i < 8; i++)
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    // Per 128-bit lane L, u[i] holds the lane-L sums of v[4i], v[4i+1], v[4i+2], v[4i+3].
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    for (int i = 0; i < 2; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

static inline __m512 load16(const void *base, int32_t dtype, int64_t idx) {
    if (dtype == EK_DTYPE_F32) return _mm512_loadu_ps((const float *)base + idx);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + idx)));
}

// outj[j][c0 + c] = sum_p wj[j][p] v[p][c0 + c] for NH heads and NV*16 columns (constants), so the
// NH*NV sums stay in registers and each position's weights are broadcast once.
static inline __attribute__((always_inline)) void value_block(const float *const *wj, const int NH, const int NV,
                                                            const void *vb, int32_t dtype, int64_t stride, int64_t np,
                                                            int64_t c0, float *const *outj) {
    const int64_t esz = dtype == EK_DTYPE_F32 ? 4 : 2;
    __m512 acc[4][4];
    for (int j = 0; j < NH; j++)
        for (int c = 0; c < NV; c++) acc[j][c] = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; p++) {
        // Rows are kv_stride apart (other heads' slices between): prefetch a few rows ahead, into L2 as
        // the weight kernels do (into L1 the requests wait on the L1 miss buffers).
        for (int c = 0; c < NV; c++) _mm_prefetch((const char *)vb + ((p + 8) * stride + c0 + 16 * c) * esz, _MM_HINT_T1);
        __m512 vv[4];
        for (int c = 0; c < NV; c++) vv[c] = load16(vb, dtype, p * stride + c0 + 16 * c);
        for (int j = 0; j < NH; j++) {
            const __m512 wv = _mm512_set1_ps(wj[j][p]);
            for (int c = 0; c < NV; c++) acc[j][c] = _mm512_fmadd_ps(wv, vv[c], acc[j][c]);
        }
    }
    for (int j = 0; j < NH; j++)
        for (int c = 0; c < NV; c++) _mm512_storeu_ps(outj[j] + c0 + 16 * c, acc[j][c]);
}

// For the `group` query heads q + j*hd (j < group) reading KV head g of row, over positions [p0, p1):
// m[j] = max score, l[j] = sum_p exp(score_p - m[j]), acc[j*hd + d] = sum_p exp(score_p - m[j]) v_p[d]
// (unnormalised). hd % 16 == 0. scratch: group * (p1 - p0 + 16) + 16 * hd floats.
void ek_attn_group_avx512(const float *q, int64_t group, const ek_attn_row *row, int64_t g, int64_t p0, int64_t p1,
                          int64_t hd, int64_t kv_stride, int32_t dtype, float scale, float *m, float *l, float *acc,
                          float *scratch) {
    const int64_t np = p1 - p0, ldsc = (np + 15) / 16 * 16, nv = hd / 16;
    const size_t esz = dtype == EK_DTYPE_F32 ? 4 : 2;
    const char *kb = (const char *)row->k + (size_t)(p0 * kv_stride + g * hd) * esz;
    const char *vb = (const char *)row->v + (size_t)(p0 * kv_stride + g * hd) * esz;
    float *scores = scratch, *kconv = scratch + group * ldsc;
    const __m512 vscale = _mm512_set1_ps(scale);

    for (int64_t b = 0; b < np; b += 16) {
        const int64_t nb = EK_MIN(16, np - b);
        // The next block's K rows, one prefetch per 64-byte line of each row's slice.
        for (int64_t pp = b + 16; pp < EK_MIN(np, b + 32); pp++)
            for (int64_t o = 0; o < hd * (int64_t)esz; o += 64) _mm_prefetch(kb + (pp * kv_stride) * (int64_t)esz + o, _MM_HINT_T1);
        // The block's K rows as f32 (rows past the range as zeros), at stride kst.
        const float *kr;
        int64_t kst;
        if (dtype == EK_DTYPE_F32 && nb == 16) {
            kr = (const float *)kb + b * kv_stride;
            kst = kv_stride;
        } else {
            for (int64_t pp = 0; pp < 16; pp++)
                for (int64_t c = 0; c < nv; c++)
                    _mm512_storeu_ps(kconv + pp * hd + 16 * c,
                                     pp < nb ? load16(kb, dtype, (b + pp) * kv_stride + 16 * c) : _mm512_setzero_ps());
            kr = kconv;
            kst = hd;
        }
        for (int64_t j = 0; j < group; j++) {
            const float *qj = q + j * hd;
            __m512 v[16];
            for (int pp = 0; pp < 16; pp++) v[pp] = _mm512_setzero_ps();
            for (int64_t c = 0; c < nv; c++) {
                const __m512 qc = _mm512_loadu_ps(qj + 16 * c);
                for (int pp = 0; pp < 16; pp++) v[pp] = _mm512_fmadd_ps(qc, _mm512_loadu_ps(kr + pp * kst + 16 * c), v[pp]);
            }
            _mm512_storeu_ps(scores + j * ldsc + b, _mm512_mul_ps(transpose_sum16(v), vscale));
        }
    }

    const __mmask16 tail = (__mmask16)(np % 16 ? (1u << (np % 16)) - 1 : 0xffffu);
    for (int64_t j = 0; j < group; j++) {
        float *sj = scores + j * ldsc;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int64_t b = 0; b < np; b += 16)
            mx = _mm512_mask_max_ps(mx, b + 16 <= np ? 0xffff : tail, mx, _mm512_loadu_ps(sj + b));
        const float mj = _mm512_reduce_max_ps(mx);
        const __m512 vm = _mm512_set1_ps(mj);
        __m512 sum = _mm512_setzero_ps();
        for (int64_t b = 0; b < np; b += 16) {
            const __mmask16 k = b + 16 <= np ? 0xffff : tail;
            const __m512 e = _mm512_maskz_mov_ps(k, exp_le0(_mm512_sub_ps(_mm512_loadu_ps(sj + b), vm)));
            _mm512_storeu_ps(sj + b, e);
            sum = _mm512_add_ps(sum, e);
        }
        m[j] = mj;
        l[j] = _mm512_reduce_add_ps(sum);
    }

    // Heads in fours: their sums stay in registers while a 16-column slice of each V row is read once.
    for (int64_t j0 = 0; j0 < group; j0 += 4) {
        const int nh = (int)EK_MIN(4, group - j0);
        const float *wj[4];
        float *oj[4];
        for (int j = 0; j < nh; j++) { wj[j] = scores + (j0 + j) * ldsc; oj[j] = acc + (j0 + j) * hd; }
        // 64-wide heads (SmolLM2, Llama 3.2 1B...) in one pass; others 16 columns at a time.
        const int wide = nv % 4 == 0;
        for (int64_t c = 0; c < nv; c += wide ? 4 : 1) {
#define EK_VALUE_CASE(NV)                                                                          \
            switch (nh) {                                                                          \
            case 4: value_block(wj, 4, NV, vb, dtype, kv_stride, np, 16 * c, oj); break;           \
            case 3: value_block(wj, 3, NV, vb, dtype, kv_stride, np, 16 * c, oj); break;           \
            case 2: value_block(wj, 2, NV, vb, dtype, kv_stride, np, 16 * c, oj); break;           \
            default: value_block(wj, 1, NV, vb, dtype, kv_stride, np, 16 * c, oj); break;          \
            }
            if (wide) { EK_VALUE_CASE(4) } else { EK_VALUE_CASE(1) }
#undef EK_VALUE_CASE
        }
    }
}

#pragma clang attribute pop
#endif
