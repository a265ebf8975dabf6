// Internal interface between the public entry points (api.c), the thread pool (pool.c), dispatch
// (dispatch.c) and the per-ISA kernel files. Not part of the module's public header.
#ifndef EK_INTERNAL_H
#define EK_INTERNAL_H

#include "edge_kernels.h"
#include <stdint.h>
#include <stddef.h>

#if defined(__x86_64__) || defined(_M_X64)
#define EK_X86 1
#endif
#if defined(__aarch64__)
#define EK_ARM64 1
#endif

// Int8 activation layout ("q8 row"), shared by all variants so they compute the same integers.
// A row of cols activations is cut into groups of G elements (G = 32 * lanes/4, per variant),
// zero-padded to a whole group. Per group, 2*G bytes:
//   [0, G/2)      evens: activation block L (32 elements) contributes x[32L + 2j] at byte 16L + j
//   [G/2, G)      odds:  x[32L + 2j + 1] at byte G/2 + 16L + j
//   [G, 3G/2)     float per int32 lane l (G/8 lanes): the scale d of block l/4
//   [3G/2, 2G)    int32 per lane: -128 * sum of the 8 int8 values of that lane (evens and odds)
// The even/odd split matches the packed NF4 byte (high nibble = even element), so one byte shuffle
// per nibble yields weights already aligned with their activations. Lane l covers elements
// [8l, 8l+8) of the group, so the weight block of lane l is (g*G + 8l) / blocksize.
// Scale: block d = max|x| / 127, q = round(x / d) (0 when the block is all zero).
//
// The paired layout (AVX-512 VNNI, G = 256) holds the same quantised values arranged for gemv_q8_X in
// kernels_avx512.c: groups of L = 16 lanes (384 bytes), and a last group of at most 128 elements with
// L = 8 (192 bytes). Block q's 16 evens E and 16 odds O go to [8p, 8p+8) <- E[0, 8),
// [4L + 8p, ...) <- O[0, 8), [8L + 8p, ...) <- E[8, 16), [12L + 8p, ...) <- O[8, 16), with p = 2q for
// q < L/4 and 2(q - L/4) + 1 otherwise; [16L, 20L) the float scale of each lane (lanes 2p, 2p + 1:
// block q's d / 127); [20L, 24L) the int32 -128 * sum of each lane's 16 values. Only its variant's
// prep_q8 writes it.

// The NF4 codebook scaled to int8: round(code * 127); weight = q / 127 * absmax.
extern int8_t ek_nf4_q8_code[16];
extern float ek_nf4_code_f32[16];
extern float ek_dq_map_f32[256];
void ek_tables_init(void);

// Per-variant kernels. Row ranges are [r0, r1) of W; y rows are the x rows.
typedef struct ek_vtable {
    const char *name;
    // f32 GEMV fast path (cols % blocksize == 0): x rows pre-permuted by prep_f32 into xp rows of
    // cols floats. Computes y[i, r] (+)= dot(W[r, :], x[i, :]) for r in [r0, r1), i < n.
    int32_t f32_chunk;   // prep_f32 permutation chunk (0 = natural order)
    // 1 when the register-blocked GEMV kernel (4 W rows x 4 x rows, weights decoded in registers)
    // beats dequantised tiles + microkernel for many rows too (measured: AVX-512 85 vs 59 GFLOP/s).
    int32_t gemm_by_rows;
    void (*gemv_f32)(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const float *xp, int64_t n,
                     int64_t xps, float *y, int64_t ldy, int acc, float *sa);
    // int8 GEMV fast path: xq rows of ek_q8_row_bytes bytes in the layout above with group q8_group:
    // q8_row_bytes(cols) for the paired layout, NULL for the standard one (2 * q8_group per group).
    int32_t q8_group;
    int64_t (*q8_row_bytes)(int64_t cols);
    // Optional for the standard layout (NULL: the scalar code): ek_prep_q8 for group q8_group,
    // bit-identical to it. Required for the paired layout.
    void (*prep_q8)(const float *x, int64_t cols, uint8_t *xq);
    void (*gemv_q8)(const ek_nf4_matrix *w, int64_t r0, int64_t r1, const uint8_t *xq, int64_t n,
                    int64_t xqs, float *y, int64_t ldy, int acc, float *sa);
    // out[j, kk] = W[r0 + j, k0 + kk] for j < nr, kk < kc (row stride ldo); fast path needs
    // cols % blocksize == 0 and k0, kc multiples of 32.
    void (*dequant_tile)(const ek_nf4_matrix *w, int64_t r0, int64_t nr, int64_t k0, int64_t kc,
                         float *out, int64_t ldo);
    // Microkernel: c[i, 0..<nc] += sum_k a[i, k] * b[k, 0..<32] for i < m (any m), nc <= 32;
    // b has 32 readable floats per row (zero padded) at stride ldb.
    void (*mk32)(int64_t m, int64_t nc, int64_t kc, const float *a, int64_t lda, const float *b,
                 int64_t ldb, float *c, int64_t ldc);
    // int8-weight rows (ek_q8_matrix): y[i, r] = scale[r] * sum_b xd[i, b] * sum_{k in block b} q[r, k] xq[i, k]
    // for r in [r0, r1), i < n; xq rows of w->ld int8 (zero past cols), xd rows of w->ld/32 floats.
    // scratch: EK_Q8W_SCRATCH(n, w->ld) bytes of per-call working space (per-lane activation terms).
    void (*q8w_rows)(const ek_q8_matrix *w, int64_t r0, int64_t r1, const int8_t *xq, const float *xd,
                     int64_t n, float *y, int64_t ldy, void *scratch);
    // ek_decode_absmax_range, vectorised where the variant can (bit-identical: same fp32 ops per block).
    void (*decode_absmax)(const ek_nf4_matrix *w, int64_t b0, int64_t count, float *out);
    // Dense helpers for LoRA and attention.
    float (*dot)(const float *a, const float *b, int64_t n);
    void (*axpy)(float s, const float *x, float *y, int64_t n);   // y += s*x
    // f32 and half slots: y[:out] += scale * B (A x); u: rank floats of scratch.
    void (*lora_row)(const ek_lora_slot *slot, const float *x, int64_t in, float *y, int64_t out,
                     float *u);
    // x[:cols] per 32 by the EK_ACT_INT8 rule into xq (ld bytes, natural order, zero past cols) and
    // xd (ld / 32 scales): the int8 head's and int8 LoRA's activations. The same bytes in every variant.
    void (*q8_quant_row)(const float *x, int64_t cols, int64_t ld, int8_t *xq, float *xd);
    // int8 slots (EK_DTYPE_I8), exactly the header's arithmetic in every variant. lora_down_q8: u[t] for
    // t < rank from q8_quant_row's xq / xd. lora_up_acc_q8: acc[j] = sum_t Bᵀ8[t, j] v8[t] (exact int32)
    // for j < out, v8 of rank rounded up to 4, Bᵀ8's rank quads ld outputs apart (ld >= out: outputs
    // j0 ..< j0 + out of a slot are bt8 + 4 * j0 with ld the slot's out). lora_add_acc: the update,
    // y[j] = fma(sv, acc[j], y[j]) for j < count. Two steps so that the fused GEMV job can make the sums
    // before the GEMV has written y.
    void (*lora_down_q8)(const ek_lora_slot *slot, const int8_t *xq, const float *xd, float *u);
    void (*lora_up_acc_q8)(const int8_t *bt8, int32_t rank, int64_t out, int64_t ld, const int8_t *v8, int32_t *acc);
    void (*lora_add_acc)(const int32_t *acc, float sv, float *y, int64_t count);
    void (*attn_head)(const float *q, const ek_attn_row *row, int64_t g, int64_t head_dim,
                      int64_t kv_stride, int32_t kv_dtype, float scale, float *out, float *scores);
    // Optional (NULL: ek_attention runs attn_head per query head). The `group` query heads q + j*hd
    // that read KV head g, over positions [p0, p1) of row: m[j] = max score, l[j] = sum_p e_p,
    // acc[j*hd ..< +hd] = sum_p e_p v_p with e_p = exp(score_p - m[j]) (unnormalised, so position
    // ranges merge). hd % 16 == 0; scratch: group * (p1 - p0 + 16) + 16 * hd floats.
    void (*attn_group)(const float *q, int64_t group, const ek_attn_row *row, int64_t g, int64_t p0, int64_t p1,
                       int64_t hd, int64_t kv_stride, int32_t kv_dtype, float scale, float *m, float *l, float *acc,
                       float *scratch);
    void (*rmsnorm_row)(const float *x, const float *weight, int64_t dim, float eps, float *y);
    void (*silu_mul)(const float *gate, const float *up, float *out, int64_t count);
    void (*softmax_row)(float *x, int64_t dim);
    void (*f16_to_f32)(const uint16_t *src, float *dst, int64_t count);
    // IEEE half, rounded to nearest even (ek_f16_bits_from_f32 per value): what an f16 KV cache stores.
    void (*f32_to_f16)(const float *src, uint16_t *dst, int64_t count);
    // bf16 prompt products (EK_ACT_BF16); NULL where the CPU has no bf16 dot product. bf16_from_f32
    // rounds count values (a multiple of 32) to nearest even. gemm_bf16_panel computes
    // y[i, r0 + j] (+)= the bf16 dot of x row i and W row r0 + j for i < n, j < nr <= 16, in the order
    // ek_nf4_gemm_bf16_reference defines; tile: EK_BF16_PANEL * cols values of scratch. Needs
    // cols % blocksize == 0 and cols % 32 == 0.
    void (*bf16_from_f32)(const float *x, int64_t count, uint16_t *out);
    void (*gemm_bf16_panel)(const ek_nf4_matrix *w, int64_t r0, int64_t nr, const uint16_t *xb, int64_t n,
                            int64_t ldxb, float *y, int64_t ldy, int acc, uint16_t *tile);
} ek_vtable;

// Weight rows per bf16 panel (dequantised once per call, applied to every activation row).
#define EK_BF16_PANEL 16
// gemm_bf16_avx512.c: fills the bf16 entries of the AVX-512 table (called when the CPU has AVX512_BF16).
void ek_bf16_install_avx512(ek_vtable *t);

// attention_avx512.c (the avx512 table's attn_group).
void ek_attn_group_avx512(const float *q, int64_t group, const ek_attn_row *row, int64_t g, int64_t p0, int64_t p1,
                          int64_t hd, int64_t kv_stride, int32_t kv_dtype, float scale, float *m, float *l, float *acc,
                          float *scratch);

const ek_vtable *ek_vtable_scalar(void);
const ek_vtable *ek_vtable_avx2(void);     // NULL when not built for x86-64
const ek_vtable *ek_vtable_avx512(void);   // NULL when not built for x86-64
const ek_vtable *ek_vtable_neon(void);     // NULL when not built for arm64

// The active table (filled once at start-up; ek_set_variant swaps it).
const ek_vtable *ek_active(void);

// Shared helpers (kernels_scalar.c).
void ek_prep_f32(const float *x, int64_t cols, int32_t chunk, float *xp);
int64_t ek_q8_row_bytes(int64_t cols, const ek_vtable *vt);
// ek_prep_q8 runs the active table's prep_q8 when it has one for this group (the same bytes).
void ek_prep_q8(const float *x, int64_t cols, int32_t group, uint8_t *xq);
float ek_f16_bits_to_f32(uint16_t h);
// f -> IEEE half bits, rounded to nearest even (subnormal halves exact, overflow to infinity, NaN kept
// quiet with its top payload bits): what F16C's vcvtps2ph and NEON's fcvtn give in their default modes.
uint16_t ek_f16_bits_from_f32(float f);
// Absmax of block b (double quantisation decoded).
static inline float ek_absmax_at(const ek_nf4_matrix *w, int64_t b) {
    if (w->absmax_f32) return w->absmax_f32[b];
    float m = w->dq_map[w->absmax_q8[b]] * w->nested_absmax[b / w->nested_blocksize];
    return m + w->offset;
}
// Requests every cache line of [p, p + bytes) into L2 (locality 2: prefetcht1 on x86), ahead of use:
// memory read in short runs (one adapter's LoRA matrices, a GEMV task's absmax codes) otherwise meets
// DRAM latency once per run; asking for all of it up front keeps many misses in flight. Into L2, not
// L1: a hundred-odd requests into L1 stalled on its few miss buffers (cold 8 rows x 8 int8 adapters x 7
// projections, AVX-512: 176 -> 120 us at 1 thread, 78 -> 57 at 2).
static inline void ek_prefetch_l2(const void *p, int64_t bytes) {
    const uintptr_t end = (uintptr_t)p + (uintptr_t)(bytes > 0 ? bytes : 0);
    for (uintptr_t a = (uintptr_t)p & ~(uintptr_t)63; a < end; a += 64) __builtin_prefetch((const void *)a, 0, 2);
}
// Decodes the absmax of blocks [b0, b0+count) into out (count may be 0).
void ek_decode_absmax_range(const ek_nf4_matrix *w, int64_t b0, int64_t count, float *out);
// f32 -> bf16 bits as vcvtneps2bf16 does it: round to nearest even, denormals to signed zero, NaN quiet.
uint16_t ek_bf16_bits(float f);

// Scratch bytes q8w_rows may use for n activation rows of ld bytes: 128 per row and 64 values, and 64
// more per row.
#define EK_Q8W_SCRATCH(n, ld) ((size_t)(n) * ((size_t)((ld) / 64) * 128 + 64) + 64)
// How many weight rows ahead the int8 head kernels (AVX2, AVX-512) prefetch each line, into L2: the
// rows are short (576 bytes for SmolLM2) and read a few at a time, a pattern the hardware prefetchers
// follow poorly. Into L1 the prefetches held the L1 miss buffers and capped the stream (cold 49152x576,
// n=1, AVX-512: 37% of the memory read at 1 thread and 59% at 2; into L2 32 rows ahead: 75% and 90%,
// n=8 34 -> 60%; AVX2: 33/52% -> 79/87%).
#define EK_Q8W_PREFETCH_ROWS 32

// ---- Thread pool (pool.c) ----
typedef ek_task_callback ek_task_fn;
// Runs fn(ctx, t, worker) for t in [0, ntasks) over the pool; returns when all are done.
// Tasks are taken dynamically. worker < ek_threads(). Falls back to the calling thread alone when
// the pool is busy with another caller (or ntasks == 1).
void ek_parallel(int64_t ntasks, ek_task_fn fn, void *ctx);
// Spins (then yields) until *counter >= target (acquire): a task waiting inside a job for earlier tasks
// of the same job, which running workers have already claimed.
void ek_wait_count(_Atomic int64_t *counter, int64_t target);
// Per-thread scratch, grown on demand (never shrinks). Slots 0 ..< EK_SCRATCH_SLOTS are independent
// buffers: 0 a GEMV task's absmax and partial sums, 1 the prepared activations of a product, 2 small
// ops, 3 one row's LoRA vectors, 4 the fused GEMV job's LoRA updates.
#define EK_SCRATCH_SLOTS 5
void *ek_scratch(int slot, size_t bytes);

#define EK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EK_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
