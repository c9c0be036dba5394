#ifndef DLORAL_FILE_GUARD_H
#define DLORAL_FILE_GUARD_H

#include <stddef.h>

/* What the process must undo or report from inside a signal handler, kept where an
 * async-signal-safe handler can reach it: memory-mapped inputs (a SIGBUS/SIGSEGV in one means
 * the file shrank or failed under us) and the temporary outputs still being written (removed
 * before exiting). Registration may allocate; the handlers never do. */

/* Installs the SIGBUS/SIGSEGV handlers (and, with handle_interrupts, SIGINT/SIGTERM/SIGHUP ones) and
 * sets the tool name that prefixes the one-line messages. Idempotent; later calls may only
 * switch interrupt handling on. */
void dlg_install(const char *tool, int handle_interrupts);

/* A read-only mapping of `path` at [start, start + length). Returns a slot for
 * dlg_map_remove, or -1 if the table is full (the mapping is then unguarded). */
int dlg_map_add(const void *start, size_t length, const char *path);
void dlg_map_remove(int slot);
/* The path (malloc'ed, for the caller to free) of a registered mapping overlapping
 * [start, start + length), or NULL. Not for signal handlers. */
char *dlg_map_path_overlapping(const void *start, size_t length);

/* Kinds of temporary outputs. */
enum {
    DLG_TEMP_FILE = 0,    /* a hidden temporary file, renamed into place when complete */
    DLG_TEMP_FOLDER = 1,  /* a hidden temporary folder (removed with its contents) */
    DLG_SCRATCH = 2,      /* a scratch file the command removes itself */
};
int dlg_temp_add(const char *path, int kind);
void dlg_temp_remove(int slot);

/* Bracket creating a temporary output (or anything inside one) and registering it. Interrupts
 * are blocked on this thread meanwhile; the exiting handler waits for open sections before
 * removing, and dlg_create_begin never returns once an interrupt is being handled. */
void dlg_create_begin(void);
void dlg_create_end(void);

/* Brackets the rename that publishes an output. Interrupts arriving in between are deferred.
 * dlg_commit_end(1): the published output is complete and final; later interrupts are ignored
 * and the command finishes normally. dlg_commit_end(0): an inner file was published (inside a
 * folder still being built); a deferred interrupt is acted upon now. */
void dlg_commit_begin(void);
void dlg_commit_end(int final_output);
/* True (1) if publishing `destination` completes the command's output: it is not a registered
 * scratch file and no temporary folder is still being built. */
int dlg_is_final_destination(const char *destination);

/* Before the process exits on its own (success or error): if an interrupt is being handled,
 * never returns, so the exit code and message are the handler's. */
void dlg_finish(void);

/* renameat2(2) with RENAME_EXCHANGE / RENAME_NOREPLACE; -1 with errno (ENOSYS, EINVAL where
 * the kernel or file system lacks it). */
int dlg_rename_exchange(const char *from, const char *to);
int dlg_rename_noreplace(const char *from, const char *to);

#endif
