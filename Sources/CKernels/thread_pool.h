// The one thread pool of the kernels and the engine (backend/thread_pool.c; dloral_parallel_for
// in dloral_kernels.h is its public face).
#ifndef DLORAL_THREAD_POOL_H
#define DLORAL_THREAD_POOL_H

#include <stddef.h>

// Runs fn(context, t) for every t < tasks on the calling thread and up to parts − 1 workers, each
// taking the next task as it finishes one; returns when all have run. A call that finds the pool
// busy (another caller's tasks, or a call from inside a task) runs them all on its own thread.
void thread_pool_run(size_t tasks, int parts, void (*fn)(void *context, size_t task), void *context);

#endif
