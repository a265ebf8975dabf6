#pragma clang diagnostic ignored "-Wunused-function"
// Plain-C kernels written once and compiled per ISA (the llamafile idea): each variant file includes
// this under `#pragma clang attribute push(__attribute__((target(...))))` with EKG(name) giving the
// suffixed name, so the compiler vectorises the same source for SSE2, AVX2, AVX-512 or NEON.
// Reductions keep 16 explicit partial sums, so they vectorise without -ffast-math and every variant
// sums in the same order up to FMA contraction.
//
// Requires: ek_internal.h, <math.h>, <string.h>, and EKG(x) defined by the includer.

// 16 partial sums, then a fixed tree: identical order in every variant.
static float EKG(dot)(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[k + l] * b[k + l];
    for (int l = 0; k < n; k++, l++) acc[l] += a[k] * b[k];
    for (int s = 8; s > 0; s >>= 1)
        for (int l = 0; l < s; l++) acc[l] += acc[l + s];
    return acc[0];
}

static void EKG(axpy)(float s, const float *x, float *y, int64_t n) {
    for (int64_t k = 0; k < n; k++) y[k] += s * x[k];
}

// Any layout (blocks may span rows, any k0/kc): element-wise flat indexing, one absmax per block run.
static void EKG(dequant_tile)(const ek_nf4_matrix *w, int64_t r0, int64_t nr, int64_t k0, int64_t kc,
                              float *out, int64_t ldo) {
    const int64_t bs = w->blocksize;
    for (int64_t j = 0; j < nr; j++) {
        int64_t e = (r0 + j) * w->cols + k0, end = e + kc;
        float *o = out + j * ldo;
        while (e < end) {
            int64_t b = e / bs, stop = EK_MIN(end, (b + 1) * bs);
            float a = ek_absmax_at(w, b);
            for (; e < stop; e++) {
                uint8_t byte = w->packed[e >> 1];
                int code = (e & 1) ? (byte & 15) : (byte >> 4);
                *o++ = ek_nf4_code_f32[code] * a;
            }
        }
    }
}

// c[i, :nc] += a[i, :kc] · b[:kc, :16], rows in fours so 4x16 accumulators stay in registers.
static void EKG(mk16)(int64_t m, int64_t nc, int64_t kc, const float *a, int64_t lda, const float *b,
                      int64_t ldb, float *c, int64_t ldc) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) {
        float acc0[16] = {0}, acc1[16] = {0}, acc2[16] = {0}, acc3[16] = {0};
        const float *a0 = a + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        for (int64_t k = 0; k < kc; k++) {
            const float *bk = b + k * ldb;
            float v0 = a0[k], v1 = a1[k], v2 = a2[k], v3 = a3[k];
            for (int l = 0; l < 16; l++) {
                acc0[l] += v0 * bk[l]; acc1[l] += v1 * bk[l];
                acc2[l] += v2 * bk[l]; acc3[l] += v3 * bk[l];
            }
        }
        for (int64_t l = 0; l < nc; l++) {
            c[i * ldc + l] += acc0[l]; c[(i + 1) * ldc + l] += acc1[l];
            c[(i + 2) * ldc + l] += acc2[l]; c[(i + 3) * ldc + l] += acc3[l];
        }
    }
    for (; i < m; i++) {
        float acc[16] = {0};
        const float *ai = a + i * lda;
        for (int64_t k = 0; k < kc; k++)
            for (int l = 0; l < 16; l++) acc[l] += ai[k] * b[k * ldb + l];
        for (int64_t l = 0; l < nc; l++) c[i * ldc + l] += acc[l];
    }
}

static void EKG(mk32)(int64_t m, int64_t nc, int64_t kc, const float *a, int64_t lda, const float *b,
                      int64_t ldb, float *c, int64_t ldc) {
    EKG(mk16)(m, EK_MIN(nc, 16), kc, a, lda, b, ldb, c, ldc);
    if (nc > 16) EKG(mk16)(m, nc - 16, kc, a, lda, b + 16, ldb, c + 16, ldc);
}

// 16 f32 lanes as the ISA holds them (one zmm, two ymm, four NEON q, or an array) with the few
// operations the f16 LoRA loops need. Spelled out per ISA because clang does not keep a converted
// local array in registers (measured: it spilled and split the AVX-512 dot into xmm pieces).
#if defined(EK_HAVE_AVX512_F16)
typedef struct { __m512 v; } EKG(v16);
static inline EKG(v16) EKG(v16_zero)(void) { return (EKG(v16)){_mm512_setzero_ps()}; }
static inline EKG(v16) EKG(v16_half)(const uint16_t *p) {
    return (EKG(v16)){_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p))};
}
static inline EKG(v16) EKG(v16_load)(const float *p) { return (EKG(v16)){_mm512_loadu_ps(p)}; }
static inline EKG(v16) EKG(v16_fma)(EKG(v16) a, EKG(v16) b, EKG(v16) c) { return (EKG(v16)){_mm512_fmadd_ps(a.v, b.v, c.v)}; }
static inline EKG(v16) EKG(v16_fma_s)(float a, EKG(v16) b, EKG(v16) c) { return (EKG(v16)){_mm512_fmadd_ps(_mm512_set1_ps(a), b.v, c.v)}; }
static inline void EKG(v16_store)(float *p, EKG(v16) a) { _mm512_storeu_ps(p, a.v); }
#elif defined(EK_HAVE_F16C)
typedef struct { __m256 lo, hi; } EKG(v16);
static inline EKG(v16) EKG(v16_zero)(void) { return (EKG(v16)){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
static inline EKG(v16) EKG(v16_half)(const uint16_t *p) {
    return (EKG(v16)){_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)))};
}
static inline EKG(v16) EKG(v16_load)(const float *p) { return (EKG(v16)){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
static inline EKG(v16) EKG(v16_fma)(EKG(v16) a, EKG(v16) b, EKG(v16) c) {
    return (EKG(v16)){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
static inline EKG(v16) EKG(v16_fma_s)(float a, EKG(v16) b, EKG(v16) c) {
    __m256 s = _mm256_set1_ps(a);
    return (EKG(v16)){_mm256_fmadd_ps(s, b.lo, c.lo), _mm256_fmadd_ps(s, b.hi, c.hi)};
}
static inline void EKG(v16_store)(float *p, EKG(v16) a) { _mm256_storeu_ps(p, a.lo); _mm256_storeu_ps(p + 8, a.hi); }
#elif defined(EK_HAVE_NEON_F16)
typedef struct { float32x4_t q[4]; } EKG(v16);
static inline EKG(v16) EKG(v16_zero)(void) {
    EKG(v16) r;
    for (int i = 0; i < 4; i++) r.q[i] = vdupq_n_f32(0);
    return r;
}
static inline EKG(v16) EKG(v16_half)(const uint16_t *p) {
    EKG(v16) r;
    for (int i = 0; i < 4; i++) r.q[i] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p + 4 * i)));
    return r;
}
static inline EKG(v16) EKG(v16_load)(const float *p) {
    EKG(v16) r;
    for (int i = 0; i < 4; i++) r.q[i] = vld1q_f32(p + 4 * i);
    return r;
}
static inline EKG(v16) EKG(v16_fma)(EKG(v16) a, EKG(v16) b, EKG(v16) c) {
    for (int i = 0; i < 4; i++) c.q[i] = vfmaq_f32(c.q[i], a.q[i], b.q[i]);
    return c;
}
static inline EKG(v16) EKG(v16_fma_s)(float a, EKG(v16) b, EKG(v16) c) {
    for (int i = 0; i < 4; i++) c.q[i] = vfmaq_n_f32(c.q[i], b.q[i], a);
    return c;
}
static inline void EKG(v16_store)(float *p, EKG(v16) a) {
    for (int i = 0; i < 4; i++) vst1q_f32(p + 4 * i, a.q[i]);
}
#else
typedef struct { float f[16]; } EKG(v16);
static inline EKG(v16) EKG(v16_zero)(void) { return (EKG(v16)){{0}}; }
static inline EKG(v16) EKG(v16_half)(const uint16_t *p) {
    EKG(v16) r;
    for (int l = 0; l < 16; l++) r.f[l] = ek_f16_bits_to_f32(p[l]);
    return r;
}
static inline EKG(v16) EKG(v16_load)(const float *p) {
    EKG(v16) r;
    memcpy(r.f, p, sizeof r.f);
    return r;
}
static inline EKG(v16) EKG(v16_fma)(EKG(v16) a, EKG(v16) b, EKG(v16) c) {
    for (int l = 0; l < 16; l++) c.f[l] += a.f[l] * b.f[l];
    return c;
}
static inline EKG(v16) EKG(v16_fma_s)(float a, EKG(v16) b, EKG(v16) c) {
    for (int l = 0; l < 16; l++) c.f[l] += a * b.f[l];
    return c;
}
static inline void EKG(v16_store)(float *p, EKG(v16) a) { memcpy(p, a.f, sizeof a.f); }
#endif

// dot of a[n] stored narrow (LOADW: 16 values as f32, CONVT: one) with f32 x[n]: the same 16
// partial sums and tree as dot.
#define EK_DOT1_BODY(LOADW, CONVT)                                                                      \
    EKG(v16) v = EKG(v16_zero)();                                                                       \
    int64_t k = 0;                                                                                      \
    for (; k + 16 <= n; k += 16) v = EKG(v16_fma)(LOADW(a + k), EKG(v16_load)(x + k), v);               \
    float acc[16];                                                                                      \
    EKG(v16_store)(acc, v);                                                                             \
    for (int l = 0; k < n; k++, l++) acc[l] += CONVT(a[k]) * x[k];                                      \
    for (int st = 8; st > 0; st >>= 1)                                                                  \
        for (int l = 0; l < st; l++) acc[l] += acc[l + st];                                             \
    return acc[0];

static float EKG(dot_f16)(const uint16_t *a, const float *x, int64_t n) { EK_DOT1_BODY(EKG(v16_half), ek_f16_bits_to_f32) }
#undef EK_DOT1_BODY

// Four dots of consecutive rows a + q*lda (q < 4) with one x: four independent FMA chains that share
// each x load (one chain alone is latency-bound: in/16 dependent FMAs per rank row). Each row sums in
// exactly dot's order, so the result equals four calls of dot / dot_f16. LOADW and CONVT read A (f32 or half).
#define EK_DOT4_BODY(LOADW, CONVT)                                                                      \
    EKG(v16) v0 = EKG(v16_zero)(), v1 = v0, v2 = v0, v3 = v0;                                          \
    int64_t k = 0;                                                                                      \
    for (; k + 16 <= n; k += 16) {                                                                      \
        EKG(v16) xv = EKG(v16_load)(x + k);                                                             \
        v0 = EKG(v16_fma)(LOADW(a + k), xv, v0);                                                        \
        v1 = EKG(v16_fma)(LOADW(a + lda + k), xv, v1);                                                  \
        v2 = EKG(v16_fma)(LOADW(a + 2 * lda + k), xv, v2);                                              \
        v3 = EKG(v16_fma)(LOADW(a + 3 * lda + k), xv, v3);                                              \
    }                                                                                                   \
    float acc[4][16];                                                                                   \
    EKG(v16_store)(acc[0], v0); EKG(v16_store)(acc[1], v1);                                             \
    EKG(v16_store)(acc[2], v2); EKG(v16_store)(acc[3], v3);                                             \
    for (int q = 0; q < 4; q++) {                                                                       \
        for (int64_t kk = k, l = 0; kk < n; kk++, l++) acc[q][l] += CONVT(a[q * lda + kk]) * x[kk];     \
        for (int st = 8; st > 0; st >>= 1)                                                              \
            for (int l = 0; l < st; l++) acc[q][l] += acc[q][l + st];                                   \
        out[q] = acc[q][0];                                                                             \
    }

#define EK_AS_FLOAT(v) (v)
static void EKG(dot4_f16)(const uint16_t *a, int64_t lda, const float *x, int64_t n, float out[4]) {
    EK_DOT4_BODY(EKG(v16_half), ek_f16_bits_to_f32)
}
static void EKG(dot4)(const float *a, int64_t lda, const float *x, int64_t n, float out[4]) {
    EK_DOT4_BODY(EKG(v16_load), EK_AS_FLOAT)
}
#undef EK_AS_FLOAT
#undef EK_DOT4_BODY

// u[t] = scale * (A x)[t] for t < r, A rows of length in (f32 or half), four rows at a time.
static void EKG(lora_down)(const ek_lora_slot *s, const float *x, int64_t in, float *u) {
    const int64_t r = s->rank;
    int64_t t = 0;
    for (; t + 4 <= r; t += 4) {
        float d[4];
        if (s->dtype == EK_DTYPE_F16) EKG(dot4_f16)(s->a16 + t * in, in, x, in, d);
        else EKG(dot4)(s->a + t * in, in, x, in, d);
        for (int q = 0; q < 4; q++) u[t + q] = d[q] * s->scale;
    }
    for (; t < r; t++) {
        float d = s->dtype == EK_DTYPE_F16 ? EKG(dot_f16)(s->a16 + t * in, x, in) : EKG(dot)(s->a + t * in, x, in);
        u[t] = d * s->scale;
    }
}

// y[:out] += sum_t u[t] * Bt[t, :] with Bt [rank, out] in half (LOADB: 16 values as f32,
// CONVB: one value). 64 outputs at a time: their sums stay in registers over the rank loop (4
// independent FMA chains), so y is read and written once and Bt streams in as rank parallel rows.
#define EK_LORA_UP_BODY(BT, LOADB, CONVB)                                                              \
    const int64_t r = s->rank;                                                                          \
    int64_t j = 0;                                                                                      \
    for (; j + 64 <= out; j += 64) {                                                                    \
        EKG(v16) a0 = EKG(v16_zero)(), a1 = a0, a2 = a0, a3 = a0;                                      \
        for (int64_t t = 0; t < r; t++) {                                                               \
            const float ut = u[t];                                                                      \
            a0 = EKG(v16_fma_s)(ut, LOADB(BT + t * out + j), a0);                                       \
            a1 = EKG(v16_fma_s)(ut, LOADB(BT + t * out + j + 16), a1);                                  \
            a2 = EKG(v16_fma_s)(ut, LOADB(BT + t * out + j + 32), a2);                                  \
            a3 = EKG(v16_fma_s)(ut, LOADB(BT + t * out + j + 48), a3);                                  \
        }                                                                                               \
        EKG(v16_store)(y + j, EKG(v16_fma_s)(1.0f, EKG(v16_load)(y + j), a0));                          \
        EKG(v16_store)(y + j + 16, EKG(v16_fma_s)(1.0f, EKG(v16_load)(y + j + 16), a1));                \
        EKG(v16_store)(y + j + 32, EKG(v16_fma_s)(1.0f, EKG(v16_load)(y + j + 32), a2));                \
        EKG(v16_store)(y + j + 48, EKG(v16_fma_s)(1.0f, EKG(v16_load)(y + j + 48), a3));                \
    }                                                                                                   \
    for (; j + 16 <= out; j += 16) {                                                                    \
        EKG(v16) a0 = EKG(v16_zero)();                                                                  \
        for (int64_t t = 0; t < r; t++) a0 = EKG(v16_fma_s)(u[t], LOADB(BT + t * out + j), a0);         \
        EKG(v16_store)(y + j, EKG(v16_fma_s)(1.0f, EKG(v16_load)(y + j), a0));                          \
    }                                                                                                   \
    for (; j < out; j++) {                                                                              \
        float acc = 0;                                                                                  \
        for (int64_t t = 0; t < r; t++) acc += u[t] * CONVB(BT[t * out + j]);                           \
        y[j] += acc;                                                                                    \
    }

// y[:out] += scale * B (A x) with A, B stored as halves (slot dtype EK_DTYPE_F16); u: rank floats.
static void EKG(lora_row_f16)(const ek_lora_slot *s, const float *x, int64_t in, float *y, int64_t out,
                              float *u) {
    ek_prefetch_l2(s->a16, s->rank * in * 2);
    ek_prefetch_l2(s->bt16 ? (const void *)s->bt16 : (const void *)s->b16, s->rank * out * 2);
    EKG(lora_down)(s, x, in, u);
    if (s->bt16) {
        const uint16_t *bt = s->bt16;
        EK_LORA_UP_BODY(bt, EKG(v16_half), ek_f16_bits_to_f32)
        return;
    }
    // [out, rank] layout: one short dot per output (rank 16 is a single 16-lane step).
    for (int64_t j = 0; j < out; j++) y[j] += EKG(dot_f16)(s->b16 + j * s->rank, u, s->rank);
}
#undef EK_LORA_UP_BODY

// y[:out] += scale * B (A x) for f32 and half slots (int8 slots: lora_down_q8, lora_up_acc_q8, lora_add_acc); u is
// scratch of rank floats.
static void EKG(lora_row)(const ek_lora_slot *s, const float *x, int64_t in, float *y, int64_t out,
                          float *u) {
    if (s->dtype == EK_DTYPE_F16) { EKG(lora_row_f16)(s, x, in, y, out, u); return; }
    const int64_t r = s->rank;
    EKG(lora_down)(s, x, in, u);
    if (s->bt) {
        for (int64_t t = 0; t < r; t++) EKG(axpy)(u[t], s->bt + t * out, y, out);
        return;
    }
    if (r == 16) {
        // The common rank: a fixed-length inner loop the compiler unrolls into one vector op.
        for (int64_t j = 0; j < out; j++) {
            const float *bj = s->b + j * 16;
            float acc[16];
            for (int l = 0; l < 16; l++) acc[l] = bj[l] * u[l];
            for (int st = 8; st > 0; st >>= 1)
                for (int l = 0; l < st; l++) acc[l] += acc[l + st];
            y[j] += acc[0];
        }
        return;
    }
    for (int64_t j = 0; j < out; j++) y[j] += EKG(dot)(s->b + j * r, u, r);
}

// ---- int8 LoRA slots (EK_DTYPE_I8): the header's arithmetic in portable C ---------------------------
// Integer sums are exact and the float steps (fmaf, the halving sum) are written out one by one, so
// every variant compiled from this, and the AVX-512 VNNI kernels, produce the same bits.

// x per 32 values, the EK_ACT_INT8 rule: xq gets ld bytes (zero past cols), xd ld / 32 scales.
static void EKG(q8_quant_row)(const float *x, int64_t cols, int64_t ld, int8_t *xq, float *xd) {
    for (int64_t b = 0; b < ld / 32; b++) {
        const int64_t k0 = 32 * b, k1 = EK_MIN(cols, k0 + 32);
        float amax = 0;
        for (int64_t k = k0; k < k1; k++) amax = fmaxf(amax, fabsf(x[k]));
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int64_t k = k0; k < k0 + 32; k++) xq[k] = k < k1 ? (int8_t)lrintf(x[k] * id) : 0;
        xd[b] = amax / 127.0f;
    }
}

// u[t] for t < rank: per 64-value chunk, 16 int32 lanes of 4 products each, scaled by their block's d
// and accumulated per lane (fmaf), then halved down to one sum and times the row's scale.
static void EKG(lora_down_q8)(const ek_lora_slot *s, const int8_t *xq, const float *xd, float *u) {
    const int64_t ld = s->a8_ld, nc = ld / 64;
    for (int32_t t = 0; t < s->rank; t++) {
        const int8_t *a = s->a8 + t * ld;
        float f[16] = {0};
        for (int64_t c = 0; c < nc; c++)
            for (int l = 0; l < 16; l++) {
                const int64_t k = 64 * c + 4 * l;
                const int32_t lane = a[k] * xq[k] + a[k + 1] * xq[k + 1] + a[k + 2] * xq[k + 2] + a[k + 3] * xq[k + 3];
                f[l] = fmaf((float)lane, xd[2 * c + l / 8], f[l]);
            }
        for (int st = 8; st > 0; st >>= 1)
            for (int l = 0; l < st; l++) f[l] += f[l + st];
        u[t] = f[0] * s->a8_scale[t];
    }
}

// acc[j] = sum_t Bᵀ8[t, j] v8[t] for j < out, exact in int32; Bᵀ8 in rank quads ld outputs apart, v8
// with the rank rounded up to 4 entries (zero past rank).
static void EKG(lora_up_acc_q8)(const int8_t *bt8, int32_t rank, int64_t out, int64_t ld, const int8_t *v8,
                                int32_t *acc) {
    const int64_t nq = (rank + 3) / 4;
    for (int64_t j = 0; j < out; j++) acc[j] = 0;
    for (int64_t q = 0; q < nq; q++) {
        const int8_t *b = bt8 + q * ld * 4, *v = v8 + 4 * q;
        for (int64_t j = 0; j < out; j++)
            acc[j] += b[4 * j] * v[0] + b[4 * j + 1] * v[1] + b[4 * j + 2] * v[2] + b[4 * j + 3] * v[3];
    }
}

// y[j] = fmaf(sv, acc[j], y[j]): an int8 slot's update from its int32 sums.
static void EKG(lora_add_acc)(const int32_t *acc, float sv, float *y, int64_t count) {
    for (int64_t j = 0; j < count; j++) y[j] = fmaf(sv, (float)acc[j], y[j]);
}

static inline float EKG(kv_at)(const void *base, int32_t dtype, int64_t idx) {
    if (dtype == EK_DTYPE_F32) return ((const float *)base)[idx];
    return ek_f16_bits_to_f32(((const uint16_t *)base)[idx]);
}

static void EKG(f32_to_f16)(const float *src, uint16_t *dst, int64_t count) {
    int64_t k = 0;
#if defined(EK_HAVE_F16C)
    for (; k + 8 <= count; k += 8)
        _mm_storeu_si128((__m128i *)(dst + k), _mm256_cvtps_ph(_mm256_loadu_ps(src + k), _MM_FROUND_TO_NEAREST_INT));
#elif defined(EK_HAVE_NEON_F16)
    for (; k + 4 <= count; k += 4) vst1_u16(dst + k, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + k))));
#endif
    for (; k < count; k++) dst[k] = ek_f16_bits_from_f32(src[k]);
}

static void EKG(f16_to_f32)(const uint16_t *src, float *dst, int64_t count) {
#if defined(EK_HAVE_F16C)
    int64_t k = 0;
    for (; k + 8 <= count; k += 8)
        _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + k))));
    for (; k < count; k++) dst[k] = ek_f16_bits_to_f32(src[k]);
#elif defined(EK_HAVE_NEON_F16)
    int64_t k = 0;
    for (; k + 4 <= count; k += 4)
        vst1q_f32(dst + k, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + k))));
    for (; k < count; k++) dst[k] = ek_f16_bits_to_f32(src[k]);
#else
    for (int64_t k = 0; k < count; k++) dst[k] = ek_f16_bits_to_f32(src[k]);
#endif
}

// One (query row, query head): scores over positions, softmax, weighted sum of values.
// scores: scratch of row->len floats (plus head_dim floats for a converted f16 row).
static void EKG(attn_head)(const float *q, const ek_attn_row *row, int64_t g, int64_t hd,
                           int64_t kv_stride, int32_t dtype, float scale, float *out, float *scores) {
    const int64_t len = row->len;
    float *conv = scores + len;   // one f16 row converted to f32
    float mx = -INFINITY;
    for (int64_t p = 0; p < len; p++) {
        float s;
        if (dtype == EK_DTYPE_F32) {
            s = EKG(dot)(q, (const float *)row->k + p * kv_stride + g * hd, hd);
        } else {
            EKG(f16_to_f32)((const uint16_t *)row->k + p * kv_stride + g * hd, conv, hd);
            s = EKG(dot)(q, conv, hd);
        }
        s *= scale;
        scores[p] = s;
        if (s > mx) mx = s;
    }
    float sum = 0;
    for (int64_t p = 0; p < len; p++) { scores[p] = expf(scores[p] - mx); sum += scores[p]; }
    float inv = 1.0f / sum;
    for (int64_t d = 0; d < hd; d++) out[d] = 0;
    for (int64_t p = 0; p < len; p++) {
        float wgt = scores[p] * inv;
        if (dtype == EK_DTYPE_F32) {
            EKG(axpy)(wgt, (const float *)row->v + p * kv_stride + g * hd, out, hd);
        } else {
            EKG(f16_to_f32)((const uint16_t *)row->v + p * kv_stride + g * hd, conv, hd);
            EKG(axpy)(wgt, conv, out, hd);
        }
    }
}

static void EKG(rmsnorm_row)(const float *x, const float *weight, int64_t dim, float eps, float *y) {
    float ss = EKG(dot)(x, x, dim);
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int64_t k = 0; k < dim; k++) y[k] = x[k] * inv * weight[k];
}

#if !defined(EK_HAVE_SILU_MUL)
static void EKG(silu_mul)(const float *gate, const float *up, float *out, int64_t count) {
    for (int64_t k = 0; k < count; k++) {
        float g = gate[k];
        out[k] = g / (1.0f + expf(-g)) * up[k];
    }
}
#endif

static void EKG(softmax_row)(float *x, int64_t dim) {
    float mx = -INFINITY;
    for (int64_t k = 0; k < dim; k++) mx = x[k] > mx ? x[k] : mx;
    float sum = 0;
    for (int64_t k = 0; k < dim; k++) { x[k] = expf(x[k] - mx); sum += x[k]; }
    float inv = 1.0f / sum;
    for (int64_t k = 0; k < dim; k++) x[k] *= inv;
}

// int8 weights x int8 activations, one float scale per 32 activations and per weight row. Integer
// sums per 32 are exact, so every variant computes the same block sums.
static void EKG(q8w_rows)(const ek_q8_matrix *w, int64_t r0, int64_t r1, const int8_t *xq, const float *xd,
                          int64_t n, float *y, int64_t ldy, void *scratch) {
    (void)scratch;
    const int64_t ld = w->ld, nb = ld / 32;
    for (int64_t r = r0; r < r1; r++) {
        const int8_t *wr = w->q + r * ld;
        for (int64_t i = 0; i < n; i++) {
            const int8_t *xr = xq + i * ld;
            const float *dr = xd + i * nb;
            float total = 0;
            for (int64_t b = 0; b < nb; b++) {
                int32_t isum = 0;
                for (int k = 0; k < 32; k++) isum += (int32_t)wr[32 * b + k] * (int32_t)xr[32 * b + k];
                total += (float)isum * dr[b];
            }
            y[i * ldy + r] = total * w->scale[r];
        }
    }
}
