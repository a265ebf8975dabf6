// edge-runtime kernels: the public C interface of the Kernels target.
//
// Conventions (every function below):
// - Matrices are row-major with an explicit leading dimension (elements between consecutive rows).
// - Sizes and strides are int64_t; counts of rows are called n, the NF4 weight is [rows, cols].
// - Functions that can be handed bad arguments check them first and return an int32_t status (EK_OK = 0,
//   negative = what is wrong, see ek_status_message); on error nothing is written.
// - Nothing here allocates in steady state or logs. Scratch lives in per-thread buffers owned by the
//   thread pool (grown once to the largest size seen, then reused).
// - All entry points are thread-safe. Parallel work runs on one persistent pool; a call made while the
//   pool is busy with another caller's work runs on the calling thread alone instead of waiting.
#ifndef EDGE_KERNELS_H
#define EDGE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- NF4 format tables (bitsandbytes 0.50.2, see NF4.md) -------------------------------------
// Stored as bit patterns so the values are exact; reinterpret as float.
extern const uint32_t ek_nf4_code_bits[16];
extern const uint32_t ek_nf4_threshold_bits[15];
extern const uint32_t ek_dynamic_map_bits[256];

// ---- Status codes ------------------------------------------------------------------------------
// Status codes returned (as int32_t) by the checked entry points.
enum {
    EK_OK = 0,
    EK_ERR_NULL = -1,          // a required pointer is NULL
    EK_ERR_SHAPE = -2,         // a size is negative/zero where it must be positive, or inconsistent
    EK_ERR_STRIDE = -3,        // a leading dimension is smaller than the row it must hold
    EK_ERR_BLOCKSIZE = -4,     // blocksize not a power of two in 32...4096, or nested_blocksize < 1
    EK_ERR_ABSMAX = -5,        // neither absmax_f32 nor the full double-quant set (q8, nested, map) given
    EK_ERR_ADAPTER = -6,       // a LoRA slot index out of range, a slot rank outside 1...256, or its A/B NULL
    EK_ERR_DTYPE = -7,         // unknown dtype code (KV cache or LoRA slot)
    EK_ERR_VARIANT = -8,       // unknown kernel variant name, or not supported by this CPU
    EK_ERR_NOMEM = -9,         // scratch memory could not be allocated
};

// A constant, human-readable sentence for a status code.
const char *ek_status_message(int32_t status);

// ---- Variant selection (dispatch) --------------------------------------------------------------
// CPU features are read once (cpuid + xgetbv on x86-64, getauxval on arm64) on first use; the best
// supported variant fills one function table. EDGE_KERNELS=scalar|avx2|avx512|neon forces a variant
// (an unsupported or unknown forced name falls back to the best one, and the line below says so).

// Name of the active variant: "scalar", "avx2", "avx512" or "neon".
const char *ek_variant_name(void);
// One line describing the CPU features found, the variant chosen and why, and the thread count;
// the Swift side logs it once at start-up.
const char *ek_dispatch_description(void);
// 1 when this CPU can run the named variant ("scalar" always), 0 otherwise (also for unknown names).
int32_t ek_variant_supported(const char *name);
// Switch the active variant (tests and benchmarks). EK_ERR_VARIANT when unknown or unsupported.
// Do not call while other threads are running kernels.
int32_t ek_set_variant(const char *name);

// ---- Threads -------------------------------------------------------------------------------------
// The pool's worker count including the calling thread. Default: online cores. n <= 0 restores the
// default. Threads are created once (here or on first use) and spin briefly, then sleep, between jobs.
void ek_set_threads(int32_t n);
int32_t ek_threads(void);
// Runs fn(ctx, task, worker) for every task in [0, ntasks) on the pool and returns when all are done;
// worker < ek_threads() names the thread (for per-worker scratch). Tasks are handed out dynamically.
// For callers outside the kernels (e.g. splitting an OpenBLAS product) so that one set of threads
// serves everything: a second pool spinning beside this one steals the cores it waits for.
// Not reentrant: fn must not call back into a pooled kernel (it would run on the calling thread).
typedef void (*ek_task_callback)(void *ctx, int64_t task, int32_t worker);
void ek_parallel_for(int64_t ntasks, ek_task_callback fn, void *ctx);

// ---- NF4 weights ------------------------------------------------------------------------------------
// A bitsandbytes NF4 tensor as stored (NF4.md), typically pointing into the mapped model file.
// Blocks are runs of `blocksize` consecutive elements of the row-major FLAT tensor (a block may span
// rows when cols % blocksize != 0; such matrices run on the portable path only).
// absmax of block i: absmax_f32[i], or, double-quantised,
//   dq_map[absmax_q8[i]] * nested_absmax[i / nested_blocksize] + offset   (fp32, in that order).
typedef struct ek_nf4_matrix {
    const uint8_t *packed;        // rows*cols/2 bytes (rounded up), high nibble first
    const float   *absmax_f32;    // per-block absmax, or NULL when double-quantised
    const uint8_t *absmax_q8;     // per-block 8-bit code (double quant), or NULL
    const float   *nested_absmax; // per nested block (double quant), or NULL
    const float   *dq_map;        // 256-entry dynamic map as stored in the file (double quant), or NULL
    float          offset;        // nested offset (double quant)
    int64_t        rows, cols;    // out_features, in_features
    int32_t        blocksize;     // 64 by default
    int32_t        nested_blocksize; // 256
} ek_nf4_matrix;

// Validates the descriptor (pointers, sizes, blocksize). EK_OK or the first problem found.
int32_t ek_nf4_check(const ek_nf4_matrix *w);
// Number of absmax blocks: ceil(rows*cols / blocksize).
int64_t ek_nf4_block_count(const ek_nf4_matrix *w);
// out[0..<count] = absmax of blocks first ..< first+count (decoding double quantisation).
int32_t ek_nf4_decode_absmax(const ek_nf4_matrix *w, int64_t first, int64_t count, float *out);
// out[r - row0, c] = W[r, c] for r in row0 ..< row0+nrows; out is [nrows, cols] with leading dim ldo.
int32_t ek_nf4_dequantize(const ek_nf4_matrix *w, int64_t row0, int64_t nrows, float *out, int64_t ldo);

// Flags for the products below (bitwise or).
enum {
    EK_ACCUMULATE = 1,   // add into the output instead of overwriting it
    EK_ACT_INT8 = 2,     // quantise activations per 32 to int8 and use integer dot products
                         // (GEMV path only; relative error budget EK_INT8_REL_ERROR). Matrices whose
                         // blocks span rows (cols % blocksize != 0) run the f32 portable path instead.
    EK_GEMM_TILES = 4,   // ek_nf4_gemm: always dequantise W tiles + f32 microkernel (see below)
    EK_ACT_BF16 = 8,     // ek_nf4_gemm (prompt rows): round activations and dequantised weights to bf16
                         // and sum their products in f32 (vdpbf16ps), twice the multiply-adds per
                         // instruction of f32. Only where ek_bf16_native() says so; elsewhere the flag
                         // is ignored and the product is f32. Error budget EK_BF16_REL_ERROR.
};
// Error budget of EK_ACT_BF16 relative to the f32 product: |y_bf16 - y_f32| <= EK_BF16_REL_ERROR *
// sum_k |x_k * w_k| (each operand rounded by at most 2^-9 of itself, so each product by < 2^-8).
#define EK_BF16_REL_ERROR 0.004f
// Error budget of EK_ACT_INT8 relative to the f32 product: |y_int8 - y_f32| <= EK_INT8_REL_ERROR *
// sum_k |x_k * w_k| (per output). Measured (KernelsTests, random codes, heavy-tailed activations): worst
// 0.0071 * sum|wx|, rms error 1.2% of rms y — from the int8 codebook round(code*127) (<= 0.4% of absmax
// per weight) and per-32 activation rounding. The f32 paths agree with a double reference to ~1e-6.
#define EK_INT8_REL_ERROR 0.02f

// Y[n, rows] = X[n, cols] · W^T   (+ Y when EK_ACCUMULATE).
// X row i at x + i*ldx (ldx >= cols), Y row i at y + i*ldy (ldy >= rows); Y must not overlap X.
// Picks the GEMV kernel for small n (decode) and the tiled GEMM for larger n (prefill, training).
int32_t ek_nf4_matmul(const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx,
                      float *y, int64_t ldy, int32_t flags);
// The same product forced through the GEMV kernel (rows of W streamed once, every x row per W row).
int32_t ek_nf4_gemv(const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx,
                    float *y, int64_t ldy, int32_t flags);
// 1 when the active variant computes EK_ACT_BF16 products with bf16 dot-product instructions.
int ek_bf16_native(void);
// 1 when the active variant's attention converts f16 keys and values in blocks in registers (AVX-512),
// where an f16 KV cache reads half the bytes at no extra arithmetic cost; 0 where it converts row by row
// (AVX2, NEON, scalar), which is slower than reading f32.
int ek_kv_f16_native(void);
// The exact arithmetic of EK_ACT_BF16, in portable C (the reference the bf16 kernels are tested
// against): x and the dequantised W (code * absmax in f32) rounded to bf16 (nearest even, denormals to
// zero). Each output is 16 f32 partial sums — partial l adds, for s = 0, 1, ..., x·w at k = 32s+2l+1
// and then at k = 32s+2l, flushing results below FLT_MIN to zero (vdpbf16ps' order) — added as a tree:
// p[l] + p[l+8], then + [l+4], + [l+2], + [l+1]. Needs cols % blocksize == 0 and cols % 32 == 0
// (EK_ERR_SHAPE otherwise). Honours EK_ACCUMULATE.
int32_t ek_nf4_gemm_bf16_reference(const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx,
                                   float *y, int64_t ldy, int32_t flags);
// Several GEMVs over one input: Y_m[n, ws[m].rows] = X[n, cols] · W_m^T for m < count (the q/k/v or
// gate/up projections of a decode step). X is prepared (int8-quantised or permuted) once and one pool
// job covers the row tasks of every matrix, instead of one preparation and one job per matrix. Every
// ws[m] must have the same cols; ys[m] row i at ys[m] + i*ldys[m]. Y_m equals what ek_nf4_gemv(&ws[m],
// x, n, ldx, ys[m], ldys[m], flags) computes, bit for bit. count in 1...EK_GEMV_MULTI_MAX.
#define EK_GEMV_MULTI_MAX 8
int32_t ek_nf4_gemv_multi(const ek_nf4_matrix *ws, int32_t count, const float *x, int64_t n, int64_t ldx,
                          float *const *ys, const int64_t *ldys, int32_t flags);
// The prefill/training product (f32 unless EK_ACT_BF16; EK_ACT_INT8 is ignored). Two f32 strategies,
// chosen per variant by measurement: dequantise a W tile (32 rows x 256 cols) once and run an f32
// microkernel over all n rows; or (AVX-512, where it measured faster) the register-blocked kernel that
// decodes 4 W rows in registers and applies them to 4 activation rows at a time. EK_GEMM_TILES forces
// the first. With EK_ACT_BF16 where ek_bf16_native(): panels of 16 W rows dequantised to bf16 once,
// each row's result bit-identical to ek_nf4_gemm_bf16_reference (whatever n).
int32_t ek_nf4_gemm(const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx,
                    float *y, int64_t ldy, int32_t flags);
// Backward through the base weight: dX[n, cols] = dY[n, rows] · W   (+ dX when EK_ACCUMULATE).
// No transpose is materialised. ldg >= rows, ldd >= cols.
int32_t ek_nf4_matmul_t(const ek_nf4_matrix *w, const float *dy, int64_t n, int64_t ldg,
                        float *dx, int64_t ldd, int32_t flags);

// ---- int8 matrices with per-row scales (the quantised output head of the fastest mode) -------------
// W[r, k] ~= scale[r] * q[r * ld + k]; bytes cols ..< ld of every row are zero (ld from
// ek_q8_row_stride). Made once from an f32 matrix (the tied embedding) by ek_q8_quantize_rows:
// 4x fewer bytes per token than the f32 head, integer dot products against int8 activations.
typedef struct ek_q8_matrix {
    const int8_t *q;      // rows x ld bytes
    const float  *scale;  // per row
    int64_t rows, cols, ld;
} ek_q8_matrix;
// Row stride in bytes for cols values: cols rounded up to a multiple of 64.
int64_t ek_q8_row_stride(int64_t cols);
// q[r*ld + k] = round(w[r, k] * 127 / max_k |w[r, k]|) (0 past cols), scale[r] = max |w[r, :]| / 127.
// w row r at w + r*ldw. q must hold rows*ld bytes. Parallel over the pool.
int32_t ek_q8_quantize_rows(const float *w, int64_t rows, int64_t cols, int64_t ldw, int64_t ld,
                            int8_t *q, float *scale);
// Y[n, rows] = X[n, cols] · W^T with X quantised per 32 values to int8 (as EK_ACT_INT8; relative
// error of the same order, EK_INT8_REL_ERROR bounds it). Y row i at y + i*ldy.
int32_t ek_q8_matmul(const ek_q8_matrix *w, const float *x, int64_t n, int64_t ldx, float *y, int64_t ldy);

// Element types of stored tensors: the KV cache (ek_attention) and LoRA slots (ek_lora_slot.dtype).
// EK_DTYPE_I8 is for LoRA slots only (int8 values with one f32 scale per rank row).
enum { EK_DTYPE_F32 = 0, EK_DTYPE_F16 = 1, EK_DTYPE_I8 = 2 };

// ---- LoRA: gathered low-rank products (Punica BGMV / SGMV on CPU) --------------------------------
// One adapter slot for one projection: delta(x) = scale * B (A x).
// Storage is f32 (dtype EK_DTYPE_F32, the zero default: a, b, bt; what training uses) or IEEE half
// (dtype EK_DTYPE_F16: a16 and bt16 or b16; what serving uses, half the bytes read per token). Half
// values are converted in registers (F16C / AVX-512 / NEON vcvt) and everything accumulates in f32;
// activations are f32 either way. Or int8 (dtype EK_DTYPE_I8, the fastest mode's form: a quarter of
// the f32 bytes, and integer dot products), where the whole product runs in integers:
//   A: int8 rows a8_ld = ek_q8_row_stride(in) bytes apart as ek_q8_quantize_rows makes them (zero past
//      in), row t = a8_scale[t] * a8[t, :];
//   Bᵀ [rank, out] in rank quads: element (t, j) at bt8[((t / 4) * out + j) * 4 + t % 4], ranks past
//      rank zero (ek_lora_i8_bt_bytes(rank, out) bytes), row t = bt8_scale[t] * Bᵀ[t, :];
//   x is quantised per 32 values as EK_ACT_INT8 does (d = max|x| / 127, q = round(x / d)); for each
//   64-value chunk c and int32 lane l (values 64c + 4l ..< +4) L = exact sum of the 4 products, and
//   f[l] = fma(L, d of block 2c + l / 8, f[l]) over the chunks in order; u[t] = (sum of f by halving:
//   f[l] += f[l + s] for s = 8, 4, 2, 1) * a8_scale[t];
//   v[t] = u[t] * scale * bt8_scale[t], quantised with one scale: v8 = round(v * (127 / max|v|)),
//   sv = max|v| / 127 (no update when max|v| is 0);
//   y[j] = fma(sv, sum_t Bᵀ8[t, j] * v8[t], y[j]) (the sum exact in int32).
// Every variant computes exactly these numbers. Pointers of the other dtypes are ignored.
typedef struct ek_lora_slot {
    const float *a;   // [rank, in] row-major (PEFT lora_A.weight)
    const float *b;   // [out, rank] row-major (PEFT lora_B.weight)
    const float *bt;  // optional: B transposed, [rank, out] row-major (ek_lora_transpose_b), or NULL.
                      // When given it is used instead of b: the update becomes rank contiguous axpys
                      // instead of out short dot products (several times faster for a single row).
    int32_t rank;     // 1...256
    float scale;      // alpha / rank (or alpha / sqrt(rank) for rsLoRA), times any mixing weight
    int32_t dtype;         // EK_DTYPE_F32 (0) or EK_DTYPE_F16
    const uint16_t *a16;   // f16: [rank, in] half bit patterns (ek_f32_to_f16 of a)
    const uint16_t *b16;   // f16: [out, rank], or NULL when bt16 is given
    const uint16_t *bt16;  // f16: [rank, out] (ek_lora_transpose_b_f16), preferred as bt is; or NULL
    const int8_t *a8;      // int8: [rank, a8_ld] (ek_q8_quantize_rows)
    const float *a8_scale; // int8: [rank]
    const int8_t *bt8;     // int8: Bᵀ in rank quads (ek_lora_quantize_bt)
    const float *bt8_scale;// int8: [rank]
    int64_t a8_ld;         // int8: ek_q8_row_stride(in)
} ek_lora_slot;

// bt[t, j] = b[j, t]: the layout ek_lora_slot.bt wants; done once when an adapter is loaded.
void ek_lora_transpose_b(const float *b, int64_t out, int32_t rank, float *bt);
// bt16[t, j] = half(b[j, t]) rounded to nearest even: the layout ek_lora_slot.bt16 wants (rank 1...256).
void ek_lora_transpose_b_f16(const float *b, int64_t out, int32_t rank, uint16_t *bt16);

// Bᵀ's int8 form (EK_DTYPE_I8 above): bytes for rank ranks (rounded up to 4) and out outputs, and
// b [out, rank] row-major (PEFT lora_B) quantised per rank row (max over its out values / 127, rounded to
// nearest even) into rank quads, zero for the ranks past rank. rank 1...256.
int64_t ek_lora_i8_bt_bytes(int32_t rank, int64_t out);
void ek_lora_quantize_bt(const float *b, int32_t rank, int64_t out, int8_t *bt8, float *scale);

// BGMV (decode, mixed batch): for each row i with s = slot_of_row[i] >= 0,
//   y[i, :out] += slots[s].scale * B_s (A_s x[i, :in]).   Rows with slot -1 are left unchanged.
int32_t ek_lora_bgmv(const ek_lora_slot *slots, int64_t nslots, const int32_t *slot_of_row,
                     const float *x, int64_t n, int64_t ldx, int64_t in,
                     float *y, int64_t ldy, int64_t out);
// SGMV (prefill): rows seg_start[j] ..< seg_start[j+1] all use slot seg_slot[j] (-1 = none);
// seg_start has nseg+1 non-decreasing entries, seg_start[0] >= 0. Same update as above.
int32_t ek_lora_sgmv(const ek_lora_slot *slots, int64_t nslots, const int32_t *seg_slot,
                     const int64_t *seg_start, int64_t nseg,
                     const float *x, int64_t ldx, int64_t in, float *y, int64_t ldy, int64_t out);
// SGMV for several projections of the same input (q, k and v; gate and up): target m updates its own
// y rows with its own slots, as one ek_lora_sgmv per target would, in one pool job. A row's x is
// quantised once for all its int8 slots.
typedef struct ek_lora_target {
    const ek_lora_slot *slots;
    int64_t nslots;
    const int32_t *seg_slot;   // per segment: index into slots, or -1
    float *y;
    int64_t ldy, out;
} ek_lora_target;
#define EK_LORA_MAX_TARGETS 8
int32_t ek_lora_sgmv_multi(const ek_lora_target *targets, int32_t count, const int64_t *seg_start, int64_t nseg,
                           const float *x, int64_t ldx, int64_t in);
// Decode products with their LoRA deltas, for projections that read the same input: for m < count,
//   Y_m = X[n, cols] · ws[m]^T, then the segments' updates of targets[m] added,
// with Y_m = targets[m].y (row stride targets[m].ldy; targets[m].out must be ws[m].rows). The result is
// bit for bit what ek_nf4_gemv_multi (ys and ldys from the targets, the same flags) followed by
// ek_lora_sgmv_multi(targets, count, seg_start, nseg, x, ldx, cols) computes. Segments must lie in the
// n rows (seg_start[nseg] <= n); rows outside them get no update. A target with nslots 0 still needs its
// seg_slot (all -1). When the product runs on int8 activations (EK_ACT_INT8 on a layout the fast kernels
// take) and every slot is int8, it is one pool job: each row's int32 LoRA sums (A x, then Bᵀ v8) are made
// first and every GEMV task adds them to its own output rows while they are in cache.
int32_t ek_nf4_gemv_lora(const ek_nf4_matrix *ws, int32_t count, const float *x, int64_t n, int64_t ldx,
                         int32_t flags, const ek_lora_target *targets, const int64_t *seg_start, int64_t nseg);

// ---- Small ops of a Llama block ------------------------------------------------------------------
// y[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * weight      (x and y may alias when ldx == ldy)
int32_t ek_rmsnorm(const float *x, int64_t n, int64_t ldx, const float *weight, int64_t dim,
                   float eps, float *y, int64_t ldy);
// RoPE in Hugging Face rotate-half layout, in place on x[i, h*head_dim ..< (h+1)*head_dim] for each of
// n rows and nheads heads: with half = head_dim/2 and j < half,
//   x'[j] = x[j]*cos[j] - x[j+half]*sin[j],   x'[j+half] = x[j+half]*cos[j+half] + x[j]*sin[j+half].
// cos/sin: [n, head_dim] row-major (HF's cos/sin, the halves repeated); one row per x row.
int32_t ek_rope_cos_sin(float *x, int64_t n, int64_t ldx, int64_t nheads, int64_t head_dim,
                        const float *cos_, const float *sin_);
// The same with angles from positions: angle[j] = (float)positions[i] * inv_freq[j % half],
// inv_freq[j] = 1 / theta^(2j/head_dim) computed in fp32 as transformers does (default rope only;
// use ek_rope_cos_sin for scaled variants). Each row has its own position.
int32_t ek_rope_positions(float *x, int64_t n, int64_t ldx, int64_t nheads, int64_t head_dim,
                          const int64_t *positions, float theta);
// In-place numerically stable softmax of each row x[i, :dim].
int32_t ek_softmax(float *x, int64_t n, int64_t ldx, int64_t dim);
// out[k] = silu(gate[k]) * up[k] = gate[k] / (1 + exp(-gate[k])) * up[k]; out may alias either input.
int32_t ek_silu_mul(const float *gate, const float *up, float *out, int64_t count);
// Conversions (IEEE binary16 and bfloat16 bit patterns), count elements.
void ek_f16_to_f32(const uint16_t *src, float *dst, int64_t count);
void ek_bf16_to_f32(const uint16_t *src, float *dst, int64_t count);
void ek_f32_to_f16(const float *src, uint16_t *dst, int64_t count);   // round to nearest even
// Index of the largest element (the first one on ties; NaN never wins). -1 when count <= 0.
int64_t ek_argmax(const float *x, int64_t count);

// ---- Attention over a KV cache --------------------------------------------------------------------
// One query row's view of its sequence's cache: positions 0 ..< len, where the key of position p,
// head g, is at k + (p*kv_stride + g*head_dim) elements (same for v). For causal attention len is the
// query's position + 1 (the cache already holds this token's k and v).
typedef struct ek_attn_row {
    const void *k;
    const void *v;
    int64_t len;
} ek_attn_row;
// Grouped-query attention for n query rows (possibly of different sequences and positions):
// q[i, h*head_dim ..< +head_dim] for h < nheads; query head h reads kv head h / (nheads / nkv_heads).
// out[i, h*head_dim ..< +head_dim] = sum_p softmax_p(scale * q·k_p) v_p.
// nheads % nkv_heads == 0; kv_dtype EK_DTYPE_F32 or EK_DTYPE_F16; kv_stride >= nkv_heads*head_dim.
int32_t ek_attention(const float *q, int64_t n, int64_t ldq, const ek_attn_row *rows,
                     int64_t nheads, int64_t nkv_heads, int64_t head_dim, int64_t kv_stride,
                     int32_t kv_dtype, float scale, float *out, int64_t ldo);

// ---- Benchmark support ------------------------------------------------------------------------------
// Reads every byte of p[0 ..< bytes] once, split over the pool's threads (the bandwidth ceiling a
// weight-streaming kernel is compared against); returns a checksum so the reads cannot be elided.
uint64_t ek_bench_read(const void *p, int64_t bytes);

#ifdef __cplusplus
}
#endif
#endif
