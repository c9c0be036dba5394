// The benchmarks' AMX tile configuration: all eight tiles 16 rows × 64 bytes (palette 1), the
// shape of the kernels' C, A and B tiles. The process must hold the OS's grant of tile data
// (dloral_kernels_for_level("amx") asks for it).
#ifndef DLORAL_BENCH_AMX_TILES_H
#define DLORAL_BENCH_AMX_TILES_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

__attribute__((target("amx-tile"))) static inline void bench_configure_tiles(void) {
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } __attribute__((aligned(64))) cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    // GCC's tile intrinsics are inline assembly that does not declare all the memory they read:
    // the stores above must happen first.
    __asm__ volatile("" : : "r"(&cfg) : "memory");
    _tile_loadconfig(&cfg);
}

#endif
