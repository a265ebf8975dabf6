// Variant selection: CPU features read once (cpuid + xgetbv on x86-64, getauxval on arm64), one
// function table chosen at start-up, EDGE_KERNELS forcing a variant, and one line describing it.
//
// x86 tiers: avx512 needs F+BW+VL+DQ with the OS saving zmm state (Skylake-SP, Ice Lake, Zen 4 and
// later; VNNI, present from Cascade Lake / Ice Lake / Zen 4, selects the dpbusd int8 kernel); avx2
// needs AVX2+FMA+F16C with ymm state saved (Haswell, Zen 1 and later). arm64: NEON is architectural;
// dotprod (sdot) is required by the neon variant's int8 kernel (Cortex-A55/A76 and later).
#define _GNU_SOURCE
#include "ek_internal.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(EK_X86)
#include <cpuid.h>
#endif
#if defined(EK_ARM64) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

typedef struct { int avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, vnni, vbmi, bf16, neon, dotprod; } ek_cpu;

static ek_cpu g_cpu;
static const ek_vtable *g_active;
static char g_line[512];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void read_cpu(ek_cpu *c) {
    memset(c, 0, sizeof(*c));
#if defined(EK_X86)
    unsigned a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return;
    int osxsave = (cx >> 27) & 1, avx = (cx >> 28) & 1;
    c->fma = (cx >> 12) & 1;
    c->f16c = (cx >> 29) & 1;
    unsigned long long xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    int ymm_os = (xcr0 & 0x6) == 0x6, zmm_os = (xcr0 & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &cx, &d)) return;
    c->avx2 = avx && ymm_os && ((b >> 5) & 1);
    if (!c->avx2) { c->fma = c->f16c = 0; }
    if (zmm_os) {
        c->avx512f = (b >> 16) & 1;
        c->avx512dq = (b >> 17) & 1;
        c->avx512bw = (b >> 30) & 1;
        c->avx512vl = (b >> 31) & 1;
        c->vnni = (cx >> 11) & 1;
        c->vbmi = (cx >> 1) & 1;
        unsigned a1, b1, c1, d1;
        if (a >= 1 && __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) c->bf16 = (a1 >> 5) & 1;
    }
#elif defined(EK_ARM64)
    c->neon = 1;
#if defined(__linux__)
    c->dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
#endif
}

static int supported(const char *name) {
    if (strcmp(name, "scalar") == 0) return 1;
    if (strcmp(name, "avx2") == 0) return ek_vtable_avx2() && g_cpu.avx2 && g_cpu.fma && g_cpu.f16c;
    if (strcmp(name, "avx512") == 0)
        return ek_vtable_avx512() && g_cpu.avx2 && g_cpu.fma && g_cpu.f16c && g_cpu.avx512f &&
               g_cpu.avx512bw && g_cpu.avx512vl && g_cpu.avx512dq;
    if (strcmp(name, "neon") == 0) return ek_vtable_neon() && g_cpu.neon && g_cpu.dotprod;
    return 0;
}

static const ek_vtable *table_named(const char *name) {
    if (strcmp(name, "scalar") == 0) return ek_vtable_scalar();
    if (strcmp(name, "avx2") == 0) return ek_vtable_avx2();
    if (strcmp(name, "avx512") == 0) return ek_vtable_avx512();
    if (strcmp(name, "neon") == 0) return ek_vtable_neon();
    return NULL;
}

static const char *best_name(void) {
    if (supported("avx512")) return "avx512";
    if (supported("avx2")) return "avx2";
    if (supported("neon")) return "neon";
    return "scalar";
}

int ek_avx512_has_vnni(void) { return g_cpu.vnni; }
int ek_avx512_has_vbmi(void) { return g_cpu.vbmi; }
int ek_avx512_has_bf16(void) { return g_cpu.bf16; }

static void init_once(void) {
    ek_tables_init();
    read_cpu(&g_cpu);
    const char *forced = getenv("EDGE_KERNELS"), *choice = best_name(), *why = "best supported";
    char note[128] = "";
    if (forced && *forced) {
        if (supported(forced)) {
            choice = forced;
            why = "forced by EDGE_KERNELS";
        } else {
            snprintf(note, sizeof note, "; EDGE_KERNELS=%.32s ignored (%s)", forced,
                     table_named(forced) ? "not supported by this CPU" : "unknown; use scalar|avx2|avx512|neon");
        }
    }
    g_active = table_named(choice);
    char feats[192];
    snprintf(feats, sizeof feats, "%s%s%s%s%s%s%s%s%s%s%s",
             g_cpu.avx2 ? " avx2" : "", g_cpu.fma ? " fma" : "", g_cpu.f16c ? " f16c" : "",
             g_cpu.avx512f ? " avx512f" : "", g_cpu.avx512bw ? " avx512bw" : "",
             g_cpu.avx512vl ? " avx512vl" : "", g_cpu.avx512dq ? " avx512dq" : "",
             g_cpu.vnni ? " avx512vnni" : "", g_cpu.bf16 ? " avx512bf16" : "", g_cpu.neon ? " neon" : "",
             g_cpu.dotprod ? " dotprod" : "");
    snprintf(g_line, sizeof g_line, "kernels: variant=%s (%s%s) cpu=[%s ] int8=%s bf16=%s",
             choice, why, note, feats[0] ? feats + 1 : "baseline",
             strcmp(choice, "avx512") == 0 ? (g_cpu.vnni ? "vnni" : "avx2-maddubs")
             : strcmp(choice, "avx2") == 0 ? "maddubs" : strcmp(choice, "neon") == 0 ? "sdot" : "scalar",
             g_active->gemm_bf16_panel ? "dpbf16" : "f32");
}

const ek_vtable *ek_active(void) {
    pthread_once(&g_once, init_once);
    return __atomic_load_n(&g_active, __ATOMIC_ACQUIRE);
}

const char *ek_variant_name(void) { return ek_active()->name; }

const char *ek_dispatch_description(void) {
    pthread_once(&g_once, init_once);
    static _Thread_local char line[640];
    snprintf(line, sizeof line, "%s threads=%d", g_line, ek_threads());
    return line;
}

int32_t ek_variant_supported(const char *name) {
    pthread_once(&g_once, init_once);
    return name ? supported(name) : 0;
}

int32_t ek_set_variant(const char *name) {
    pthread_once(&g_once, init_once);
    if (!name || !supported(name)) return EK_ERR_VARIANT;
    __atomic_store_n(&g_active, table_named(name), __ATOMIC_RELEASE);
    return EK_OK;
}

const char *ek_status_message(int32_t status) {
    switch (status) {
    case EK_OK: return "ok";
    case EK_ERR_NULL: return "a required pointer argument is NULL";
    case EK_ERR_SHAPE: return "a size argument is out of range or inconsistent with the others";
    case EK_ERR_STRIDE: return "a leading dimension is smaller than the row it must hold";
    case EK_ERR_BLOCKSIZE: return "NF4 blocksize must be a power of two in 32...4096 and nested_blocksize positive";
    case EK_ERR_ABSMAX: return "NF4 matrix needs absmax_f32, or absmax_q8 with nested_absmax and dq_map";
    case EK_ERR_ADAPTER: return "LoRA slot index out of range, or slot rank outside 1...256, or NULL A/B";
    case EK_ERR_DTYPE: return "unknown KV cache or LoRA slot dtype (use EK_DTYPE_F32 or EK_DTYPE_F16)";
    case EK_ERR_VARIANT: return "unknown kernel variant or not supported by this CPU (scalar|avx2|avx512|neon)";
    case EK_ERR_NOMEM: return "kernel scratch memory could not be allocated";
    default: return "unknown kernel status";
    }
}
