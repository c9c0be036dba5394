// glibc allocator settings for the engine's large tensors (dloral_kernels.h).
#include "dloral_kernels.h"

#if defined(__GLIBC__)
#include <limits.h>
#include <malloc.h>
#endif

int dloral_keep_freed_memory(void) {
#if defined(__GLIBC__)
    return mallopt(M_MMAP_THRESHOLD, INT_MAX) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
    return 0;
#endif
}
