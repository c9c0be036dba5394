#ifndef CLIBJPEG_SHIM_H
#define CLIBJPEG_SHIM_H

/* jpeglib.h uses FILE and size_t without including their headers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

/*
 * Glue for Swift: libjpeg reports errors through error_exit, whose default calls exit(), and
 * Swift cannot call setjmp. Each entry point here sets its own setjmp (static inline functions
 * compiled by the importer); error_exit longjmps back to it with libjpeg's message text.
 *
 * The decoding settings are libjpeg's defaults with RGB output (ISLOW integer IDCT, fancy
 * upsampling, block smoothing), which is what Pillow asks of the same library for
 * Image.open(f).convert("RGB"): the bytes are Pillow's.
 *
 * Warnings: libjpeg reports damaged data (a truncated file, a bad Huffman code, bytes before a
 * marker) as a warning and carries on. Pillow refuses a truncated file and decodes the rest, and
 * so does this shim (cjpeg_emit_message). Nothing is printed on stderr.
 */

/* Progressive files from encoders have about ten scans; a crafted one with thousands makes the
 * decoder redo the whole picture for each (libjpeg-turbo's own fuzzers stop at 500). */
#define CJPEG_MAX_SCANS 500

typedef struct {
    struct jpeg_error_mgr error;       /* first: libjpeg's err pointer is cast back to this */
    struct jpeg_progress_mgr progress;
    struct jpeg_decompress_struct info;
    jmp_buf jump;
    int created;                       /* jpeg_create_decompress done */
    int started;                       /* jpeg_start_decompress done */
    /* From the header. */
    unsigned width, height;
    int components;
    int color_space;                   /* J_COLOR_SPACE */
    int progressive;
    size_t buffered_bytes;             /* the whole-image coefficient buffer of a multi-scan file */
    char message[JMSG_LENGTH_MAX + 64];
} cjpeg_context;

static inline void cjpeg_error_exit(j_common_ptr info) {
    cjpeg_context *context = (cjpeg_context *)info->err;
    (*info->err->format_message)(info, context->message);
    longjmp(context->jump, 1);
}

/* Warnings as Pillow treats them: data that ends early is an error (Pillow: "image file is
 * truncated"); the rest (stray bytes between markers, a bad Huffman code libjpeg recovers from, an
 * unknown JFIF revision) is decoded through, as Pillow, which ignores libjpeg's warnings, does. */
static inline void cjpeg_emit_message(j_common_ptr info, int level) {
    if (level >= 0) return;  /* trace messages */
    if (info->err->msg_code == JWRN_JPEG_EOF) cjpeg_error_exit(info);
}

static inline void cjpeg_output_message(j_common_ptr info) { (void)info; }

static inline void cjpeg_progress(j_common_ptr info) {
    cjpeg_context *context = (cjpeg_context *)info->err;
    if (context->info.input_scan_number > CJPEG_MAX_SCANS) {
        snprintf(context->message, sizeof context->message,
                 "more than %d scans (a progressive JPEG from an encoder has about 10)", CJPEG_MAX_SCANS);
        longjmp(context->jump, 1);
    }
}

/* A context on the heap (libjpeg keeps pointers into it between calls); free with cjpeg_close.
 * NULL when out of memory. */
static inline cjpeg_context *cjpeg_new(void) {
    cjpeg_context *context = (cjpeg_context *)calloc(1, sizeof(cjpeg_context));
    return context;
}

/* Reads the header from `stream` (positioned at the file's start; the caller keeps it open
 * until cjpeg_close). Returns 0 with the header fields set, or non-zero with `message`. */
static inline int cjpeg_read_header(cjpeg_context *context, FILE *stream) {
    context->info.err = jpeg_std_error(&context->error);
    context->error.error_exit = cjpeg_error_exit;
    context->error.emit_message = cjpeg_emit_message;
    context->error.output_message = cjpeg_output_message;
    if (setjmp(context->jump)) return 1;
    jpeg_create_decompress(&context->info);
    context->created = 1;
    context->progress.progress_monitor = cjpeg_progress;
    context->info.progress = &context->progress;
    jpeg_stdio_src(&context->info, stream);
    /* TRUE: a tables-only datastream (no picture) is an error, not a return code. */
    jpeg_read_header(&context->info, TRUE);
    context->width = context->info.image_width;
    context->height = context->info.image_height;
    context->components = context->info.num_components;
    context->color_space = (int)context->info.jpeg_color_space;
    context->progressive = context->info.progressive_mode ? 1 : 0;
    context->buffered_bytes = 0;
    if (jpeg_has_multiple_scans(&context->info)) {
        /* What jdcoefct.c allocates: every block of every component, rows rounded up to the
         * component's sampling factors. The header fields are bounded (65500 pixels a
         * side, 4 components here), so this cannot overflow size_t on a 64-bit machine. */
        for (int c = 0; c < context->info.num_components; c++) {
            jpeg_component_info *component = &context->info.comp_info[c];
            size_t columns = (size_t)component->width_in_blocks + component->h_samp_factor;
            size_t rows = (size_t)component->height_in_blocks + component->v_samp_factor;
            context->buffered_bytes += columns * rows * sizeof(JBLOCK);
        }
    }
    return 0;
}

/* Decodes the picture whose header cjpeg_read_header read into `rgb` (height rows of width × 3
 * bytes). Returns 0, or non-zero with `message`. */
static inline int cjpeg_decode_rgb(cjpeg_context *context, unsigned char *rgb, size_t capacity) {
    if (setjmp(context->jump)) return 1;
    context->info.out_color_space = JCS_RGB;
    jpeg_start_decompress(&context->info);
    context->started = 1;
    size_t stride = (size_t)context->info.output_width * 3;
    if (context->info.output_components != 3 || context->info.output_width != context->width ||
        context->info.output_height != context->height ||
        stride * context->info.output_height > capacity) {
        snprintf(context->message, sizeof context->message,
                 "decodes to %u×%u×%d, not the %u×%u RGB of its header", context->info.output_width,
                 context->info.output_height, context->info.output_components, context->width, context->height);
        return 1;
    }
    while (context->info.output_scanline < context->info.output_height) {
        JSAMPROW row = rgb + (size_t)context->info.output_scanline * stride;
        if (jpeg_read_scanlines(&context->info, &row, 1) != 1) {
            snprintf(context->message, sizeof context->message, "Premature end of JPEG file");
            return 1;
        }
    }
    /* Reads up to the EOI marker: damage after the last row is still found. */
    jpeg_finish_decompress(&context->info);
    context->started = 0;
    return 0;
}

static inline void cjpeg_close(cjpeg_context *context) {
    if (!context) return;
    /* jpeg_destroy frees everything, also after an error in the middle of a decode. */
    if (context->created) jpeg_destroy_decompress(&context->info);
    free(context);
}

#endif
