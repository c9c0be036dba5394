#define _GNU_SOURCE
#include "file_guard.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Everything the handlers touch is a fixed-size table of atomics and plain buffers: no
 * allocation, no locks, only async-signal-safe system calls (write, unlinkat, openat,
 * getdents64, close, nanosleep, sigaction, raise, _exit). */

enum { FREE = 0, BUSY = 1, READY = 2 };

/* --- Mapped inputs ------------------------------------------------------------------------- */

#define MAP_SLOTS 4096
static struct {
    _Atomic int state;
    _Atomic uintptr_t start, end;
    /* Read by the handler only for the mapping that faulted, which its owner keeps alive. */
    char *path;
} maps[MAP_SLOTS];

int dlg_map_add(const void *start, size_t length, const char *path) {
    char *copy = strdup(path);
    if (!copy) return -1;
    for (int i = 0; i < MAP_SLOTS; i++) {
        int expected = FREE;
        if (atomic_compare_exchange_strong(&maps[i].state, &expected, BUSY)) {
            maps[i].path = copy;
            atomic_store(&maps[i].start, (uintptr_t)start);
            atomic_store(&maps[i].end, (uintptr_t)start + length);
            atomic_store(&maps[i].state, READY);
            return i;
        }
    }
    free(copy);
    return -1;
}

char *dlg_map_path_overlapping(const void *start, size_t length) {
    uintptr_t low = (uintptr_t)start, high = low + length;
    for (int i = 0; i < MAP_SLOTS; i++) {
        if (atomic_load(&maps[i].state) != READY) continue;
        if (low < atomic_load(&maps[i].end) && high > atomic_load(&maps[i].start)) {
            const char *path = maps[i].path;
            return path ? strdup(path) : NULL;
        }
    }
    return NULL;
}

void dlg_map_remove(int slot) {
    if (slot < 0 || slot >= MAP_SLOTS) return;
    atomic_store(&maps[slot].state, BUSY);
    atomic_store(&maps[slot].start, 0);
    atomic_store(&maps[slot].end, 0);
    char *path = maps[slot].path;
    maps[slot].path = NULL;
    free(path);
    atomic_store(&maps[slot].state, FREE);
}

/* --- Temporary outputs -------------------------------------------------------------------- */

#define TEMP_SLOTS 256
#define TEMP_PATH 4096
static struct {
    _Atomic int state;
    _Atomic unsigned generation;
    int kind;
    /* Fixed buffers, never freed: a handler racing with a removal reads stale but valid bytes,
     * and checks the generation to drop them. */
    char path[TEMP_PATH];
} temps[TEMP_SLOTS];

int dlg_temp_add(const char *path, int kind) {
    size_t n = strlen(path);
    if (n >= TEMP_PATH) return -1;
    for (int i = 0; i < TEMP_SLOTS; i++) {
        int expected = FREE;
        if (atomic_compare_exchange_strong(&temps[i].state, &expected, BUSY)) {
            atomic_fetch_add(&temps[i].generation, 1);
            memcpy(temps[i].path, path, n + 1);
            temps[i].kind = kind;
            atomic_store(&temps[i].state, READY);
            return i;
        }
    }
    return -1;
}

void dlg_temp_remove(int slot) {
    if (slot < 0 || slot >= TEMP_SLOTS) return;
    atomic_store(&temps[slot].state, BUSY);
    atomic_fetch_add(&temps[slot].generation, 1);
    atomic_store(&temps[slot].state, FREE);
}

/* Copies slot i's path if it is registered and unchanged while copied; its kind, or -1. */
static int temp_snapshot(int i, char *out) {
    if (atomic_load(&temps[i].state) != READY) return -1;
    unsigned generation = atomic_load(&temps[i].generation);
    int kind = temps[i].kind;
    memcpy(out, temps[i].path, TEMP_PATH);
    out[TEMP_PATH - 1] = 0;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&temps[i].state) != READY || atomic_load(&temps[i].generation) != generation) return -1;
    return kind;
}

static int temporary_folder_open(void) {
    char path[TEMP_PATH];
    for (int i = 0; i < TEMP_SLOTS; i++) {
        if (temp_snapshot(i, path) == DLG_TEMP_FOLDER) return 1;
    }
    return 0;
}

int dlg_is_final_destination(const char *destination) {
    char path[TEMP_PATH];
    for (int i = 0; i < TEMP_SLOTS; i++) {
        int kind = temp_snapshot(i, path);
        if (kind == DLG_TEMP_FOLDER) return 0;
        if (kind == DLG_SCRATCH && strcmp(path, destination) == 0) return 0;
    }
    return 1;
}

/* --- Removal, async-signal-safe ----------------------------------------------------------- */

#ifdef __linux__
struct dirent64_raw {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};
#endif

static void sleep_ms(long ms) {
    struct timespec t = {0, ms * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

/* Removes `name` under `dirfd` with everything in it (no symlink is followed). */
static void remove_tree(int dirfd, const char *name, int depth) {
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return;
    if (depth > 16) return;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
#ifdef __linux__
    char buffer[2048] __attribute__((aligned(8)));
    for (int pass = 0; pass < 64; pass++) {
        lseek(fd, 0, SEEK_SET);
        int seen = 0;
        for (;;) {
            long n = syscall(SYS_getdents64, fd, buffer, sizeof buffer);
            if (n <= 0) break;
            for (long at = 0; at < n;) {
                struct dirent64_raw *entry = (struct dirent64_raw *)(buffer + at);
                at += entry->d_reclen;
                if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
                seen++;
                remove_tree(fd, entry->d_name, depth + 1);
            }
        }
        if (seen == 0) break;
    }
#endif
    close(fd);
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

/* Removes every registered temporary output (nothing new is being created: see
 * wait_for_creators); a folder is retried in case a removal races with a rename inside it. */
static void remove_temporaries(void) {
    static char path[TEMP_PATH];  /* only the one exiting handler gets here */
    for (int i = 0; i < TEMP_SLOTS; i++) {
        int kind = temp_snapshot(i, path);
        if (kind == DLG_TEMP_FILE || kind == DLG_SCRATCH) unlink(path);
    }
    for (int i = 0; i < TEMP_SLOTS; i++) {
        if (temp_snapshot(i, path) != DLG_TEMP_FOLDER) continue;
        for (int attempt = 0; attempt < 200; attempt++) {
            remove_tree(AT_FDCWD, path, 0);
            struct stat info;
            if (lstat(path, &info) != 0 && errno == ENOENT) break;
            sleep_ms(2);
        }
    }
}

/* --- Messages ----------------------------------------------------------------------------- */

static char tool_name[64] = "dloral";

static void put(const char *text, size_t n) {
    while (n > 0) {
        ssize_t w = write(2, text, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        text += w;
        n -= (size_t)w;
    }
}

static void puts_raw(const char *text) { put(text, strlen(text)); }

/* Writes a file name with control bytes escaped, so it cannot rewrite the terminal. */
static void put_escaped(const char *text) {
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            char escape[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
            put(escape, 4);
        } else {
            put((const char *)p, 1);
        }
    }
}

/* --- Phases ------------------------------------------------------------------------------- */

enum { WORKING = 0, COMMITTING = 1, COMMITTED = 2, EXITING = 3, FINISHING = 4 };
static _Atomic int phase = WORKING;
static _Atomic int pending_signal = 0;

static void wait_for_creators(void);

static void wait_forever(void) {
    for (;;) pause();
}

/* Outputs published one by one inside a longer run (dlg_commit_end(0) outside a temporary
 * folder, e.g. dloral-run's frames): they stay on an interrupt, and the message says so. */
static _Atomic int kept_outputs = 0;

static void put_count(int n) {
    char digits[16];
    int k = 0;
    do { digits[k++] = (char)('0' + n % 10); n /= 10; } while (n > 0 && k < 15);
    while (k > 0) put(&digits[--k], 1);
}

static void exit_interrupted(int sig) {
    wait_for_creators();
    remove_temporaries();
    puts_raw(tool_name);
    int kept = atomic_load(&kept_outputs);
    if (kept == 0) {
        puts_raw(": interrupted; no output written\n");
    } else {
        puts_raw(": interrupted; the ");
        put_count(kept);
        puts_raw(kept == 1 ? " output finished before it stays" : " outputs finished before it stay");
        puts_raw(", the one in progress was removed\n");
    }
    _exit(128 + sig);
}

/* Threads between dlg_create_begin and dlg_create_end: the exiting handler waits for them, so
 * nothing is created after it has removed the temporaries. */
static _Atomic int creating = 0;
static __thread sigset_t create_saved_mask;

void dlg_create_begin(void) {
    /* An interrupt on this thread would wait for this very section: keep it on another. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &create_saved_mask);
    atomic_fetch_add(&creating, 1);
    if (atomic_load(&phase) == EXITING) {
        atomic_fetch_sub(&creating, 1);
        wait_forever();
    }
}

void dlg_create_end(void) {
    atomic_fetch_sub(&creating, 1);
    pthread_sigmask(SIG_SETMASK, &create_saved_mask, NULL);
}

/* Called once the phase is EXITING: no new section starts; waits (at most ~5 s) for the open ones. */
static void wait_for_creators(void) {
    for (int i = 0; i < 2500 && atomic_load(&creating) > 0; i++) sleep_ms(2);
}

void dlg_commit_begin(void) {
    for (;;) {
        int p = atomic_load(&phase);
        if (p == EXITING) wait_forever();
        if (p != WORKING) return;  /* already published (or finishing): nothing to defer */
        if (atomic_compare_exchange_strong(&phase, &p, COMMITTING)) return;
    }
}

void dlg_commit_end(int final_output) {
    if (!final_output && !temporary_folder_open()) atomic_fetch_add(&kept_outputs, 1);
    int p = COMMITTING;
    if (!atomic_compare_exchange_strong(&phase, &p, final_output ? COMMITTED : WORKING)) return;
    if (final_output) return;
    int sig = atomic_exchange(&pending_signal, 0);
    if (sig) {
        int w = WORKING;
        if (atomic_compare_exchange_strong(&phase, &w, EXITING)) exit_interrupted(sig);
        wait_forever();
    }
}

void dlg_finish(void) {
    for (;;) {
        int p = atomic_load(&phase);
        if (p == EXITING) wait_forever();
        if (p == FINISHING) return;
        if (atomic_compare_exchange_strong(&phase, &p, FINISHING)) return;
    }
}

/* --- Handlers ----------------------------------------------------------------------------- */

static void on_interrupt(int sig) {
    int saved = errno;
    /* Stored before reading the phase: a commit ending concurrently then sees it. */
    atomic_store(&pending_signal, sig);
    for (;;) {
        int p = atomic_load(&phase);
        if (p != WORKING) break;  /* committing: deferred; published, finishing or exiting: ignored */
        if (atomic_compare_exchange_strong(&phase, &p, EXITING)) exit_interrupted(sig);
    }
    errno = saved;
}

static struct sigaction previous_bus, previous_segv;

static void on_fault(int sig, siginfo_t *info, void *context) {
    (void)context;
    int saved = errno;
    uintptr_t address = (uintptr_t)info->si_addr;
    int slot = -1;
    /* Raised by the hardware (not sent with kill(2)); a write to the read-only mapping
     * (SEGV_ACCERR) is a bug, not a changed file. */
    if (info->si_code > 0 && !(sig == SIGSEGV && info->si_code == SEGV_ACCERR)) {
        for (int i = 0; i < MAP_SLOTS; i++) {
            if (atomic_load(&maps[i].state) != READY) continue;
            if (address >= atomic_load(&maps[i].start) && address < atomic_load(&maps[i].end)) {
                slot = i;
                break;
            }
        }
    }
    if (slot < 0) {
        /* Not a mapped input: the previous action handles it, as if we were not here. */
        sigaction(sig, sig == SIGBUS ? &previous_bus : &previous_segv, NULL);
        if (info->si_code <= 0) raise(sig);
        errno = saved;
        return;  /* a hardware fault recurs at once, now with the previous action */
    }
    for (;;) {
        int p = atomic_load(&phase);
        if (p == EXITING) wait_forever();
        if (atomic_compare_exchange_strong(&phase, &p, EXITING)) break;
    }
    wait_for_creators();
    remove_temporaries();
    puts_raw(tool_name);
    puts_raw(": error: ");
    put_escaped(maps[slot].path);
    puts_raw(": changed while being read (the file shrank or became unreadable while it was mapped; "
             "make sure nothing else writes to it, then run again)\n");
    _exit(2);
}

static _Atomic int installed = 0, interrupts_installed = 0;

void dlg_install(const char *tool, int handle_interrupts) {
    if (!atomic_exchange(&installed, 1)) {
        size_t n = strlen(tool);
        if (n >= sizeof tool_name) n = sizeof tool_name - 1;
        memcpy(tool_name, tool, n);
        tool_name[n] = 0;

        /* An alternate stack for the main thread, so the handler still runs if the fault is a
         * stack overflow (which it passes on to the previous action). */
        size_t size = 256 * 1024;
        void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (stack != MAP_FAILED) {
            stack_t alt = {.ss_sp = stack, .ss_size = size, .ss_flags = 0};
            sigaltstack(&alt, NULL);
        }

        struct sigaction fault;
        memset(&fault, 0, sizeof fault);
        fault.sa_sigaction = on_fault;
        fault.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&fault.sa_mask);
        sigaddset(&fault.sa_mask, SIGINT);
        sigaddset(&fault.sa_mask, SIGTERM);
        sigaddset(&fault.sa_mask, SIGHUP);
        sigaction(SIGBUS, &fault, &previous_bus);
        sigaction(SIGSEGV, &fault, &previous_segv);
        sigset_t unblock;
        sigemptyset(&unblock);
        sigaddset(&unblock, SIGBUS);
        sigaddset(&unblock, SIGSEGV);
        pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);

        /* Past a file-size limit, write(2) fails with EFBIG (reported, cleaned up) rather than
         * the process dying with SIGXFSZ. */
        signal(SIGXFSZ, SIG_IGN);
        /* Likewise a write to a closed pipe (stdout piped into `head`, a closed stderr) fails with
         * EPIPE and takes the normal error path, which removes temporary outputs, instead of
         * SIGPIPE killing the process with them left behind. */
        signal(SIGPIPE, SIG_IGN);
    }
    if (handle_interrupts && !atomic_exchange(&interrupts_installed, 1)) {
        struct sigaction interrupt;
        memset(&interrupt, 0, sizeof interrupt);
        interrupt.sa_handler = on_interrupt;
        interrupt.sa_flags = SA_RESTART | SA_ONSTACK;
        sigemptyset(&interrupt.sa_mask);
        sigaddset(&interrupt.sa_mask, SIGINT);
        sigaddset(&interrupt.sa_mask, SIGTERM);
        sigaddset(&interrupt.sa_mask, SIGHUP);
        sigaction(SIGINT, &interrupt, NULL);
        sigaction(SIGTERM, &interrupt, NULL);
        /* A closed terminal (SIGHUP) is an interrupt like the others: exit 129, outputs removed. */
        sigaction(SIGHUP, &interrupt, NULL);
        /* A parent may hand us these blocked (test harnesses do); threads created from now on
         * inherit this thread's mask. */
        sigset_t unblock;
        sigemptyset(&unblock);
        sigaddset(&unblock, SIGINT);
        sigaddset(&unblock, SIGTERM);
        sigaddset(&unblock, SIGHUP);
        pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
    }
}

/* --- renameat2 ---------------------------------------------------------------------------- */

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static int rename2(const char *from, const char *to, unsigned flags) {
#if defined(__linux__) && defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
#else
    (void)from; (void)to; (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

int dlg_rename_exchange(const char *from, const char *to) { return rename2(from, to, RENAME_EXCHANGE); }
int dlg_rename_noreplace(const char *from, const char *to) { return rename2(from, to, RENAME_NOREPLACE); }
