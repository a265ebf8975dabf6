// NEON vs scalar self-test, built for aarch64 by scripts/check-neon and run under qemu-aarch64 when it is
// installed (x86 CI has no ARM CPU). Exits non-zero on any mismatch beyond the named tolerances.
#include "edge_kernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 88172645463325252ull;
static float frand(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (float)(rs >> 40) / 16777216.0f * 2 - 1; }
static int failures;

static void compare(const char *what, const float *a, const float *b, int64_t count, float tol) {
    float worst = 0, scale = 1e-30f;
    for (int64_t i = 0; i < count; i++) { float d = fabsf(a[i] - b[i]); if (d > worst || d != d) worst = d != d ? INFINITY : d; if (fabsf(b[i]) > scale) scale = fabsf(b[i]); }
    int ok = worst <= tol * scale;
    printf("%-34s max|diff| %.3g (max|ref| %.3g) %s\n", what, worst, scale, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

static void run_case(int64_t rows, int64_t cols, int64_t n, int bs, int dq) {
    int64_t nb = (rows * cols + bs - 1) / bs, bytes = (rows * cols + 1) / 2;
    uint8_t *packed = malloc(bytes), *q8 = malloc(nb);
    float *am = malloc(nb * 4), *nested = malloc(((nb + 255) / 256) * 4), map[256];
    for (int64_t i = 0; i < bytes; i++) packed[i] = (uint8_t)(frand() * 128 + 128);
    for (int64_t i = 0; i < nb; i++) { am[i] = 0.01f + 0.02f * (frand() + 1); q8[i] = (uint8_t)(frand() * 127 + 128); }
    for (int64_t i = 0; i < (nb + 255) / 256; i++) nested[i] = 0.02f;
    for (int i = 0; i < 256; i++) memcpy(&map[i], &ek_dynamic_map_bits[i], 4);
    ek_nf4_matrix w = {.packed = packed, .absmax_f32 = dq ? NULL : am, .absmax_q8 = dq ? q8 : NULL,
                       .nested_absmax = dq ? nested : NULL, .dq_map = dq ? map : NULL, .offset = 0.03f,
                       .rows = rows, .cols = cols, .blocksize = bs, .nested_blocksize = 256};
    float *x = malloc(n * cols * 4), *dy = malloc(n * rows * 4);
    for (int64_t i = 0; i < n * cols; i++) x[i] = frand();
    for (int64_t i = 0; i < n * rows; i++) dy[i] = frand();
    float *y[2][4], *dx[2];
    for (int v = 0; v < 2; v++) {
        ek_set_variant(v ? "neon" : "scalar");
        for (int m = 0; m < 4; m++) y[v][m] = calloc(n * rows, 4);
        dx[v] = calloc(n * cols, 4);
        ek_nf4_gemv(&w, x, n, cols, y[v][0], rows, 0);
        ek_nf4_gemv(&w, x, n, cols, y[v][1], rows, EK_ACT_INT8);
        ek_nf4_gemm(&w, x, n, cols, y[v][2], rows, 0);
        ek_nf4_gemm(&w, x, n, cols, y[v][3], rows, EK_GEMM_TILES);
        ek_nf4_matmul_t(&w, dy, n, rows, dx[v], cols, 0);
    }
    char name[96];
    const char *what[4] = {"gemv", "gemv-int8", "gemm", "gemm-tiles"};
    for (int m = 0; m < 4; m++) {
        snprintf(name, sizeof name, "%s %ldx%ld n=%ld bs=%d%s", what[m], (long)rows, (long)cols, (long)n, bs, dq ? " dq" : "");
        compare(name, y[1][m], y[0][m], n * rows, 1e-5f);
    }
    snprintf(name, sizeof name, "transposed %ldx%ld n=%ld", (long)rows, (long)cols, (long)n);
    compare(name, dx[1], dx[0], n * cols, 1e-5f);
}

static void run_lora_attention(void) {
    enum { IN = 96, OUT = 80, N = 5, R = 16 };
    float *a = malloc(R * IN * 4), *b = malloc(OUT * R * 4), *x = malloc(N * IN * 4), y[2][N * OUT];
    for (int i = 0; i < R * IN; i++) a[i] = frand();
    for (int i = 0; i < OUT * R; i++) b[i] = frand();
    for (int i = 0; i < N * IN; i++) x[i] = frand();
    ek_lora_slot slot = {.a = a, .b = b, .bt = NULL, .rank = R, .scale = 0.5f};
    int32_t rows[N] = {0, -1, 0, 0, 0};
    float q[2 * 64], k[7 * 32], vv[7 * 32], out[2][2 * 64];
    for (int i = 0; i < 2 * 64; i++) q[i] = frand();
    for (int i = 0; i < 7 * 32; i++) { k[i] = frand(); vv[i] = frand(); }
    ek_attn_row ar[2] = {{k, vv, 3}, {k, vv, 7}};
    for (int v = 0; v < 2; v++) {
        ek_set_variant(v ? "neon" : "scalar");
        memset(y[v], 0, sizeof y[v]);
        ek_lora_bgmv(&slot, 1, rows, x, N, IN, IN, y[v], OUT, OUT);
        ek_attention(q, 2, 64, ar, 4, 2, 16, 32, EK_DTYPE_F32, 0.25f, out[v], 64);
    }
    compare("lora bgmv r16", y[1], y[0], N * OUT, 1e-5f);
    compare("attention gqa f32", out[1], out[0], 2 * 64, 1e-5f);
}

// Half-precision LoRA storage: ranks 16 and 7, Bᵀ (64/16-wide blocks plus a tail) and B layouts.
static void run_lora_f16(void) {
    enum { IN = 99, OUT = 147, N = 3 };
    static const int ranks[2] = {16, 7};
    for (int ri = 0; ri < 2; ri++) {
        int R = ranks[ri];
        float *a = malloc(R * IN * 4), *b = malloc(OUT * R * 4), *x = malloc(N * IN * 4), y[2][2][N * OUT];
        uint16_t *a16 = malloc(R * IN * 2), *b16 = malloc(OUT * R * 2), *bt16 = malloc(OUT * R * 2);
        for (int i = 0; i < R * IN; i++) a[i] = frand();
        for (int i = 0; i < OUT * R; i++) b[i] = frand();
        for (int i = 0; i < N * IN; i++) x[i] = frand();
        ek_f32_to_f16(a, a16, R * IN);
        ek_f32_to_f16(b, b16, OUT * R);
        ek_lora_transpose_b_f16(b, OUT, R, bt16);
        int32_t rows[N] = {0, -1, 0};
        for (int layout = 0; layout < 2; layout++) {
            ek_lora_slot slot = {.rank = R, .scale = 0.5f, .dtype = EK_DTYPE_F16, .a16 = a16,
                                 .b16 = layout ? NULL : b16, .bt16 = layout ? bt16 : NULL};
            for (int v = 0; v < 2; v++) {
                ek_set_variant(v ? "neon" : "scalar");
                memset(y[layout][v], 0, sizeof y[layout][v]);
                ek_lora_bgmv(&slot, 1, rows, x, N, IN, IN, y[layout][v], OUT, OUT);
            }
            char name[64];
            snprintf(name, sizeof name, "lora bgmv f16 r%d %s", R, layout ? "bt16" : "b16");
            compare(name, y[layout][1], y[layout][0], N * OUT, 1e-5f);
        }
        free(a); free(b); free(x); free(a16); free(b16); free(bt16);
    }
}

// int8 LoRA storage (EK_DTYPE_I8): integer products with a fixed float order, so neon must equal scalar
// exactly; ranks 16 and 7, in and out not multiples of the vector widths.
static void run_lora_i8(void) {
    enum { IN = 99, OUT = 147, N = 3 };
    static const int ranks[2] = {16, 7};
    for (int ri = 0; ri < 2; ri++) {
        int R = ranks[ri];
        const int64_t lda = ek_q8_row_stride(IN);
        float *a = malloc(R * IN * 4), *b = malloc(OUT * R * 4), *x = malloc(N * IN * 4), as[16], bs[16], y[2][N * OUT];
        int8_t *a8 = malloc(R * lda), *bt8 = malloc(ek_lora_i8_bt_bytes(R, OUT));
        for (int i = 0; i < R * IN; i++) a[i] = frand();
        for (int i = 0; i < OUT * R; i++) b[i] = frand();
        for (int i = 0; i < N * IN; i++) x[i] = frand();
        ek_q8_quantize_rows(a, R, IN, IN, lda, a8, as);
        ek_lora_quantize_bt(b, R, OUT, bt8, bs);
        ek_lora_slot slot = {.rank = R, .scale = 0.5f, .dtype = EK_DTYPE_I8, .a8 = a8, .a8_scale = as, .bt8 = bt8,
                             .bt8_scale = bs, .a8_ld = lda};
        int32_t rows[N] = {0, -1, 0};
        for (int v = 0; v < 2; v++) {
            ek_set_variant(v ? "neon" : "scalar");
            memset(y[v], 0, sizeof y[v]);
            ek_lora_bgmv(&slot, 1, rows, x, N, IN, IN, y[v], OUT, OUT);
        }
        char name[64];
        snprintf(name, sizeof name, "lora bgmv int8 r%d", R);
        compare(name, y[1], y[0], N * OUT, 0.0f);
        free(a); free(b); free(x); free(a8); free(bt8);
    }
}

// f32 -> f16 (an f16 KV cache's stores): the same bits from fcvtn and from the scalar rounding, NaNs,
// ties, subnormals and overflow included.
static void run_f16_conversion(void) {
    enum { N = 4096 + 11 };
    static float x[N];
    static uint16_t h[2][N];
    const uint32_t special[] = {0x7fc00000u, 0x7f800001u, 0xffffe000u, 0x7fa02000u, 0x3f801000u, 0x3f803000u,
                                0x33000000u, 0x33400000u, 0x477fe000u, 0x477fefffu, 0x477ff000u};
    for (int i = 0; i < N; i++) x[i] = frand() * (i % 3 ? 70000.0f : 1e-4f);
    for (int i = 0; i < 11; i++) memcpy(&x[i * 37], &special[i], 4);
    for (int v = 0; v < 2; v++) {
        ek_set_variant(v ? "neon" : "scalar");
        ek_f32_to_f16(x, h[v], N);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) bad += h[0][i] != h[1][i];
    printf("%-34s %d of %d differ %s\n", "f32 -> f16", bad, N, bad ? "FAIL" : "ok");
    if (bad) failures++;
}

int main(void) {
    if (!ek_variant_supported("neon")) { printf("neon not supported on this CPU\n"); return 1; }
    printf("%s\n", ek_dispatch_description());
    run_case(65, 576, 5, 64, 1);
    run_case(17, 1536, 2, 128, 0);
    run_case(3, 128, 3, 32, 1);
    run_case(129, 576, 9, 64, 0);
    run_case(17, 65, 3, 64, 0);
    run_lora_attention();
    run_lora_f16();
    run_lora_i8();
    run_f16_conversion();
    printf("%s\n", failures ? "neon self-test FAILED" : "neon self-test passed");
    return failures ? 1 : 0;
}
