// Training kernels: forwards that save what their backward needs, and the backwards. See edge_train.h.
#include "edge_train.h"
#include "ek_internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

// ---- RMSNorm ------------------------------------------------------------------------------------

void et_rmsnorm_forward(const float *x, const float *w, float *y, float *inv_rms,
                        size_t rows, size_t dim, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        // f32 accumulation matches torch's pow(2).mean() closely enough; double keeps it order-free.
        double ss = 0.0;
        for (size_t i = 0; i < dim; i++) ss += (double)xr[i] * (double)xr[i];
        float inv = 1.0f / sqrtf((float)(ss / (double)dim) + eps);
        inv_rms[r] = inv;
        for (size_t i = 0; i < dim; i++) yr[i] = w[i] * (xr[i] * inv);
    }
}

void et_rmsnorm_backward(const float *x, const float *w, const float *inv_rms, const float *dy,
                         float *dx, size_t rows, size_t dim, int accumulate) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim, *dyr = dy + r * dim;
        float *dxr = dx + r * dim;
        float inv = inv_rms[r];
        double dot = 0.0;  // Σ x·w·dy
        for (size_t i = 0; i < dim; i++) dot += (double)xr[i] * (double)w[i] * (double)dyr[i];
        float c = (float)(dot / (double)dim) * inv * inv * inv;
        if (accumulate) {
            for (size_t i = 0; i < dim; i++) dxr[i] += inv * w[i] * dyr[i] - c * xr[i];
        } else {
            for (size_t i = 0; i < dim; i++) dxr[i] = inv * w[i] * dyr[i] - c * xr[i];
        }
    }
}

// ---- RoPE ---------------------------------------------------------------------------------------

void et_rope_table(float *cos_table, float *sin_table, size_t max_pos, size_t head_dim, double theta) {
    size_t half = head_dim / 2;
    for (size_t i = 0; i < half; i++) {
        // Hugging Face computes inv_freq in f32: 1 / theta^(2i/d) with the exponent as f32.
        float expo = (float)(2 * i) / (float)head_dim;
        float inv_freq = 1.0f / powf((float)theta, expo);
        for (size_t p = 0; p < max_pos; p++) {
            float ang = (float)p * inv_freq;  // f32 product, as torch's matmul of f32 positions
            cos_table[p * half + i] = (float)cos((double)ang);
            sin_table[p * half + i] = (float)sin((double)ang);
        }
    }
}

void et_rope_apply(float *x, size_t rows, size_t stride, size_t n_heads, size_t head_dim,
                   const int32_t *positions, const float *cos_table, const float *sin_table, int inverse) {
    size_t half = head_dim / 2;
    float sgn = inverse ? -1.0f : 1.0f;
    for (size_t r = 0; r < rows; r++) {
        const float *c = cos_table + (size_t)positions[r] * half;
        const float *s = sin_table + (size_t)positions[r] * half;
        for (size_t h = 0; h < n_heads; h++) {
            float *a = x + r * stride + h * head_dim, *b = a + half;
            for (size_t i = 0; i < half; i++) {
                float si = sgn * s[i];
                float x1 = a[i], x2 = b[i];
                a[i] = x1 * c[i] - x2 * si;
                b[i] = x2 * c[i] + x1 * si;
            }
        }
    }
}

// ---- Attention ----------------------------------------------------------------------------------

static inline float dotf(const float *a, const float *b, size_t n) {
    // Eight independent partial sums: without -ffast-math the compiler may not reorder one running
    // sum, so that loop stayed scalar and attention took a quarter of a training step; these
    // vectorise and pipeline.
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float tail = 0.0f;
    for (; i < n; i++) tail += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
}

// y += a·x over n floats; y and x never overlap.
static inline void axpyf(float *restrict y, float a, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

void et_attention_forward(const float *q, const float *k, const float *v, float *out, float *probs,
                          size_t T, size_t valid_len, size_t n_heads, size_t n_kv, size_t hd,
                          size_t q_stride, size_t kv_stride, size_t out_stride, float scale,
                          size_t h0, size_t h1) {
    size_t group = n_heads / n_kv;
    for (size_t h = h0; h < h1; h++) {
        size_t kvh = h / group;
        float *P = probs + h * T * T;
        for (size_t t = 0; t < T; t++) {
            float *pr = P + t * T;
            size_t nk = t + 1 < valid_len ? t + 1 : valid_len;  // keys [0, nk)
            if (nk == 0) nk = 1;
            const float *qt = q + t * q_stride + h * hd;
            float mx = -INFINITY;
            for (size_t s = 0; s < nk; s++) {
                float sc = dotf(qt, k + s * kv_stride + kvh * hd, hd) * scale;
                pr[s] = sc;
                if (sc > mx) mx = sc;
            }
            float sum = 0.0f;
            for (size_t s = 0; s < nk; s++) {
                float e = expf(pr[s] - mx);
                pr[s] = e;
                sum += e;
            }
            float inv = 1.0f / sum;
            for (size_t s = 0; s < nk; s++) pr[s] *= inv;
            for (size_t s = nk; s < T; s++) pr[s] = 0.0f;
            float *o = out + t * out_stride + h * hd;
            for (size_t i = 0; i < hd; i++) o[i] = 0.0f;
            for (size_t s = 0; s < nk; s++) {
                axpyf(o, pr[s], v + s * kv_stride + kvh * hd, hd);
            }
        }
    }
}

void et_attention_backward(const float *q, const float *k, const float *v, const float *probs,
                           const float *dout, float *dq, float *dk, float *dv, float *dp,
                           size_t T, size_t valid_len, size_t n_heads, size_t n_kv, size_t hd,
                           size_t q_stride, size_t kv_stride, size_t out_stride, float scale,
                           size_t h0, size_t h1) {
    size_t group = n_heads / n_kv;
    for (size_t h = h0; h < h1; h++) {
        size_t kvh = h / group;
        const float *P = probs + h * T * T;
        for (size_t t = 0; t < T; t++) {
            const float *pr = P + t * T;
            size_t nk = t + 1 < valid_len ? t + 1 : valid_len;
            if (nk == 0) nk = 1;
            const float *dot_ = dout + t * out_stride + h * hd;
            const float *qt = q + t * q_stride + h * hd;
            float *dqt = dq + t * q_stride + h * hd;
            // dP = dO·Vᵀ; dV += Pᵀ·dO
            float rowdot = 0.0f;  // Σ_s P·dP
            // restrict: the rows written (dV, dK, dQ) never overlap the rows read, and saying so lets
            // these axpy loops vectorise without run-time overlap checks.
            for (size_t s = 0; s < nk; s++) {
                const float *vs = v + s * kv_stride + kvh * hd;
                float p = pr[s];
                dp[s] = dotf(dot_, vs, hd);
                rowdot += p * dp[s];
                axpyf(dv + s * kv_stride + kvh * hd, p, dot_, hd);
            }
            for (size_t i = 0; i < hd; i++) dqt[i] = 0.0f;
            // dS = P ⊙ (dP − rowdot); dQ = scale·dS·K; dK += scale·dSᵀ·Q
            for (size_t s = 0; s < nk; s++) {
                float ds = pr[s] * (dp[s] - rowdot) * scale;
                if (ds == 0.0f) continue;
                axpyf(dqt, ds, k + s * kv_stride + kvh * hd, hd);
                axpyf(dk + s * kv_stride + kvh * hd, ds, qt, hd);
            }
        }
    }
}

// ---- Attention over a batch, on the pool ----------------------------------------------------------
// One task per (sequence, kv group): the heads of a group accumulate into the same dk/dv rows, so a
// task owning the whole group writes nothing another task writes.
typedef struct {
    const float *q, *k, *v, *probs, *dout;
    float *out, *probs_out, *dq, *dk, *dv;
    size_t T, n_heads, n_kv, hd, q_stride, kv_stride, out_stride;
    const int64_t *valid_len;
    float scale;
    _Atomic int32_t failed;
} attn_batch_ctx;

static void attn_forward_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    attn_batch_ctx *c = p;
    size_t b = (size_t)t / c->n_kv, g = (size_t)t % c->n_kv, group = c->n_heads / c->n_kv;
    size_t r0 = b * c->T;
    et_attention_forward(c->q + r0 * c->q_stride, c->k + r0 * c->kv_stride, c->v + r0 * c->kv_stride,
                         c->out + r0 * c->out_stride, c->probs_out + b * c->n_heads * c->T * c->T,
                         c->T, (size_t)c->valid_len[b], c->n_heads, c->n_kv, c->hd,
                         c->q_stride, c->kv_stride, c->out_stride, c->scale, g * group, (g + 1) * group);
}

void et_attention_forward_batch(const float *q, const float *k, const float *v, float *out, float *probs,
                                size_t batch, size_t T, const int64_t *valid_len, size_t n_heads, size_t n_kv,
                                size_t hd, size_t q_stride, size_t kv_stride, size_t out_stride, float scale) {
    if (batch == 0 || n_kv == 0) return;
    attn_batch_ctx c = {.q = q, .k = k, .v = v, .out = out, .probs_out = probs, .T = T, .n_heads = n_heads,
                        .n_kv = n_kv, .hd = hd, .q_stride = q_stride, .kv_stride = kv_stride,
                        .out_stride = out_stride, .valid_len = valid_len, .scale = scale};
    ek_parallel((int64_t)(batch * n_kv), attn_forward_task, &c);
}

static void attn_backward_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    attn_batch_ctx *c = p;
    float *dp = ek_scratch(0, c->T * sizeof(float));
    if (!dp) { atomic_store(&c->failed, 1); return; }
    size_t b = (size_t)t / c->n_kv, g = (size_t)t % c->n_kv, group = c->n_heads / c->n_kv;
    size_t r0 = b * c->T;
    et_attention_backward(c->q + r0 * c->q_stride, c->k + r0 * c->kv_stride, c->v + r0 * c->kv_stride,
                          c->probs + b * c->n_heads * c->T * c->T, c->dout + r0 * c->out_stride,
                          c->dq + r0 * c->q_stride, c->dk + r0 * c->kv_stride, c->dv + r0 * c->kv_stride, dp,
                          c->T, (size_t)c->valid_len[b], c->n_heads, c->n_kv, c->hd,
                          c->q_stride, c->kv_stride, c->out_stride, c->scale, g * group, (g + 1) * group);
}

int32_t et_attention_backward_batch(const float *q, const float *k, const float *v, const float *probs,
                                    const float *dout, float *dq, float *dk, float *dv,
                                    size_t batch, size_t T, const int64_t *valid_len, size_t n_heads, size_t n_kv,
                                    size_t hd, size_t q_stride, size_t kv_stride, size_t out_stride, float scale) {
    if (batch == 0 || n_kv == 0) return 0;
    attn_batch_ctx c = {.q = q, .k = k, .v = v, .probs = probs, .dout = dout, .dq = dq, .dk = dk, .dv = dv,
                        .T = T, .n_heads = n_heads, .n_kv = n_kv, .hd = hd, .q_stride = q_stride,
                        .kv_stride = kv_stride, .out_stride = out_stride, .valid_len = valid_len, .scale = scale};
    atomic_init(&c.failed, 0);
    ek_parallel((int64_t)(batch * n_kv), attn_backward_task, &c);
    return atomic_load(&c.failed) ? -1 : 0;
}

// ---- SwiGLU -------------------------------------------------------------------------------------

void et_silu_mul_forward(const float *g, const float *u, float *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i]));
        h[i] = g[i] * sg * u[i];
    }
}

void et_silu_mul_backward(const float *g, const float *u, const float *dh, float *dg, float *du, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i]));
        float silu = g[i] * sg;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
}

// ---- Cross-entropy ------------------------------------------------------------------------------

double et_cross_entropy_grad(float *logits, const int32_t *targets, size_t rows, size_t vocab,
                             float grad_scale) {
    double total = 0.0;
    for (size_t r = 0; r < rows; r++) {
        float *l = logits + r * vocab;
        int32_t tg = targets[r];
        if (tg < 0 || (size_t)tg >= vocab) {
            memset(l, 0, vocab * sizeof(float));
            continue;
        }
        float mx = -INFINITY;
        for (size_t i = 0; i < vocab; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0.0;
        float target_logit = l[tg];
        for (size_t i = 0; i < vocab; i++) {
            float e = expf(l[i] - mx);
            l[i] = e;
            sum += e;
        }
        total += log(sum) + (double)mx - (double)target_logit;
        float inv = (float)(1.0 / sum) * grad_scale;
        for (size_t i = 0; i < vocab; i++) l[i] *= inv;
        l[tg] -= grad_scale;
    }
    return total;
}

double et_cross_entropy(const float *logits, const int32_t *targets, size_t rows, size_t vocab) {
    double total = 0.0;
    for (size_t r = 0; r < rows; r++) {
        const float *l = logits + r * vocab;
        int32_t tg = targets[r];
        if (tg < 0 || (size_t)tg >= vocab) continue;
        float mx = -INFINITY;
        for (size_t i = 0; i < vocab; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0.0;
        for (size_t i = 0; i < vocab; i++) sum += expf(l[i] - mx);
        total += log(sum) + (double)mx - (double)l[tg];
    }
    return total;
}

// ---- Optimiser helpers --------------------------------------------------------------------------

void et_adamw_step(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                   float beta2, float eps, float weight_decay, int64_t step) {
    // torch.optim.AdamW (single-tensor, non-amsgrad): decoupled decay first, then
    // p -= (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps).
    // torch computes the bias corrections on Python floats (double), then scalars enter f32 ops.
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    double bc2 = 1.0 - pow((double)beta2, (double)step);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = p[i] * decay;
        float mi = m[i] + (gi - m[i]) * (1.0f - beta1);  // torch: m.lerp_(g, 1 − β1)
        float vi = v[i] * beta2 + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi - step_size * (mi / denom);
    }
}

double et_sum_squares(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

void et_scale(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void et_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void et_stdout_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
