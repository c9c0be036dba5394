// The persistent worker threads shared by dloral_sgemm and the engine (dloral_parallel_for): created
// lazily, sleeping on a condition variable when idle. A job is a count of independent tasks that
// the caller and the woken workers take first come, first served; its caller waits until they are
// all done. Which thread runs a task never changes its result (every task's arithmetic is fixed),
// so results do not depend on the thread count.
#include "dloral_thread_pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

// DLORAL_THREADS is capped here (and dloral_threads_force).
#define MAX_THREADS 64

static struct {
    pthread_mutex_t busy;  // held by the caller whose job the pool is running
    pthread_mutex_t lock;  // guards everything below except `next`
    pthread_cond_t wake;   // workers: a new generation was posted
    pthread_cond_t done;   // caller: active reached 0
    int workers;           // started, numbered 1…workers (the caller is part 0)
    unsigned long generation;
    int open;    // workers may still join the current job
    int active;  // workers working on it
    int parts;   // threads for this job: the caller and the workers numbered below parts
    // The current job; its context is the caller's, dereferenced only by workers that joined
    // (the caller waits for them to leave).
    void (*fn)(void *context, size_t task);
    void *context;
    size_t tasks;
    size_t next;  // next task to hand out (atomic)
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, NULL, NULL, 0, 0};

// Takes tasks of the current job until there are none left.
static void run_tasks(void (*fn)(void *context, size_t task), void *context, size_t tasks) {
    for (;;) {
        size_t task = __atomic_fetch_add(&pool.next, 1, __ATOMIC_RELAXED);
        if (task >= tasks) return;
        fn(context, task);
    }
}

static int forced_threads = 0;  // dloral_threads_force; 0 = automatic
static int auto_threads = 0;    // DLORAL_THREADS, else online CPUs capped at 8; 0 = not read yet

static int thread_count(void) {
    int n = __atomic_load_n(&forced_threads, __ATOMIC_RELAXED);
    if (n > 0) return n;
    n = __atomic_load_n(&auto_threads, __ATOMIC_RELAXED);
    if (n > 0) return n;
    const char *env = getenv("DLORAL_THREADS");
    long v = env && *env ? strtol(env, NULL, 10) : 0;
    if (v <= 0) {
        v = sysconf(_SC_NPROCESSORS_ONLN);
        if (v > 8) v = 8;
    }
    if (v < 1) v = 1;
    if (v > MAX_THREADS) v = MAX_THREADS;
    __atomic_store_n(&auto_threads, (int)v, __ATOMIC_RELAXED);
    return (int)v;
}

typedef struct {
    int index;
    unsigned long seen;
} worker_start;

static void *worker_main(void *arg) {
    worker_start start = *(worker_start *)arg;
    free(arg);
    unsigned long seen = start.seen;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        if (!pool.open || start.index >= pool.parts) continue;  // too late, or not needed
        pool.active++;
        void (*fn)(void *, size_t) = pool.fn;
        void *context = pool.context;
        size_t tasks = pool.tasks;
        pthread_mutex_unlock(&pool.lock);
        run_tasks(fn, context, tasks);
        pthread_mutex_lock(&pool.lock);
        if (--pool.active == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

// In a forked child the workers are gone: start over (the parent's locks may look held).
static void pool_after_fork_child(void) {
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.workers = 0;
    pool.open = 0;
    pool.active = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_register(void) { pthread_atfork(NULL, NULL, pool_after_fork_child); }

// Starts workers until there are `wanted` (called with pool.lock held); returns how many there are.
static int pool_grow(int wanted) {
    while (pool.workers < wanted) {
        worker_start *start = malloc(sizeof *start);
        if (!start) break;
        start->index = pool.workers + 1;
        start->seen = pool.generation;
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&thread, &attr, worker_main, start);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            free(start);
            break;
        }
        pool.workers++;
    }
    return pool.workers;
}

void dloral_thread_pool_run(size_t tasks, int parts, void (*fn)(void *context, size_t task), void *context) {
    if (parts > 1 && (size_t)parts > tasks) parts = (int)tasks;
    if (parts <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        for (size_t t = 0; t < tasks; t++) fn(context, t);
        return;
    }
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&pool.lock);
    pool_grow(parts - 1);
    pool.fn = fn;
    pool.context = context;
    pool.tasks = tasks;
    __atomic_store_n(&pool.next, 0, __ATOMIC_RELAXED);
    pool.parts = parts;
    pool.open = 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    run_tasks(fn, context, tasks);

    // All tasks are taken: close the job (a worker waking now has nothing to do) and wait for
    // the workers still on theirs.
    pthread_mutex_lock(&pool.lock);
    pool.open = 0;
    while (pool.active > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pool.fn = NULL;
    pool.context = NULL;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.busy);
}

void dloral_parallel_for(size_t tasks, void (*fn)(void *context, size_t task), void *context) {
    dloral_thread_pool_run(tasks, dloral_threads(), fn, context);
}

void dloral_threads_force(int n) {
    if (n > MAX_THREADS) n = MAX_THREADS;
    __atomic_store_n(&forced_threads, n > 0 ? n : 0, __ATOMIC_RELAXED);
}

int dloral_threads(void) { return thread_count(); }
