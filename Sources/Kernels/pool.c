// A persistent thread pool: threads are created once, take tasks from an atomic counter, spin for a
// short while after a job (decode issues GEMVs microseconds apart, and waking a sleeping thread costs
// tens of microseconds), then sleep on a condition variable. One job runs at a time; a caller that
// finds the pool busy runs its tasks on its own thread instead of waiting.
#define _GNU_SOURCE
#include "ek_internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>
#if defined(EK_X86)
#include <immintrin.h>
#define EK_PAUSE() _mm_pause()
#elif defined(EK_ARM64)
#define EK_PAUSE() __asm__ __volatile__("yield")
#else
#define EK_PAUSE() ((void)0)
#endif

#define EK_MAX_THREADS 256
#define EK_SPIN_NS 300000   // how long an idle worker spins before sleeping

// Job protocol: `word` packs (generation << 32 | next task index). The caller first parks the word at
// (gen+1, EK_PARKED) so no late worker of the previous job can claim a task, writes fn/ctx/ntasks, then
// publishes (gen+1, 0). A worker claims task t only by a CAS on the word of the generation it read, so
// the fn/ctx it then reads belong to that job, and the job cannot end (done < ntasks) before that task
// finishes. The caller waits for done == ntasks, not for workers to check out: a worker that was not
// scheduled in time costs nothing, the caller (or another worker) simply takes its tasks.
#define EK_PARKED 0xffffffffu

typedef struct ek_pool {
    int32_t nthreads;                 // workers including the caller (worker 0)
    pthread_t threads[EK_MAX_THREADS];
    _Atomic uint64_t word;
    _Atomic int64_t done;
    _Atomic int32_t sleepers;
    _Atomic int32_t stop;
    ek_task_fn fn;
    void *ctx;
    int64_t ntasks;
    pthread_mutex_t lock;
    pthread_cond_t wake;
} ek_pool;

static ek_pool *g_pool;
static pthread_mutex_t g_pool_lock = PTHREAD_MUTEX_INITIALIZER;   // creation / resizing
static pthread_mutex_t g_busy = PTHREAD_MUTEX_INITIALIZER;        // one job at a time
static int32_t g_requested;                                       // 0 = online cores

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Claims and runs tasks of generation gen until none are left (or the job changed).
static void run_tasks(ek_pool *p, uint32_t gen, int32_t worker) {
    for (;;) {
        uint64_t v = atomic_load_explicit(&p->word, memory_order_acquire);
        if ((uint32_t)(v >> 32) != gen) return;
        uint32_t t = (uint32_t)v;
        if (t == EK_PARKED) { EK_PAUSE(); continue; }   // the caller is filling in the job
        if ((int64_t)t >= p->ntasks) return;
        if (!atomic_compare_exchange_weak_explicit(&p->word, &v, v + 1, memory_order_acq_rel, memory_order_relaxed))
            continue;
        p->fn(p->ctx, t, worker);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

typedef struct { ek_pool *pool; int32_t worker; } ek_worker_arg;

static void *worker_main(void *argp) {
    ek_worker_arg arg = *(ek_worker_arg *)argp;
    free(argp);
    ek_pool *p = arg.pool;
    uint32_t seen = (uint32_t)(atomic_load(&p->word) >> 32);
    for (;;) {
        // Spin, then sleep, until a new generation (job) or stop.
        uint64_t start = now_ns();
        int spins = 0;
        while ((uint32_t)(atomic_load_explicit(&p->word, memory_order_acquire) >> 32) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
            EK_PAUSE();
            if (++spins % 256 == 0 && now_ns() - start > EK_SPIN_NS) {
                pthread_mutex_lock(&p->lock);
                atomic_fetch_add(&p->sleepers, 1);
                while ((uint32_t)(atomic_load(&p->word) >> 32) == seen && !atomic_load(&p->stop))
                    pthread_cond_wait(&p->wake, &p->lock);
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->lock);
            }
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = (uint32_t)(atomic_load_explicit(&p->word, memory_order_acquire) >> 32);
        run_tasks(p, seen, arg.worker);
    }
}

static int32_t online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > EK_MAX_THREADS) n = EK_MAX_THREADS;
    return (int32_t)n;
}

static void pool_destroy(ek_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int32_t i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p);
}

static ek_pool *pool_create(int32_t n) {
    ek_pool *p = calloc(1, sizeof(ek_pool));
    if (!p) return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->nthreads = 1;
    for (int32_t i = 1; i < n; i++) {
        ek_worker_arg *arg = malloc(sizeof(ek_worker_arg));
        if (!arg) break;
        arg->pool = p;
        arg->worker = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, arg) != 0) { free(arg); break; }
        p->nthreads = i + 1;
    }
    return p;
}

static ek_pool *pool_get(void) {
    ek_pool *p = __atomic_load_n(&g_pool, __ATOMIC_ACQUIRE);
    if (p) return p;
    pthread_mutex_lock(&g_pool_lock);
    if (!g_pool) {
        int32_t n = g_requested > 0 ? g_requested : online_cores();
        __atomic_store_n(&g_pool, pool_create(n), __ATOMIC_RELEASE);
    }
    p = g_pool;
    pthread_mutex_unlock(&g_pool_lock);
    return p;
}

void ek_set_threads(int32_t n) {
    if (n > EK_MAX_THREADS) n = EK_MAX_THREADS;
    pthread_mutex_lock(&g_pool_lock);
    pthread_mutex_lock(&g_busy);
    g_requested = n > 0 ? n : 0;
    ek_pool *old = g_pool;
    __atomic_store_n(&g_pool, NULL, __ATOMIC_RELEASE);
    pool_destroy(old);
    __atomic_store_n(&g_pool, pool_create(g_requested > 0 ? g_requested : online_cores()), __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_busy);
    pthread_mutex_unlock(&g_pool_lock);
}

int32_t ek_threads(void) {
    ek_pool *p = pool_get();
    return p ? p->nthreads : 1;
}

void ek_parallel_for(int64_t ntasks, ek_task_callback fn, void *ctx) { ek_parallel(ntasks, fn, ctx); }

void ek_parallel(int64_t ntasks, ek_task_fn fn, void *ctx) {
    if (ntasks <= 0) return;
    ek_pool *p = pool_get();
    if (!p || p->nthreads == 1 || ntasks == 1 || ntasks >= EK_PARKED || pthread_mutex_trylock(&g_busy) != 0) {
        for (int64_t t = 0; t < ntasks; t++) fn(ctx, t, 0);
        return;
    }
    p = g_pool;   // stable while g_busy is held
    uint32_t gen = (uint32_t)(atomic_load(&p->word) >> 32) + 1;
    atomic_store_explicit(&p->word, ((uint64_t)gen << 32) | EK_PARKED, memory_order_seq_cst);
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->word, (uint64_t)gen << 32, memory_order_seq_cst);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    run_tasks(p, gen, 0);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < ntasks) {
        EK_PAUSE();
        if (++spins > 2048) { sched_yield(); spins = 0; }
    }
    pthread_mutex_unlock(&g_busy);
}

void ek_wait_count(_Atomic int64_t *counter, int64_t target) {
    int spins = 0;
    while (atomic_load_explicit(counter, memory_order_acquire) < target) {
        EK_PAUSE();
        if (++spins > 2048) { sched_yield(); spins = 0; }
    }
}

// ---- Per-thread scratch -----------------------------------------------------------------------------
typedef struct { void *ptr[EK_SCRATCH_SLOTS]; size_t cap[EK_SCRATCH_SLOTS]; } ek_scratch_set;
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v) {
    ek_scratch_set *s = v;
    for (int i = 0; i < EK_SCRATCH_SLOTS; i++) free(s->ptr[i]);
    free(s);
}
static void scratch_key_init(void) { pthread_key_create(&g_scratch_key, scratch_free); }

void *ek_scratch(int slot, size_t bytes) {
    pthread_once(&g_scratch_once, scratch_key_init);
    ek_scratch_set *s = pthread_getspecific(g_scratch_key);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) return NULL;
        pthread_setspecific(g_scratch_key, s);
    }
    if (s->cap[slot] < bytes) {
        size_t cap = bytes < 4096 ? 4096 : bytes + bytes / 4;
        void *np = NULL;
        if (posix_memalign(&np, 64, cap) != 0) return NULL;
        free(s->ptr[slot]);
        s->ptr[slot] = np;
        s->cap[slot] = cap;
    }
    return s->ptr[slot];
}
