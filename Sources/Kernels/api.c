// Public entry points: argument checks, work decomposition over the pool, and the choice between the
// variant's fast kernels and the portable path. Kernel math lives in the kernels_*.c files.
#include "ek_internal.h"
#include <math.h>
#include <stdatomic.h>
#include <string.h>

// Decode products with at most this many activation rows stream W once through the GEMV kernel;
// above it the tiled GEMM (dequantise a tile once, reuse it for every row) wins.
#define EK_GEMV_MAX_ROWS 8
// GEMM tiling: K chunk (the activation panel n x KC stays in L2 across W panels) and the column panel
// of the transposed product.
#define EK_KC 256
#define EK_TCOLS 64

int32_t ek_nf4_check(const ek_nf4_matrix *w) {
    if (!w || !w->packed) return EK_ERR_NULL;
    if (w->rows <= 0 || w->cols <= 0) return EK_ERR_SHAPE;
    int32_t bs = w->blocksize;
    if (bs < 32 || bs > 4096 || (bs & (bs - 1)) != 0) return EK_ERR_BLOCKSIZE;
    if (!w->absmax_f32) {
        if (!w->absmax_q8 || !w->nested_absmax || !w->dq_map) return EK_ERR_ABSMAX;
        if (w->nested_blocksize <= 0) return EK_ERR_BLOCKSIZE;
    }
    return EK_OK;
}

int64_t ek_nf4_block_count(const ek_nf4_matrix *w) {
    if (!w || w->blocksize <= 0 || w->rows <= 0 || w->cols <= 0) return 0;
    return (w->rows * w->cols + w->blocksize - 1) / w->blocksize;
}

int32_t ek_nf4_decode_absmax(const ek_nf4_matrix *w, int64_t first, int64_t count, float *out) {
    int32_t st = ek_nf4_check(w);
    if (st) return st;
    if (!out && count > 0) return EK_ERR_NULL;
    if (first < 0 || count < 0 || first + count > ek_nf4_block_count(w)) return EK_ERR_SHAPE;
    ek_active()->decode_absmax(w, first, count, out);
    return EK_OK;
}

static int fast_layout(const ek_nf4_matrix *w) { return w->cols % w->blocksize == 0; }

int32_t ek_nf4_dequantize(const ek_nf4_matrix *w, int64_t row0, int64_t nrows, float *out, int64_t ldo) {
    int32_t st = ek_nf4_check(w);
    if (st) return st;
    if (!out) return EK_ERR_NULL;
    if (row0 < 0 || nrows < 0 || row0 + nrows > w->rows) return EK_ERR_SHAPE;
    if (ldo < w->cols) return EK_ERR_STRIDE;
    const ek_vtable *vt = fast_layout(w) ? ek_active() : ek_vtable_scalar();
    vt->dequant_tile(w, row0, nrows, 0, w->cols, out, ldo);
    return EK_OK;
}

static int32_t check_product(const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx, int64_t xw,
                             const float *y, int64_t ldy, int64_t yw) {
    int32_t st = ek_nf4_check(w);
    if (st) return st;
    if (n < 0) return EK_ERR_SHAPE;
    if (n > 0 && (!x || !y)) return EK_ERR_NULL;
    if (ldx < xw || ldy < yw) return EK_ERR_STRIDE;
    return EK_OK;
}

// ---- GEMV -------------------------------------------------------------------------------------------
// One decode product is one pool job: its tasks are, in this order, the preparation of x (int8
// quantisation or permutation, a few rows per task), then, when LoRA deltas are fused in (int8 slots),
// one task per activation row making its int32 LoRA sums for every matrix, then the weight-row tasks of
// every matrix, which add the LoRA updates of their own output rows after the product. Tasks are claimed
// in index order, so a worker holding a weight-row task knows that every task it depends on has been
// claimed by a running worker: it waits for their counters (rarely at all: the LoRA sums are waited for
// only after the task's own product) instead of at a job boundary. Three jobs per projection became one.
typedef struct {
    const ek_vtable *vt;
    const ek_nf4_matrix *w;
    const void *xp;
    int64_t n, xps, ldy, rows_per_task;
    float *y;
    int acc, q8;
} gemv_ctx;

typedef struct {
    const float *x;
    int64_t n, ldx, cols, outs, per_task;
    int q8;
    int32_t group, chunk;
    void *out;
} prep_ctx;

// One activation row's int8 LoRA update for one matrix, y[j] = fma(sv, acc[j], y[j]): the slot is set
// before the job, the rest by the row's LoRA task.
typedef struct {
    const ek_lora_slot *slot;   // the row's slot for this matrix, or NULL
    int32_t active;             // 0 when there is nothing to add (no slot, or A x was zero)
    float sv;
    int32_t *acc;               // the matrix's rows of int32 sums
} lora_update;

// Matrix m owns weight-row tasks [first[m], first[m + 1]) of the job, after the nprep preparation tasks
// and the nlora LoRA row tasks; parts[m] is its own GEMV context.
typedef struct {
    gemv_ctx parts[EK_GEMV_MULTI_MAX];
    int64_t first[EK_GEMV_MULTI_MAX + 1];
    int32_t count;
    prep_ctx prep;
    int64_t nprep, nlora;
    _Atomic int64_t prep_done, lora_done;
    // Fused LoRA (nlora > 0): updates[i * count + m] is row i's update of matrix m; the LoRA tasks
    // quantise the rows of prep.x into ld8 bytes.
    int64_t ld8;
    lora_update *updates;
    _Atomic int32_t err;
} gemv_multi_ctx;

static void gemv_task(gemv_multi_ctx *mc, int32_t m, int64_t t) {
    const gemv_ctx *c = &mc->parts[m];
    int64_t r0 = t * c->rows_per_task, r1 = EK_MIN(c->w->rows, r0 + c->rows_per_task);
    // Up to 16 rows of per-block absmax (+16 zeros: vector kernels read up to 16 past a row) and
    // 16 x 8 partial-sum vectors of 16 floats (AVX-512 int8).
    const int64_t cols = c->w->cols;
    float *sa = ek_scratch(0, (size_t)(16 * (cols / 32 + 16) + 2048 + 64) * sizeof(float));
    if (!sa) { atomic_store(&mc->err, EK_ERR_NOMEM); return; }
    // The task's double-quantised absmax codes, requested up front: a byte per 64 weights, read in
    // short runs beside the weight stream, they went to DRAM one line at a time and their misses
    // showed as 14% of a decode profile in the absmax decoder. Cold decode-shaped GEMVs (SmolLM2's 210
    // matrices) ran 6-10% faster at one row and ~3% at eight with this.
    if (c->w->absmax_q8) {
        const int64_t bs = c->w->blocksize, b0 = r0 * cols / bs;
        ek_prefetch_l2(c->w->absmax_q8 + b0, (r1 * cols + bs - 1) / bs - b0);
    }
    ek_wait_count((_Atomic int64_t *)&mc->prep_done, mc->nprep);
    if (c->q8)
        c->vt->gemv_q8(c->w, r0, r1, c->xp, c->n, c->xps, c->y, c->ldy, c->acc, sa);
    else
        c->vt->gemv_f32(c->w, r0, r1, c->xp, c->n, c->xps, c->y, c->ldy, c->acc, sa);
    if (mc->nlora == 0) return;
    // This task's output rows of every activation row's LoRA update, while they are in L1.
    ek_wait_count((_Atomic int64_t *)&mc->lora_done, mc->nlora);
    for (int64_t i = 0; i < c->n; i++) {
        const lora_update *u = &mc->updates[i * mc->count + m];
        if (u->active) c->vt->lora_add_acc(u->acc + r0, u->sv, c->y + i * c->ldy + r0, r1 - r0);
    }
}

static void prep_task(const prep_ctx *c, int64_t t) {
    for (int64_t i = t * c->per_task; i < EK_MIN(c->n, (t + 1) * c->per_task); i++) {
        if (c->q8) ek_prep_q8(c->x + i * c->ldx, c->cols, c->group, (uint8_t *)c->out + i * c->outs);
        else ek_prep_f32(c->x + i * c->ldx, c->cols, c->chunk, (float *)c->out + i * c->outs);
    }
}

static void lora_row_sums(gemv_multi_ctx *c, int64_t i);

// The segment holding row i (segments are sorted: binary search the last start <= i), or -1.
static int64_t segment_of_row(const int64_t *seg_start, int64_t nseg, int64_t i) {
    int64_t lo = 0, hi = nseg - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (seg_start[mid] <= i) lo = mid; else hi = mid - 1;
    }
    return (i >= seg_start[lo] && i < seg_start[lo + 1]) ? lo : -1;
}

static void gemv_multi_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    gemv_multi_ctx *c = p;
    if (t < c->nprep) {
        prep_task(&c->prep, t);
        atomic_fetch_add_explicit(&c->prep_done, 1, memory_order_release);
        return;
    }
    t -= c->nprep;
    if (t < c->nlora) {
        lora_row_sums(c, t);
        atomic_fetch_add_explicit(&c->lora_done, 1, memory_order_release);
        return;
    }
    t -= c->nlora;
    int32_t m = 0;
    while (t >= c->first[m + 1]) m++;
    gemv_task(c, m, t - c->first[m]);
}

// Weight rows per GEMV task for `rows` rows in all: enough tasks that every core stays busy on a
// 576-row SmolLM2 matrix, a multiple of 4 rows because the SIMD kernels work on 4 weight rows at a time.
static int64_t gemv_rows_per_task(int64_t rows) {
    return EK_MAX(16, EK_MIN((rows / (ek_threads() * 8) + 3) / 4 * 4, 256));
}

// Sets up the preparation of the n rows of x for c->vt's kernels (int8 q8 rows when c->q8, else f32
// rows in the variant's permutation; fast = the matrix layout the fast kernels need) into the calling
// thread's scratch slot 1 as the job's first tasks, and points c->xp / c->xps at them.
static int32_t gemv_prepare(gemv_multi_ctx *mc, const float *x, int64_t ldx, int64_t cols, int fast) {
    gemv_ctx *c = &mc->parts[0];
    const int64_t n = c->n;
    prep_ctx pc = {.x = x, .n = n, .ldx = ldx, .cols = cols, .q8 = c->q8, .group = c->vt->q8_group,
                   .chunk = fast ? c->vt->f32_chunk : 0};
    if (c->q8) {
        c->xps = ek_q8_row_bytes(cols, c->vt);
        uint8_t *xq = ek_scratch(1, (size_t)(c->xps * n));
        if (!xq) return EK_ERR_NOMEM;
        c->xp = xq;
    } else {
        c->xps = cols;
        float *xp = ek_scratch(1, (size_t)(cols * n) * sizeof(float));
        if (!xp) return EK_ERR_NOMEM;
        c->xp = xp;
    }
    pc.out = (void *)c->xp;
    pc.outs = c->xps;
    // Preparing 128 prompt rows of 1536 values is ~10% of a prefill product: split it over the pool too.
    pc.per_task = EK_MAX(1, 4096 / cols);
    mc->prep = pc;
    mc->nprep = (n + pc.per_task - 1) / pc.per_task;
    return EK_OK;
}

// The GEMVs of ws[0 ..< count] over x (checked by the caller, same cols and layout), with the int8 LoRA
// updates of `targets` fused in when targets is not NULL (the caller checked that fusion applies).
static int32_t gemv_job(const ek_nf4_matrix *ws, int32_t count, const float *x, int64_t n, int64_t ldx,
                        float *const *ys, const int64_t *ldys, int32_t flags, const ek_lora_target *targets,
                        const int64_t *seg_start, int64_t nseg) {
    const int fast = fast_layout(&ws[0]);
    gemv_multi_ctx mc = {.count = count};
    gemv_ctx *c0 = &mc.parts[0];
    *c0 = (gemv_ctx){.vt = fast ? ek_active() : ek_vtable_scalar(), .n = n, .acc = flags & EK_ACCUMULATE,
                     .q8 = fast && (flags & EK_ACT_INT8)};
    int32_t st = gemv_prepare(&mc, x, ldx, ws[0].cols, fast);
    if (st) return st;
    if (targets) {
        // The updates, then each row's int32 sums for every matrix.
        int64_t outs = 0;
        for (int32_t m = 0; m < count; m++) outs += ws[m].rows;
        const size_t head = ((size_t)(n * count) * sizeof(lora_update) + 63) / 64 * 64;
        mc.updates = ek_scratch(4, head + (size_t)(n * outs) * sizeof(int32_t));
        if (!mc.updates) return EK_ERR_NOMEM;
        int32_t *acc = (int32_t *)((char *)mc.updates + head);
        mc.ld8 = ek_q8_row_stride(ws[0].cols);
        mc.nlora = n;
        for (int64_t i = 0; i < n; i++) {
            const int64_t seg = segment_of_row(seg_start, nseg, i);
            for (int32_t m = 0; m < count; m++) {
                const int32_t si = seg >= 0 ? targets[m].seg_slot[seg] : -1;
                mc.updates[i * count + m] = (lora_update){.slot = si >= 0 ? &targets[m].slots[si] : NULL, .acc = acc};
                acc += ws[m].rows;
            }
        }
    }
    // One chunk size for every matrix, from their total rows (the rule for one matrix): the tasks are
    // equal units of work whichever matrix they belong to, so the pool balances them.
    int64_t total = 0;
    for (int32_t m = 0; m < count; m++) total += ws[m].rows;
    const int64_t rpt = gemv_rows_per_task(total);
    for (int32_t m = 0; m < count; m++) {
        gemv_ctx *c = &mc.parts[m];
        if (m > 0) *c = (gemv_ctx){.vt = c0->vt, .xp = c0->xp, .n = n, .xps = c0->xps, .acc = c0->acc, .q8 = c0->q8};
        c->w = &ws[m];
        c->y = ys[m];
        c->ldy = ldys[m];
        c->rows_per_task = rpt;
        mc.first[m + 1] = mc.first[m] + (ws[m].rows + rpt - 1) / rpt;
    }
    atomic_init(&mc.prep_done, 0);
    atomic_init(&mc.lora_done, 0);
    atomic_init(&mc.err, EK_OK);
    ek_parallel(mc.nprep + mc.nlora + mc.first[count], gemv_multi_task, &mc);
    return atomic_load(&mc.err);
}

static int32_t check_gemv_multi(const ek_nf4_matrix *ws, int32_t count, const float *x, int64_t n, int64_t ldx,
                                float *const *ys, const int64_t *ldys) {
    if (count < 1 || count > EK_GEMV_MULTI_MAX) return EK_ERR_SHAPE;
    if (!ws || !ys || !ldys) return EK_ERR_NULL;
    for (int32_t m = 0; m < count; m++) {
        int32_t st = check_product(&ws[m], x, n, ldx, ws[0].cols, ys[m], ldys[m], ws[m].rows);
        if (st) return st;
        if (ws[m].cols != ws[0].cols) return EK_ERR_SHAPE;
    }
    return EK_OK;
}

// 1 when the matrices need different kernels (blocksizes that do and do not divide cols): no shared job.
static int mixed_layouts(const ek_nf4_matrix *ws, int32_t count) {
    for (int32_t m = 1; m < count; m++)
        if (fast_layout(&ws[m]) != fast_layout(&ws[0])) return 1;
    return 0;
}

int32_t ek_nf4_gemv_multi(const ek_nf4_matrix *ws, int32_t count, const float *x, int64_t n, int64_t ldx,
                          float *const *ys, const int64_t *ldys, int32_t flags) {
    int32_t st = check_gemv_multi(ws, count, x, n, ldx, ys, ldys);
    if (st || n == 0) return st;
    if (mixed_layouts(ws, count)) {
        for (int32_t j = 0; j < count; j++) {
            st = gemv_job(&ws[j], 1, x, n, ldx, &ys[j], &ldys[j], flags, NULL, NULL, 0);
            if (st) return st;
        }
        return EK_OK;
    }
    return gemv_job(ws, count, x, n, ldx, ys, ldys, flags, NULL, NULL, 0);
}

int32_t ek_nf4_gemv(const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx, float *y, int64_t ldy,
                    int32_t flags) {
    int32_t st = check_product(w, x, n, ldx, w ? w->cols : 0, y, ldy, w ? w->rows : 0);
    if (st || n == 0) return st;
    return gemv_job(w, 1, x, n, ldx, &y, &ldy, flags, NULL, NULL, 0);
}

// ---- GEMM (forward) and transposed product ----------------------------------------------------------
typedef struct {
    const ek_vtable *vt, *tile_vt;
    const ek_nf4_matrix *w;
    const float *a;          // activations: x (forward) or dy (transposed)
    int64_t n, lda, ldc, ntasks;
    float *c;
    int acc;
    _Atomic int32_t err;
} gemm_ctx;

// Forward: panels of 32 W rows; B[k][j] = W[r0 + j, k0 + k] (transposed from the dequantised tile).
static void gemm_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    gemm_ctx *c = p;
    const ek_nf4_matrix *w = c->w;
    const int64_t panels = (w->rows + 31) / 32;
    const int64_t p0 = panels * t / c->ntasks, p1 = panels * (t + 1) / c->ntasks;
    if (p0 >= p1) return;
    float *tile = ek_scratch(0, (size_t)(32 * EK_KC * 2) * sizeof(float));
    if (!tile) { atomic_store(&c->err, EK_ERR_NOMEM); return; }
    float *b = tile + 32 * EK_KC;
    if (!c->acc)
        for (int64_t i = 0; i < c->n; i++)
            memset(c->c + i * c->ldc + p0 * 32, 0, (size_t)(EK_MIN(w->rows, p1 * 32) - p0 * 32) * sizeof(float));
    for (int64_t k0 = 0; k0 < w->cols; k0 += EK_KC) {
        const int64_t kc = EK_MIN(EK_KC, w->cols - k0);
        for (int64_t pi = p0; pi < p1; pi++) {
            const int64_t r0 = pi * 32, nr = EK_MIN(32, w->rows - r0);
            c->tile_vt->dequant_tile(w, r0, nr, k0, kc, tile, kc);
            for (int64_t k = 0; k < kc; k++) {
                float *bk = b + k * 32;
                int64_t j = 0;
                for (; j < nr; j++) bk[j] = tile[j * kc + k];
                for (; j < 32; j++) bk[j] = 0;
            }
            c->vt->mk32(c->n, nr, kc, c->a + k0, c->lda, b, 32, c->c + r0, c->ldc);
        }
    }
}

// bf16 prompt product: the activations rounded once by the caller, then panels of EK_BF16_PANEL W
// rows, each dequantised once into the worker's scratch and applied to every activation row.
typedef struct {
    const ek_vtable *vt;
    const ek_nf4_matrix *w;
    const uint16_t *xb;
    int64_t n, ldy, ntasks;
    float *y;
    int acc;
    _Atomic int32_t err;
} bf16_ctx;

static void bf16_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    bf16_ctx *c = p;
    const ek_nf4_matrix *w = c->w;
    const int64_t panels = (w->rows + EK_BF16_PANEL - 1) / EK_BF16_PANEL;
    const int64_t p0 = panels * t / c->ntasks, p1 = panels * (t + 1) / c->ntasks;
    uint16_t *tile = ek_scratch(0, (size_t)(EK_BF16_PANEL * w->cols) * sizeof(uint16_t));
    if (!tile) { atomic_store(&c->err, EK_ERR_NOMEM); return; }
    for (int64_t pi = p0; pi < p1; pi++) {
        const int64_t r0 = pi * EK_BF16_PANEL;
        c->vt->gemm_bf16_panel(w, r0, EK_MIN(EK_BF16_PANEL, w->rows - r0), c->xb, c->n, w->cols, c->y, c->ldy,
                               c->acc, tile);
    }
}

static int bf16_applies(const ek_vtable *vt, const ek_nf4_matrix *w) {
    return vt->gemm_bf16_panel && fast_layout(w) && w->cols % 32 == 0;
}

int ek_bf16_native(void) { return ek_active()->gemm_bf16_panel != NULL; }

int ek_kv_f16_native(void) { return ek_active()->attn_group != NULL; }

static int32_t gemm_bf16(const ek_vtable *vt, const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx,
                         float *y, int64_t ldy, int acc) {
    const int64_t cols = w->cols;
    uint16_t *xb = ek_scratch(1, (size_t)(n * cols) * sizeof(uint16_t));
    if (!xb) return EK_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) vt->bf16_from_f32(x + i * ldx, cols, xb + i * cols);
    bf16_ctx c = {.vt = vt, .w = w, .xb = xb, .n = n, .ldy = ldy, .y = y, .acc = acc};
    // Panels are whole units of work; more tasks than threads lets a core that finishes early take
    // another (SmolLM2's k/v projections have only 12 panels).
    const int64_t panels = (w->rows + EK_BF16_PANEL - 1) / EK_BF16_PANEL;
    c.ntasks = EK_MIN(panels, (int64_t)ek_threads() * 4);
    atomic_init(&c.err, EK_OK);
    ek_parallel(c.ntasks, bf16_task, &c);
    return atomic_load(&c.err);
}

int32_t ek_nf4_gemm(const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx, float *y, int64_t ldy,
                    int32_t flags) {
    int32_t st = check_product(w, x, n, ldx, w ? w->cols : 0, y, ldy, w ? w->rows : 0);
    if (st || n == 0) return st;
    const ek_vtable *vt = ek_active();
    if ((flags & EK_ACT_BF16) && bf16_applies(vt, w)) return gemm_bf16(vt, w, x, n, ldx, y, ldy, flags & EK_ACCUMULATE);
    if (vt->gemm_by_rows && fast_layout(w) && !(flags & EK_GEMM_TILES))
        return ek_nf4_gemv(w, x, n, ldx, y, ldy, flags & EK_ACCUMULATE);
    gemm_ctx c = {.vt = vt, .w = w, .a = x, .n = n, .lda = ldx, .ldc = ldy, .c = y,
                  .acc = flags & EK_ACCUMULATE};
    c.tile_vt = fast_layout(w) ? c.vt : ek_vtable_scalar();
    const int64_t panels = (w->rows + 31) / 32;
    c.ntasks = EK_MIN(panels, (int64_t)ek_threads());
    atomic_init(&c.err, EK_OK);
    ek_parallel(c.ntasks, gemm_task, &c);
    return atomic_load(&c.err);
}

int32_t ek_nf4_matmul(const ek_nf4_matrix *w, const float *x, int64_t n, int64_t ldx, float *y, int64_t ldy,
                      int32_t flags) {
    if (n <= EK_GEMV_MAX_ROWS || (flags & EK_ACT_INT8)) return ek_nf4_gemv(w, x, n, ldx, y, ldy, flags);
    return ek_nf4_gemm(w, x, n, ldx, y, ldy, flags);
}

// Transposed: dX[:, c0 ..< c0+64] += dY[:, k0 ..< k0+kc] · W[k0 ..< k0+kc, c0 ..< c0+64]; column
// panels are split between threads so each owns its slice of dX.
static void gemm_t_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    gemm_ctx *c = p;
    const ek_nf4_matrix *w = c->w;
    const int64_t panels = (w->cols + EK_TCOLS - 1) / EK_TCOLS;
    const int64_t p0 = panels * t / c->ntasks, p1 = panels * (t + 1) / c->ntasks;
    if (p0 >= p1) return;
    float *b = ek_scratch(0, (size_t)(EK_KC * EK_TCOLS) * sizeof(float));
    if (!b) { atomic_store(&c->err, EK_ERR_NOMEM); return; }
    if (!c->acc)
        for (int64_t i = 0; i < c->n; i++)
            memset(c->c + i * c->ldc + p0 * EK_TCOLS, 0,
                   (size_t)(EK_MIN(w->cols, p1 * EK_TCOLS) - p0 * EK_TCOLS) * sizeof(float));
    for (int64_t k0 = 0; k0 < w->rows; k0 += EK_KC) {
        const int64_t kc = EK_MIN(EK_KC, w->rows - k0);
        for (int64_t pi = p0; pi < p1; pi++) {
            const int64_t c0 = pi * EK_TCOLS, width = EK_MIN(EK_TCOLS, w->cols - c0);
            c->tile_vt->dequant_tile(w, k0, kc, c0, width, b, EK_TCOLS);
            if (width < EK_TCOLS)
                for (int64_t k = 0; k < kc; k++) memset(b + k * EK_TCOLS + width, 0, (size_t)(EK_TCOLS - width) * sizeof(float));
            for (int64_t q = 0; q < width; q += 32)
                c->vt->mk32(c->n, EK_MIN(32, width - q), kc, c->a + k0, c->lda, b + q, EK_TCOLS,
                            c->c + c0 + q, c->ldc);
        }
    }
}

int32_t ek_nf4_matmul_t(const ek_nf4_matrix *w, const float *dy, int64_t n, int64_t ldg, float *dx, int64_t ldd,
                        int32_t flags) {
    int32_t st = check_product(w, dy, n, ldg, w ? w->rows : 0, dx, ldd, w ? w->cols : 0);
    if (st || n == 0) return st;
    gemm_ctx c = {.vt = ek_active(), .w = w, .a = dy, .n = n, .lda = ldg, .ldc = ldd, .c = dx,
                  .acc = flags & EK_ACCUMULATE};
    // The fast tile needs 32-aligned column ranges and rows that never share a block.
    c.tile_vt = fast_layout(w) ? c.vt : ek_vtable_scalar();
    const int64_t panels = (w->cols + EK_TCOLS - 1) / EK_TCOLS;
    c.ntasks = EK_MIN(panels, (int64_t)ek_threads());
    atomic_init(&c.err, EK_OK);
    ek_parallel(c.ntasks, gemm_t_task, &c);
    return atomic_load(&c.err);
}

// ---- int8 matrices (quantised head) ----------------------------------------------------------------------
int64_t ek_q8_row_stride(int64_t cols) { return cols <= 0 ? 0 : (cols + 63) / 64 * 64; }

typedef struct {
    const float *w;
    int64_t rows, cols, ldw, ld, per_task;
    int8_t *q;
    float *scale;
} q8quant_ctx;

static void q8quant_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    q8quant_ctx *c = p;
    for (int64_t r = t * c->per_task; r < EK_MIN(c->rows, (t + 1) * c->per_task); r++) {
        const float *wr = c->w + r * c->ldw;
        int8_t *qr = c->q + r * c->ld;
        float amax = 0;
        for (int64_t k = 0; k < c->cols; k++) amax = fmaxf(amax, fabsf(wr[k]));
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int64_t k = 0; k < c->cols; k++) qr[k] = (int8_t)lrintf(wr[k] * id);
        memset(qr + c->cols, 0, (size_t)(c->ld - c->cols));
        c->scale[r] = amax / 127.0f;
    }
}

int32_t ek_q8_quantize_rows(const float *w, int64_t rows, int64_t cols, int64_t ldw, int64_t ld, int8_t *q,
                            float *scale) {
    if (rows <= 0 || cols <= 0) return EK_ERR_SHAPE;
    if (!w || !q || !scale) return EK_ERR_NULL;
    if (ldw < cols || ld < ek_q8_row_stride(cols) || ld % 64) return EK_ERR_STRIDE;
    q8quant_ctx c = {.w = w, .rows = rows, .cols = cols, .ldw = ldw, .ld = ld, .q = q, .scale = scale,
                     .per_task = 256};
    ek_parallel((rows + c.per_task - 1) / c.per_task, q8quant_task, &c);
    return EK_OK;
}

typedef struct {
    const ek_vtable *vt;
    const ek_q8_matrix *w;
    const int8_t *xq;
    const float *xd;
    int64_t n, ldy, rows_per_task;
    float *y;
    _Atomic int32_t err;
} q8mm_ctx;

static void q8mm_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    q8mm_ctx *c = p;
    int64_t r0 = t * c->rows_per_task, r1 = EK_MIN(c->w->rows, r0 + c->rows_per_task);
    void *scratch = ek_scratch(0, EK_Q8W_SCRATCH(c->n, c->w->ld));
    if (!scratch) { atomic_store(&c->err, EK_ERR_NOMEM); return; }
    c->vt->q8w_rows(c->w, r0, r1, c->xq, c->xd, c->n, c->y, c->ldy, scratch);
}

int32_t ek_q8_matmul(const ek_q8_matrix *w, const float *x, int64_t n, int64_t ldx, float *y, int64_t ldy) {
    if (!w || !w->q || !w->scale) return EK_ERR_NULL;
    if (w->rows <= 0 || w->cols <= 0 || n < 0) return EK_ERR_SHAPE;
    if (w->ld < ek_q8_row_stride(w->cols) || w->ld % 64) return EK_ERR_STRIDE;
    if (n == 0) return EK_OK;
    if (!x || !y) return EK_ERR_NULL;
    if (ldx < w->cols || ldy < w->rows) return EK_ERR_STRIDE;
    const int64_t ld = w->ld, nb = ld / 32;
    int8_t *xq = ek_scratch(1, (size_t)(n * ld + n * nb * 4 + 64));
    if (!xq) return EK_ERR_NOMEM;
    float *xd = (float *)(xq + (n * ld + 63) / 64 * 64);
    // Activations per 32: d = max|x| / 127, q = round(x / d) — the EK_ACT_INT8 rule.
    const ek_vtable *vt = ek_active();
    for (int64_t i = 0; i < n; i++) vt->q8_quant_row(x + i * ldx, w->cols, ld, xq + i * ld, xd + i * nb);
    q8mm_ctx c = {.vt = vt, .w = w, .xq = xq, .xd = xd, .n = n, .ldy = ldy, .y = y};
    // Small row chunks: the head is the widest matrix (49152 rows) and the tasks balance the cores.
    c.rows_per_task = EK_MAX(64, (w->rows / (ek_threads() * 16) + 3) / 4 * 4);
    // Several rows (a decode batch): the kernels apply each weight load to up to 8 rows; beyond 8
    // they re-read the task's slice per 8 rows, so keep it within ~256 KiB (re-reads from L2, not DRAM).
    if (n > 8) c.rows_per_task = EK_MAX(64, EK_MIN(c.rows_per_task, (256 * 1024 / ld) / 4 * 4));
    atomic_init(&c.err, EK_OK);
    ek_parallel((w->rows + c.rows_per_task - 1) / c.rows_per_task, q8mm_task, &c);
    return atomic_load(&c.err);
}

// ---- LoRA ----------------------------------------------------------------------------------------------
typedef struct {
    const ek_vtable *vt;
    const ek_lora_target *targets;
    int32_t count;
    const int32_t *slot_of_row;            // BGMV (one target), or NULL
    const int64_t *seg_start;              // SGMV
    int64_t nseg, in, ldx, ld8, n, max_out;
    const float *x;
    _Atomic int32_t err;
} lora_ctx;

// One row's int32 sums for an int8 slot of `out` outputs, in the header's order: its matrices requested
// into L2, x (in values) quantised into xq / xd unless *quantized already says it was, u = A x, then
// v = u * scale * (Bᵀ row scale) to int8 with one scale, then acc = Bᵀ v8. Returns 0 when max|v| is 0
// (no update); else acc[0 ..< out] and *sv, the update being y[j] = fma(sv, acc[j], y[j]).
// u: rank floats of scratch.
static int lora_q8_sums(const ek_vtable *vt, const ek_lora_slot *s, int64_t out, const float *x, int64_t in,
                        int64_t ld8, int8_t *xq, float *xd, int *quantized, float *u, int32_t *acc, float *sv) {
    ek_prefetch_l2(s->a8, s->rank * ld8);
    ek_prefetch_l2(s->bt8, ek_lora_i8_bt_bytes(s->rank, out));
    if (!*quantized) {
        vt->q8_quant_row(x, in, ld8, xq, xd);
        *quantized = 1;
    }
    vt->lora_down_q8(s, xq, xd, u);
    float vmax = 0;
    for (int32_t t = 0; t < s->rank; t++) {
        u[t] = u[t] * s->scale * s->bt8_scale[t];
        vmax = fmaxf(vmax, fabsf(u[t]));
    }
    if (!(vmax > 0)) return 0;
    const float id = 127.0f / vmax;
    int8_t v8[256];   // the rank rounded up to 4
    for (int32_t t = 0; t < (s->rank + 3) / 4 * 4; t++) v8[t] = t < s->rank ? (int8_t)lrintf(u[t] * id) : 0;
    *sv = vmax / 127.0f;
    vt->lora_up_acc_q8(s->bt8, s->rank, out, out, v8, acc);
    return 1;
}

// Scratch slot 3 for one row's LoRA: u (a rank of floats), x quantised (ld8 bytes and ld8 / 32 scales),
// then nacc int32 sums.
static float *lora_scratch(int64_t ld8, int64_t nacc, int8_t **xq, float **xd, int32_t **acc) {
    float *u = ek_scratch(3, 256 * sizeof(float) + (size_t)ld8 + (size_t)ld8 / 32 * sizeof(float) +
                             (size_t)nacc * sizeof(int32_t) + 64);
    if (!u) return NULL;
    *xq = (int8_t *)(u + 256);
    *xd = (float *)(*xq + ld8);
    *acc = (int32_t *)(*xd + ld8 / 32);
    return u;
}

// One activation row through every target: its x is quantised once for all of its int8 slots.
static void lora_task(void *p, int64_t i, int32_t worker) {
    (void)worker;
    lora_ctx *c = p;
    int8_t *xq;
    float *xd;
    int32_t *acc;
    float *u = lora_scratch(c->ld8, c->max_out, &xq, &xd, &acc);
    if (!u) { atomic_store(&c->err, EK_ERR_NOMEM); return; }
    const float *x = c->x + i * c->ldx;
    const int64_t seg = c->seg_start ? segment_of_row(c->seg_start, c->nseg, i) : -1;
    int quantized = 0;
    for (int32_t m = 0; m < c->count; m++) {
        const ek_lora_target *tg = &c->targets[m];
        const int32_t si = c->slot_of_row ? c->slot_of_row[i] : seg >= 0 ? tg->seg_slot[seg] : -1;
        if (si < 0) continue;
        const ek_lora_slot *s = &tg->slots[si];
        float *y = tg->y + i * tg->ldy;
        if (s->dtype != EK_DTYPE_I8) {
            c->vt->lora_row(s, x, c->in, y, tg->out, u);
            continue;
        }
        float sv;
        if (lora_q8_sums(c->vt, s, tg->out, x, c->in, c->ld8, xq, xd, &quantized, u, acc, &sv))
            c->vt->lora_add_acc(acc, sv, y, tg->out);
    }
}

// The fused GEMV job's LoRA task for activation row i: the int32 sums of every matrix's update of row i
// (the same numbers as lora_task; the GEMV tasks add them to their output rows).
static void lora_row_sums(gemv_multi_ctx *c, int64_t i) {
    int8_t *xq;
    float *xd;
    int32_t *unused;
    float *u = lora_scratch(c->ld8, 0, &xq, &xd, &unused);
    const float *x = c->prep.x + i * c->prep.ldx;
    int quantized = 0;
    for (int32_t m = 0; m < c->count; m++) {
        lora_update *up = &c->updates[i * c->count + m];
        if (!up->slot) continue;
        if (!u) { atomic_store(&c->err, EK_ERR_NOMEM); continue; }
        up->active = lora_q8_sums(c->parts[m].vt, up->slot, c->parts[m].w->rows, x, c->prep.cols, c->ld8, xq, xd,
                                  &quantized, u, up->acc, &up->sv);
    }
}

void ek_lora_transpose_b(const float *b, int64_t out, int32_t rank, float *bt) {
    if (!b || !bt || out <= 0 || rank <= 0) return;
    for (int64_t j = 0; j < out; j++)
        for (int32_t t = 0; t < rank; t++) bt[t * out + j] = b[j * rank + t];
}

void ek_lora_transpose_b_f16(const float *b, int64_t out, int32_t rank, uint16_t *bt16) {
    if (!b || !bt16 || out <= 0 || rank <= 0 || rank > 256) return;
    uint16_t h[256];   // one output's rank values, converted together
    for (int64_t j = 0; j < out; j++) {
        ek_f32_to_f16(b + j * rank, h, rank);
        for (int32_t t = 0; t < rank; t++) bt16[t * out + j] = h[t];
    }
}

int64_t ek_lora_i8_bt_bytes(int32_t rank, int64_t out) { return rank <= 0 || out <= 0 ? 0 : (int64_t)(rank + 3) / 4 * out * 4; }

void ek_lora_quantize_bt(const float *b, int32_t rank, int64_t out, int8_t *bt8, float *scale) {
    if (!b || !bt8 || !scale || rank <= 0 || rank > 256 || out <= 0) return;
    memset(bt8, 0, (size_t)ek_lora_i8_bt_bytes(rank, out));
    for (int32_t t = 0; t < rank; t++) {
        float amax = 0;
        for (int64_t j = 0; j < out; j++) amax = fmaxf(amax, fabsf(b[j * rank + t]));
        const float id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int64_t j = 0; j < out; j++) bt8[((int64_t)(t / 4) * out + j) * 4 + t % 4] = (int8_t)lrintf(b[j * rank + t] * id);
        scale[t] = amax / 127.0f;
    }
}

static int32_t check_slots(const ek_lora_slot *slots, int64_t nslots, int64_t in) {
    for (int64_t s = 0; s < nslots; s++) {
        const ek_lora_slot *sl = &slots[s];
        if (sl->rank < 1 || sl->rank > 256) return EK_ERR_ADAPTER;
        if (sl->dtype == EK_DTYPE_F32) {
            if (!sl->a || !sl->b) return EK_ERR_ADAPTER;
        } else if (sl->dtype == EK_DTYPE_F16) {
            if (!sl->a16 || (!sl->b16 && !sl->bt16)) return EK_ERR_ADAPTER;
        } else if (sl->dtype == EK_DTYPE_I8) {
            if (!sl->a8 || !sl->a8_scale || !sl->bt8 || !sl->bt8_scale) return EK_ERR_ADAPTER;
            if (sl->a8_ld != ek_q8_row_stride(in)) return EK_ERR_STRIDE;
        } else {
            return EK_ERR_DTYPE;
        }
    }
    return EK_OK;
}

static int32_t check_target(const ek_lora_target *t, int64_t in) {
    if (t->out <= 0 || t->nslots < 0) return EK_ERR_SHAPE;
    if (!t->y || (t->nslots > 0 && !t->slots)) return EK_ERR_NULL;
    if (t->ldy < t->out) return EK_ERR_STRIDE;
    return check_slots(t->slots, t->nslots, in);
}

static int32_t run_lora(lora_ctx *c) {
    c->vt = ek_active();
    c->ld8 = ek_q8_row_stride(c->in);
    for (int32_t m = 0; m < c->count; m++) c->max_out = EK_MAX(c->max_out, c->targets[m].out);
    atomic_init(&c->err, EK_OK);
    ek_parallel(c->n, lora_task, c);
    return atomic_load(&c->err);
}

int32_t ek_lora_bgmv(const ek_lora_slot *slots, int64_t nslots, const int32_t *slot_of_row, const float *x,
                     int64_t n, int64_t ldx, int64_t in, float *y, int64_t ldy, int64_t out) {
    if (n < 0 || in <= 0 || out <= 0 || nslots < 0) return EK_ERR_SHAPE;
    if (n == 0) return EK_OK;
    if (!x || !y || !slot_of_row || (nslots > 0 && !slots)) return EK_ERR_NULL;
    if (ldx < in || ldy < out) return EK_ERR_STRIDE;
    int32_t st = check_slots(slots, nslots, in);
    if (st) return st;
    for (int64_t i = 0; i < n; i++)
        if (slot_of_row[i] < -1 || slot_of_row[i] >= nslots) return EK_ERR_ADAPTER;
    ek_lora_target t = {.slots = slots, .nslots = nslots, .y = y, .ldy = ldy, .out = out};
    lora_ctx c = {.targets = &t, .count = 1, .slot_of_row = slot_of_row, .in = in, .ldx = ldx, .n = n, .x = x};
    return run_lora(&c);
}

static int32_t check_sgmv_multi(const ek_lora_target *targets, int32_t count, const int64_t *seg_start, int64_t nseg,
                                int64_t in, int64_t ldx) {
    if (nseg < 0 || in <= 0 || count < 1 || count > EK_LORA_MAX_TARGETS) return EK_ERR_SHAPE;
    if (nseg == 0) return EK_OK;
    if (!targets || !seg_start) return EK_ERR_NULL;
    if (ldx < in) return EK_ERR_STRIDE;
    if (seg_start[0] < 0) return EK_ERR_SHAPE;
    for (int64_t j = 0; j < nseg; j++)
        if (seg_start[j + 1] < seg_start[j]) return EK_ERR_SHAPE;
    for (int32_t m = 0; m < count; m++) {
        int32_t st = check_target(&targets[m], in);
        if (st) return st;
        if (!targets[m].seg_slot) return EK_ERR_NULL;
        for (int64_t j = 0; j < nseg; j++)
            if (targets[m].seg_slot[j] < -1 || targets[m].seg_slot[j] >= targets[m].nslots) return EK_ERR_ADAPTER;
    }
    return EK_OK;
}

int32_t ek_lora_sgmv_multi(const ek_lora_target *targets, int32_t count, const int64_t *seg_start, int64_t nseg,
                           const float *x, int64_t ldx, int64_t in) {
    if (nseg > 0 && !x) return EK_ERR_NULL;
    int32_t st = check_sgmv_multi(targets, count, seg_start, nseg, in, ldx);
    if (st || nseg == 0) return st;
    lora_ctx c = {.targets = targets, .count = count, .seg_start = seg_start, .nseg = nseg, .in = in, .ldx = ldx,
                  .n = seg_start[nseg], .x = x};
    return run_lora(&c);
}

int32_t ek_nf4_gemv_lora(const ek_nf4_matrix *ws, int32_t count, const float *x, int64_t n, int64_t ldx,
                         int32_t flags, const ek_lora_target *targets, const int64_t *seg_start, int64_t nseg) {
    if (count < 1 || count > EK_GEMV_MULTI_MAX || nseg < 0 || n < 0) return EK_ERR_SHAPE;
    if (!targets || !ws || (nseg > 0 && !seg_start)) return EK_ERR_NULL;
    float *ys[EK_GEMV_MULTI_MAX];
    int64_t ldys[EK_GEMV_MULTI_MAX];
    for (int32_t m = 0; m < count; m++) {
        if (targets[m].out != ws[m].rows) return EK_ERR_SHAPE;
        ys[m] = targets[m].y;
        ldys[m] = targets[m].ldy;
    }
    int32_t st = check_gemv_multi(ws, count, x, n, ldx, ys, ldys);
    if (st) return st;
    if (nseg > 0 && seg_start[nseg] > n) return EK_ERR_SHAPE;
    // The same checks as ek_lora_sgmv_multi, before anything is written.
    st = check_sgmv_multi(targets, count, seg_start, nseg, ws[0].cols, ldx);
    if (st || n == 0) return st;
    int fused = !mixed_layouts(ws, count) && fast_layout(&ws[0]) && (flags & EK_ACT_INT8) && nseg > 0;
    for (int32_t m = 0; m < count && fused; m++)
        for (int64_t k = 0; k < targets[m].nslots; k++)
            if (targets[m].slots[k].dtype != EK_DTYPE_I8) fused = 0;
    if (fused) return gemv_job(ws, count, x, n, ldx, ys, ldys, flags, targets, seg_start, nseg);
    st = ek_nf4_gemv_multi(ws, count, x, n, ldx, ys, ldys, flags);
    if (st || nseg == 0) return st;
    return ek_lora_sgmv_multi(targets, count, seg_start, nseg, x, ldx, ws[0].cols);
}

int32_t ek_lora_sgmv(const ek_lora_slot *slots, int64_t nslots, const int32_t *seg_slot, const int64_t *seg_start,
                     int64_t nseg, const float *x, int64_t ldx, int64_t in, float *y, int64_t ldy, int64_t out) {
    if (out <= 0) return EK_ERR_SHAPE;
    ek_lora_target t = {.slots = slots, .nslots = nslots, .seg_slot = seg_slot, .y = y, .ldy = ldy, .out = out};
    return ek_lora_sgmv_multi(&t, 1, seg_start, nseg, x, ldx, in);
}

// ---- Small ops ---------------------------------------------------------------------------------------
int32_t ek_rmsnorm(const float *x, int64_t n, int64_t ldx, const float *weight, int64_t dim, float eps,
                   float *y, int64_t ldy) {
    if (n < 0 || dim <= 0) return EK_ERR_SHAPE;
    if (n > 0 && (!x || !weight || !y)) return EK_ERR_NULL;
    if (ldx < dim || ldy < dim) return EK_ERR_STRIDE;
    const ek_vtable *vt = ek_active();
    for (int64_t i = 0; i < n; i++) vt->rmsnorm_row(x + i * ldx, weight, dim, eps, y + i * ldy);
    return EK_OK;
}

static int32_t check_rope(const float *x, int64_t n, int64_t ldx, int64_t nheads, int64_t hd) {
    if (n < 0 || nheads <= 0 || hd <= 0 || hd % 2) return EK_ERR_SHAPE;
    if (n > 0 && !x) return EK_ERR_NULL;
    if (ldx < nheads * hd) return EK_ERR_STRIDE;
    return EK_OK;
}

static void rope_head(float *xh, const float *c, const float *s, int64_t hd) {
    const int64_t half = hd / 2;
    for (int64_t j = 0; j < half; j++) {
        float a = xh[j], b = xh[j + half];
        xh[j] = a * c[j] - b * s[j];
        xh[j + half] = b * c[j + half] + a * s[j + half];
    }
}

int32_t ek_rope_cos_sin(float *x, int64_t n, int64_t ldx, int64_t nheads, int64_t hd, const float *cos_,
                        const float *sin_) {
    int32_t st = check_rope(x, n, ldx, nheads, hd);
    if (st) return st;
    if (n > 0 && (!cos_ || !sin_)) return EK_ERR_NULL;
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < nheads; h++) rope_head(x + i * ldx + h * hd, cos_ + i * hd, sin_ + i * hd, hd);
    return EK_OK;
}

int32_t ek_rope_positions(float *x, int64_t n, int64_t ldx, int64_t nheads, int64_t hd, const int64_t *positions,
                          float theta) {
    int32_t st = check_rope(x, n, ldx, nheads, hd);
    if (st) return st;
    if (n > 0 && !positions) return EK_ERR_NULL;
    if (!(theta > 0)) return EK_ERR_SHAPE;
    float *cs = ek_scratch(2, (size_t)(2 * hd) * sizeof(float));
    if (!cs) return EK_ERR_NOMEM;
    float *sn = cs + hd;
    const int64_t half = hd / 2;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < half; j++) {
            // transformers: inv_freq = 1 / theta ** (arange(0, d, 2).float() / d), freqs = pos * inv_freq.
            float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
            float ang = (float)positions[i] * inv;
            cs[j] = cs[j + half] = cosf(ang);
            sn[j] = sn[j + half] = sinf(ang);
        }
        for (int64_t h = 0; h < nheads; h++) rope_head(x + i * ldx + h * hd, cs, sn, hd);
    }
    return EK_OK;
}

int32_t ek_softmax(float *x, int64_t n, int64_t ldx, int64_t dim) {
    if (n < 0 || dim <= 0) return EK_ERR_SHAPE;
    if (n > 0 && !x) return EK_ERR_NULL;
    if (ldx < dim) return EK_ERR_STRIDE;
    const ek_vtable *vt = ek_active();
    for (int64_t i = 0; i < n; i++) vt->softmax_row(x + i * ldx, dim);
    return EK_OK;
}

int32_t ek_silu_mul(const float *gate, const float *up, float *out, int64_t count) {
    if (count < 0) return EK_ERR_SHAPE;
    if (count > 0 && (!gate || !up || !out)) return EK_ERR_NULL;
    ek_active()->silu_mul(gate, up, out, count);
    return EK_OK;
}

void ek_f16_to_f32(const uint16_t *src, float *dst, int64_t count) {
    if (!src || !dst || count <= 0) return;
    ek_active()->f16_to_f32(src, dst, count);
}

void ek_bf16_to_f32(const uint16_t *src, float *dst, int64_t count) {
    if (!src || !dst) return;
    for (int64_t k = 0; k < count; k++) {
        uint32_t bits = (uint32_t)src[k] << 16;
        memcpy(&dst[k], &bits, 4);
    }
}

void ek_f32_to_f16(const float *src, uint16_t *dst, int64_t count) {
    if (!src || !dst || count <= 0) return;
    ek_active()->f32_to_f16(src, dst, count);
}

int64_t ek_argmax(const float *x, int64_t count) {
    if (!x || count <= 0) return -1;
    int64_t best = -1;
    float bv = 0;
    for (int64_t k = 0; k < count; k++)
        if (!isnan(x[k]) && (best < 0 || x[k] > bv)) { best = k; bv = x[k]; }
    return best < 0 ? 0 : best;
}

// ---- Attention ---------------------------------------------------------------------------------------
typedef struct {
    const ek_vtable *vt;
    const float *q;
    const ek_attn_row *rows;
    int64_t ldq, nheads, group, hd, kv_stride, ldo;
    int32_t dtype;
    float scale;
    float *out;
    _Atomic int32_t err;
} attn_ctx;

static void attn_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    attn_ctx *c = p;
    int64_t i = t / c->nheads, h = t % c->nheads;
    const ek_attn_row *row = &c->rows[i];
    float *scores = ek_scratch(2, (size_t)(row->len + c->hd) * sizeof(float));
    if (!scores) { atomic_store(&c->err, EK_ERR_NOMEM); return; }
    c->vt->attn_head(c->q + i * c->ldq + h * c->hd, row, h / c->group, c->hd, c->kv_stride, c->dtype, c->scale,
                     c->out + i * c->ldo + h * c->hd, scores);
}

// ---- Attention by KV group (variants with attn_group) ----
// Work unit: one (query row, KV head): the group's query heads share every K/V row loaded. Rows longer
// than 64 positions are cut into up to 16 position chunks whose partials (max, sum, unnormalised
// values) are merged by attn_merge; the cut depends only on the row's length. A decode-sized batch
// (few rows x KV heads) gives each chunk its own task so every core has work, and the caller merges;
// a prefill batch has enough rows, so each task runs its row's chunks in turn and merges them itself.
// Both run the same chunks and the same merge: a row's numbers never depend on its batch-mates.
typedef struct {
    int64_t first_task, chunks, chunk;
    float *partials;   // split rows with chunks > 1: per (KV head, chunk) group * (hd + 2) floats [m | l | acc]
} attn_row_plan;

typedef struct {
    const ek_vtable *vt;
    const float *q;
    const ek_attn_row *rows;
    const attn_row_plan *plan;
    int64_t n, ldq, nkv, group, hd, kv_stride, ldo, max_chunk, max_chunks;
    int32_t dtype, split;
    float scale;
    float *out;
    _Atomic int32_t err;
} attn_group_ctx;

static int64_t attn_chunks(int64_t len) { return EK_MIN(16, (len + 63) / 64); }

// Merges `chunks` partials (consecutive, group * (hd + 2) floats each) into the group's heads at out
// (head j at out + j*hd): out = sum_c e^(m_c - M) acc_c / sum_c e^(m_c - M) l_c.
static void attn_merge(const ek_vtable *vt, const float *first, int64_t chunks, int64_t G, int64_t hd, float *out) {
    const int64_t psize = G * (hd + 2);
    for (int64_t j = 0; j < G; j++) {
        float mx = -INFINITY;
        for (int64_t ch = 0; ch < chunks; ch++) mx = fmaxf(mx, first[ch * psize + j]);
        float *o = out + j * hd, total = 0;
        for (int64_t d = 0; d < hd; d++) o[d] = 0;
        for (int64_t ch = 0; ch < chunks; ch++) {
            const float *pc = first + ch * psize;
            const float f = expf(pc[j] - mx);
            total += f * pc[G + j];
            vt->axpy(f, pc + 2 * G + j * hd, o, hd);
        }
        const float inv = 1.0f / total;
        for (int64_t d = 0; d < hd; d++) o[d] *= inv;
    }
}

static void attn_group_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    attn_group_ctx *c = p;
    int64_t lo = 0, hi = c->n - 1;   // the last row whose first task <= t
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (c->plan[mid].first_task <= t) lo = mid; else hi = mid - 1;
    }
    const int64_t i = lo;
    const attn_row_plan *pl = &c->plan[i];
    const int64_t r = t - pl->first_task, G = c->group, hd = c->hd, len = c->rows[i].len, psize = G * (hd + 2);
    const int64_t g = c->split ? r / pl->chunks : r;
    float *scratch = ek_scratch(2, (size_t)(G * (c->max_chunk + 16) + 16 * hd + 2 * G) * sizeof(float));
    if (!scratch) { atomic_store(&c->err, EK_ERR_NOMEM); return; }
    const float *q = c->q + i * c->ldq + g * G * hd;
    float *out = c->out + i * c->ldo + g * G * hd;   // the group's heads are adjacent
    if (pl->chunks == 1) {
        float *m = scratch, *l = m + G;
        c->vt->attn_group(q, G, &c->rows[i], g, 0, len, hd, c->kv_stride, c->dtype, c->scale, m, l, out, l + G);
        for (int64_t j = 0; j < G; j++) {
            const float inv = 1.0f / l[j];
            for (int64_t d = 0; d < hd; d++) out[j * hd + d] *= inv;
        }
        return;
    }
    if (c->split) {
        const int64_t ch = r % pl->chunks, p0 = ch * pl->chunk;
        float *part = pl->partials + (g * pl->chunks + ch) * psize;
        c->vt->attn_group(q, G, &c->rows[i], g, p0, EK_MIN(len, p0 + pl->chunk), hd, c->kv_stride, c->dtype, c->scale,
                          part, part + G, part + 2 * G, scratch);
        return;
    }
    float *parts = ek_scratch(3, (size_t)(c->max_chunks * psize) * sizeof(float));
    if (!parts) { atomic_store(&c->err, EK_ERR_NOMEM); return; }
    for (int64_t ch = 0; ch < pl->chunks; ch++) {
        const int64_t p0 = ch * pl->chunk;
        float *part = parts + ch * psize;
        c->vt->attn_group(q, G, &c->rows[i], g, p0, EK_MIN(len, p0 + pl->chunk), hd, c->kv_stride, c->dtype, c->scale,
                          part, part + G, part + 2 * G, scratch);
    }
    attn_merge(c->vt, parts, pl->chunks, G, hd, out);
}

static int32_t attention_by_group(attn_group_ctx *c) {
    const int64_t n = c->n, G = c->group, hd = c->hd, psize = G * (hd + 2);
    // Split chunks over tasks only when rows x KV heads alone would leave cores idle.
    c->split = n * c->nkv < 4 * (int64_t)ek_threads();
    int64_t tasks = 0, pfloats = 0;
    for (int64_t i = 0; i < n && c->split; i++) {
        const int64_t chunks = attn_chunks(c->rows[i].len);
        if (chunks > 1) pfloats += c->nkv * chunks * psize;
    }
    attn_row_plan *plan = ek_scratch(1, (size_t)n * sizeof(attn_row_plan) + (size_t)pfloats * sizeof(float) + 64);
    if (!plan) return EK_ERR_NOMEM;
    float *parts = (float *)(plan + n);
    c->max_chunk = c->max_chunks = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t len = c->rows[i].len, chunks = attn_chunks(len);
        // Chunks of whole 16-position blocks, as even as that allows.
        const int64_t chunk = ((len + chunks - 1) / chunks + 15) / 16 * 16;
        plan[i] = (attn_row_plan){.first_task = tasks, .chunks = (len + chunk - 1) / chunk, .chunk = chunk};
        if (c->split && plan[i].chunks > 1) {
            plan[i].partials = parts;
            parts += c->nkv * plan[i].chunks * psize;
        }
        tasks += c->nkv * (c->split ? plan[i].chunks : 1);
        c->max_chunk = EK_MAX(c->max_chunk, EK_MIN(chunk, len));
        c->max_chunks = EK_MAX(c->max_chunks, plan[i].chunks);
    }
    c->plan = plan;
    atomic_init(&c->err, EK_OK);
    ek_parallel(tasks, attn_group_task, c);
    int32_t err = atomic_load(&c->err);
    if (err || !c->split) return err;
    for (int64_t i = 0; i < n; i++) {
        const attn_row_plan *pl = &plan[i];
        if (pl->chunks == 1) continue;
        for (int64_t g = 0; g < c->nkv; g++)
            attn_merge(c->vt, pl->partials + g * pl->chunks * psize, pl->chunks, G, hd, c->out + i * c->ldo + g * G * hd);
    }
    return EK_OK;
}

int32_t ek_attention(const float *q, int64_t n, int64_t ldq, const ek_attn_row *rows, int64_t nheads,
                     int64_t nkv_heads, int64_t head_dim, int64_t kv_stride, int32_t kv_dtype, float scale,
                     float *out, int64_t ldo) {
    if (n < 0 || nheads <= 0 || nkv_heads <= 0 || head_dim <= 0 || nheads % nkv_heads) return EK_ERR_SHAPE;
    if (kv_dtype != EK_DTYPE_F32 && kv_dtype != EK_DTYPE_F16) return EK_ERR_DTYPE;
    if (n == 0) return EK_OK;
    if (!q || !rows || !out) return EK_ERR_NULL;
    if (ldq < nheads * head_dim || ldo < nheads * head_dim || kv_stride < nkv_heads * head_dim) return EK_ERR_STRIDE;
    for (int64_t i = 0; i < n; i++) {
        if (rows[i].len <= 0) return EK_ERR_SHAPE;
        if (!rows[i].k || !rows[i].v) return EK_ERR_NULL;
    }
    const ek_vtable *vt = ek_active();
    if (vt->attn_group && head_dim % 16 == 0) {
        attn_group_ctx gc = {.vt = vt, .q = q, .rows = rows, .n = n, .ldq = ldq, .nkv = nkv_heads,
                             .group = nheads / nkv_heads, .hd = head_dim, .kv_stride = kv_stride, .ldo = ldo,
                             .dtype = kv_dtype, .scale = scale, .out = out};
        return attention_by_group(&gc);
    }
    attn_ctx c = {.vt = vt, .q = q, .rows = rows, .ldq = ldq, .nheads = nheads,
                  .group = nheads / nkv_heads, .hd = head_dim, .kv_stride = kv_stride, .ldo = ldo,
                  .dtype = kv_dtype, .scale = scale, .out = out};
    atomic_init(&c.err, EK_OK);
    ek_parallel(n * nheads, attn_task, &c);
    return atomic_load(&c.err);
}

// ---- Benchmark support -------------------------------------------------------------------------------
typedef struct {
    const uint64_t *p;
    int64_t words, per_task;
    _Atomic uint64_t sum;
} read_ctx;

static void read_task(void *p, int64_t t, int32_t worker) {
    (void)worker;
    read_ctx *c = p;
    const uint64_t *w = c->p + t * c->per_task;
    int64_t n = EK_MIN(c->per_task, c->words - t * c->per_task);
    // Eight independent xor chains: the compiler vectorises this into full-width loads.
    uint64_t acc[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) acc[l] ^= w[k + l];
    for (; k < n; k++) acc[0] ^= w[k];
    uint64_t x = 0;
    for (int l = 0; l < 8; l++) x ^= acc[l];
    atomic_fetch_xor(&c->sum, x);
}

uint64_t ek_bench_read(const void *p, int64_t bytes) {
    if (!p || bytes < 8) return 0;
    read_ctx c = {.p = p, .words = bytes / 8};
    c.per_task = EK_MAX(4096, (c.words / (ek_threads() * 8) + 7) / 8 * 8);
    atomic_init(&c.sum, 0);
    ek_parallel((c.words + c.per_task - 1) / c.per_task, read_task, &c);
    return atomic_load(&c.sum);
}
