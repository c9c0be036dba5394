// The one thread pool of the toolchain: the kernels' layer drivers, the engine's parallel
// sections and the file readers' hashing share it, and DLORAL_THREADS sets its size.
#ifndef DLORAL_THREAD_POOL_H
#define DLORAL_THREAD_POOL_H

#include <stddef.h>

/// Runs fn(context, t) once for every task t < tasks on the one thread pool of the kernels and
/// the engine: the calling thread and up to dloral_threads() − 1 persistent workers take the next
/// task as each finishes one; returns when all have run. A call made while the pool runs another
/// caller's tasks (from another thread, or from inside a task) runs its tasks on the calling
/// thread. The tasks must not depend on which thread runs them or in which order.
void dloral_parallel_for(size_t tasks, void (*fn)(void *context, size_t task), void *context);

/// Number of threads of the pool (dloral_parallel_for, dloral_sgemm for a large product):
/// dloral_threads_force, else DLORAL_THREADS, else the online CPUs capped at 8.
int dloral_threads(void);

/// For tests and benchmarks: makes the pool use n threads (1: the calling thread only; at most
/// 64), or with n ≤ 0 goes back to the automatic count. Results do not depend on it (see above).
/// Applies to calls that start afterwards.
void dloral_threads_force(int n);

// For C drivers that choose their own number of parts (dloral_sgemm: fewer for a small product).
// Runs fn(context, t) for every t < tasks on the calling thread and up to parts − 1 workers, each
// taking the next task as it finishes one; returns when all have run. A call that finds the pool
// busy (another caller's tasks, or a call from inside a task) runs them all on its own thread.
void dloral_thread_pool_run(size_t tasks, int parts, void (*fn)(void *context, size_t task), void *context);

#endif
