// The size of the VNNI weight panels, which pack_panels_vnni_vex and _evex lay out alike.
#include "kernels_internal.h"

#if defined(__x86_64__)
size_t vnni_panels_bytes(size_t n, size_t kp) {
    const size_t panels = (n + 7) / 8, groups = (kp + 3) / 4;
    return panels * groups * 32 + panels * 8 * sizeof(uint32_t) + 64;
}
#endif
