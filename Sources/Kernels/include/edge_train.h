// edge-runtime training kernels: the backward passes (and the forwards whose saved state they need)
// of a Llama decoder, for on-device QLoRA. All tensors are f32, row-major, one row per token.
// Kernels allocate nothing and never log; the caller owns every buffer and splits work over threads
// (each kernel takes a row or head range so callers can parallelise without shared writes).
//
// Names: et_<op>_<direction>. These are element-wise or O(T²·hd) per layer — a few percent of a
// training step, whose time goes to the NF4 and LoRA matrix products — so they are portable C written
// for -O3 auto-vectorisation, tested against double-precision references and finite differences.
#ifndef EDGE_TRAIN_H
#define EDGE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- RMSNorm: y = x / sqrt(mean(x²) + eps) * w ------------------------------------------------
// x, y: [rows, dim]; w: [dim]; inv_rms: [rows] (saved for backward).
void et_rmsnorm_forward(const float *x, const float *w, float *y, float *inv_rms,
                        size_t rows, size_t dim, float eps);
// dx = inv·(w⊙dy) − x·inv³·mean(x⊙w⊙dy). The norm weight is frozen, so no dw.
// If accumulate != 0, dx += result (residual stream), else dx = result.
void et_rmsnorm_backward(const float *x, const float *w, const float *inv_rms, const float *dy,
                         float *dx, size_t rows, size_t dim, int accumulate);

// ---- RoPE (Hugging Face "rotate_half" layout: pairs are (i, i + head_dim/2)) -------------------
// cos/sin tables: [max_pos, head_dim/2]; angle(p, i) = p · theta^(−2i/head_dim).
void et_rope_table(float *cos_table, float *sin_table, size_t max_pos, size_t head_dim, double theta);
// x: [rows, n_heads·head_dim] with row stride `stride` floats, rotated in place by the angle of
// positions[row]. inverse != 0 rotates by −angle: that is the backward (the rotation's transpose).
void et_rope_apply(float *x, size_t rows, size_t stride, size_t n_heads, size_t head_dim,
                   const int32_t *positions, const float *cos_table, const float *sin_table, int inverse);

// ---- Causal grouped-query attention over one sequence -----------------------------------------
// q: [T, n_heads·hd] (row stride q_stride); k, v: [T, n_kv·hd] (kv_stride); out: [T, n_heads·hd]
// (out_stride); probs: [n_heads, T, T] softmax rows saved for backward (entries above the diagonal
// and for keys ≥ valid_len are written as 0). Keys at positions ≥ valid_len (right padding) are
// masked; query rows ≥ valid_len are computed over the valid keys only (their outputs feed nothing
// that is scored). Computes heads [h0, h1). scale is usually 1/sqrt(hd).
void et_attention_forward(const float *q, const float *k, const float *v, float *out, float *probs,
                          size_t T, size_t valid_len, size_t n_heads, size_t n_kv, size_t hd,
                          size_t q_stride, size_t kv_stride, size_t out_stride, float scale,
                          size_t h0, size_t h1);
// Given dout, writes dq (heads [h0,h1)) and ACCUMULATES into dk, dv (which the caller zeroes):
// heads sharing a kv head add into the same rows, so a thread must own whole kv groups — pass
// h0, h1 on multiples of n_heads/n_kv. dp_scratch: [T] floats per call.
void et_attention_backward(const float *q, const float *k, const float *v, const float *probs,
                           const float *dout, float *dq, float *dk, float *dv, float *dp_scratch,
                           size_t T, size_t valid_len, size_t n_heads, size_t n_kv, size_t hd,
                           size_t q_stride, size_t kv_stride, size_t out_stride, float scale,
                           size_t h0, size_t h1);

// Both of the above over `batch` sequences of T rows each (sequence b starts at row b·T of q, k, v,
// out, dq, dk, dv and at b·n_heads·T·T of probs; valid_len[b] is its unpadded length), split into
// (sequence, kv group) tasks over the kernels' thread pool. The backward zeroes nothing: dk and dv
// are accumulated as above; its dp scratch is per worker.
void et_attention_forward_batch(const float *q, const float *k, const float *v, float *out, float *probs,
                                size_t batch, size_t T, const int64_t *valid_len, size_t n_heads, size_t n_kv,
                                size_t hd, size_t q_stride, size_t kv_stride, size_t out_stride, float scale);
// Returns 0, or -1 when per-worker scratch could not be allocated (nothing computed then).
int32_t et_attention_backward_batch(const float *q, const float *k, const float *v, const float *probs,
                                    const float *dout, float *dq, float *dk, float *dv,
                                    size_t batch, size_t T, const int64_t *valid_len, size_t n_heads, size_t n_kv,
                                    size_t hd, size_t q_stride, size_t kv_stride, size_t out_stride, float scale);

// ---- SwiGLU: h = silu(g) ⊙ u -----------------------------------------------------------------
void et_silu_mul_forward(const float *g, const float *u, float *h, size_t n);
// dg = dh ⊙ u ⊙ σ(g)(1 + g(1 − σ(g))), du = dh ⊙ silu(g).
void et_silu_mul_backward(const float *g, const float *u, const float *dh, float *dg, float *du, size_t n);

// ---- Cross-entropy over rows of logits, with its gradient in place --------------------------
// logits: [rows, vocab]; targets[row] is the class. Returns Σ_rows (logsumexp − logit[target]) as a
// double, and overwrites logits with grad_scale·(softmax − onehot). A target outside [0, vocab)
// leaves that row's gradient 0 and adds nothing (the caller validates targets beforehand).
double et_cross_entropy_grad(float *logits, const int32_t *targets, size_t rows, size_t vocab,
                             float grad_scale);
// Loss only (evaluation), logits untouched.
double et_cross_entropy(const float *logits, const int32_t *targets, size_t rows, size_t vocab);

// ---- NF4 tiles (bitsandbytes layout, NF4.md) for the training GEMMs --------------------------------
// absmax of double-quantised blocks: out[i] = map[q8[i]] * nested[i / nested_bs] + offset (f32 ops in
// that order, as bitsandbytes dequantises).
void et_nf4_decode_absmax(const uint8_t *q8, const float *nested, const float *map, float offset,
                          size_t nblocks, size_t nested_bs, float *out);
// out[r − row0, c] = code[nibble(k)] · absmax[k / blocksize] for k = r·cols + c (blocks run over the
// flat tensor; the first element of a byte is its high nibble), rows [row0, row0 + nrows).
void et_nf4_dequant_rows(const uint8_t *packed, const float *absmax, const float *code, size_t cols,
                         size_t blocksize, size_t row0, size_t nrows, float *out);

// ---- AdamW (PyTorch semantics) -----------------------------------------------------------------
// p ← p·(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
// p ← p − lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps). step t ≥ 1.
void et_adamw_step(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                   float beta2, float eps, float weight_decay, int64_t step);

// Σ x² in double (for global-norm gradient clipping).
double et_sum_squares(const float *x, size_t n);
// x *= s.
void et_scale(float *x, size_t n, float s);
// Makes stdout line-buffered so progress lines appear as they happen when redirected (Swift 6
// cannot touch the C `stdout` global without a data-race diagnostic).
void et_stdout_line_buffered(void);
// y += x (the residual stream).
void et_add(float *y, const float *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
