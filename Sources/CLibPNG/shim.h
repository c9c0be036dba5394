#ifndef CLIBPNG_SHIM_H
#define CLIBPNG_SHIM_H

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Glue for Swift: libpng reports errors by longjmp, and Swift cannot call setjmp. The
 * setjmp-protected encode lives here, in a static inline function compiled by the importer.
 * It writes into a growable memory buffer (the caller writes that out atomically) and
 * returns 0 on success or non-zero with `message` holding libpng's error text.
 */

typedef struct {
    unsigned char *data;
    size_t size;
    size_t capacity;
    char message[256];
} cpng_buffer;

static inline void cpng_write_callback(png_structp png, png_bytep bytes, png_size_t length) {
    cpng_buffer *buffer = (cpng_buffer *)png_get_io_ptr(png);
    if (length > (size_t)-1 - buffer->size) png_error(png, "PNG too large");
    if (buffer->size + length > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 4096;
        while (capacity < buffer->size + length) capacity *= 2;
        unsigned char *grown = (unsigned char *)realloc(buffer->data, capacity);
        if (!grown) png_error(png, "out of memory");
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->size, bytes, length);
    buffer->size += length;
}

static inline void cpng_flush_callback(png_structp png) { (void)png; }

static inline void cpng_error_callback(png_structp png, png_const_charp message) {
    cpng_buffer *buffer = (cpng_buffer *)png_get_error_ptr(png);
    snprintf(buffer->message, sizeof buffer->message, "%s", message ? message : "libpng error");
    png_longjmp(png, 1);
}

static inline void cpng_warning_callback(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

/* Encodes `height` rows of `width` 8-bit RGB pixels (row-major, no padding) as a PNG into
 * `out` (zero-initialised by the caller; free its data with cpng_buffer_free). */
static inline int cpng_encode_rgb8(const unsigned char *rgb, unsigned width, unsigned height,
                                   int compression_level, cpng_buffer *out) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, out, cpng_error_callback,
                                              cpng_warning_callback);
    if (!png) {
        snprintf(out->message, sizeof out->message, "png_create_write_struct failed");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(out->message, sizeof out->message, "png_create_info_struct failed");
        return 1;
    }
    /* png and info are not modified after setjmp, so they are valid after a longjmp. */
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return 1;
    }
    png_set_write_fn(png, out, cpng_write_callback, cpng_flush_callback);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, compression_level);
    png_write_info(png, info);
    for (unsigned y = 0; y < height; y++) {
        png_write_row(png, (png_const_bytep)(rgb + (size_t)y * width * 3));
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

static inline void cpng_buffer_free(cpng_buffer *buffer) {
    free(buffer->data);
    buffer->data = NULL;
    buffer->size = 0;
    buffer->capacity = 0;
}

#endif
