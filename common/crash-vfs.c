/* crash-vfs.c: the test-only crash-simulating SQLite VFS (see crash-vfs.h).
 *
 * Each wrapped file keeps its pending writes as a sorted list of non-overlapping extents: a new
 * write trims or splits the older extents it overlaps, so every byte has at most one pending
 * value and any extent can be written back on its own. A pending truncate is remembered as the
 * lowest size the file was cut to since the last sync: bytes of the real file at or above it
 * read as zeros until a write covers them. xSync applies truncate, extents and final size, then
 * fsyncs. xClose writes pending extents back without fsync: a clean close is not a crash, and
 * the page cache would keep them. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crash-vfs.h"
#include "log.h"

#define CRASH_VFS_MAX_PENDING (64ULL * 1024 * 1024) /* per file; beyond it, write back like the kernel */

typedef struct Extent {
        sqlite3_int64 off;
        int len;
        unsigned char *data;
} Extent;

typedef struct CrashFile {
        sqlite3_file base;
        sqlite3_file *real;
        bool passthrough;     /* temp files and anything that is not durable state */
        Extent *ext;          /* sorted by off, non-overlapping */
        size_t n_ext, n_alloc;
        sqlite3_int64 trunc;  /* lowest pending truncate, or -1 */
        sqlite3_int64 size;   /* logical size while something is pending */
        bool pending;         /* ext or trunc pending: size is authoritative */
        unsigned long long pending_bytes;
} CrashFile;

static sqlite3_vfs crash_vfs;
static sqlite3_vfs *real_vfs;
static unsigned writeback_percent;
static uint64_t rng_state;
static unsigned long long total_pending, total_writebacks;

static uint64_t rng_next(void) {
        /* xorshift64*: deterministic for a seed, good enough to pick extents. */
        uint64_t x = rng_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        rng_state = x;
        return x * 2685821657736338717ULL;
}

unsigned long long crash_vfs_pending_bytes(void) {
        return __atomic_load_n(&total_pending, __ATOMIC_RELAXED);
}

unsigned long long crash_vfs_writebacks(void) {
        return __atomic_load_n(&total_writebacks, __ATOMIC_RELAXED);
}

static void account(CrashFile *f, long long delta) {
        f->pending_bytes += (unsigned long long) delta;
        __atomic_add_fetch(&total_pending, (unsigned long long) delta, __ATOMIC_RELAXED);
}

static void extent_drop(CrashFile *f, size_t i) {
        account(f, -(long long) f->ext[i].len);
        free(f->ext[i].data);
        memmove(f->ext + i, f->ext + i + 1, (f->n_ext - i - 1) * sizeof(Extent));
        f->n_ext--;
}

static void extents_clear(CrashFile *f) {
        for (size_t i = 0; i < f->n_ext; i++)
                free(f->ext[i].data);
        account(f, -(long long) f->pending_bytes);
        f->n_ext = 0;
}

static int extents_reserve(CrashFile *f, size_t n) {
        if (n <= f->n_alloc)
                return SQLITE_OK;
        size_t m = f->n_alloc ? f->n_alloc * 2 : 16;
        while (m < n)
                m *= 2;
        Extent *e = realloc(f->ext, m * sizeof(Extent));
        if (!e)
                return SQLITE_NOMEM;
        f->ext = e;
        f->n_alloc = m;
        return SQLITE_OK;
}

/* Removes [off, end) from every pending extent, splitting those that straddle it. */
static int extents_cut(CrashFile *f, sqlite3_int64 off, sqlite3_int64 end) {
        for (size_t i = 0; i < f->n_ext;) {
                Extent *e = &f->ext[i];
                sqlite3_int64 e_end = e->off + e->len;
                if (e_end <= off || e->off >= end) {
                        i++;
                        continue;
                }
                if (e->off < off && e_end > end) { /* straddles: split in two */
                        int rc = extents_reserve(f, f->n_ext + 1);
                        if (rc != SQLITE_OK)
                                return rc;
                        e = &f->ext[i];
                        int right_len = (int) (e_end - end);
                        unsigned char *right = malloc((size_t) right_len);
                        if (!right)
                                return SQLITE_NOMEM;
                        memcpy(right, e->data + (end - e->off), (size_t) right_len);
                        memmove(f->ext + i + 2, f->ext + i + 1, (f->n_ext - i - 1) * sizeof(Extent));
                        f->ext[i + 1] = (Extent){ end, right_len, right };
                        f->n_ext++;
                        account(f, -(long long) (end - off));
                        f->ext[i].len = (int) (off - f->ext[i].off);
                        return SQLITE_OK; /* extents do not overlap: nothing else can intersect */
                }
                if (e->off >= off && e_end <= end) { /* covered */
                        extent_drop(f, i);
                        continue;
                }
                if (e->off < off) { /* keep the left part */
                        account(f, -(long long) (e_end - off));
                        e->len = (int) (off - e->off);
                } else { /* keep the right part */
                        int keep = (int) (e_end - end);
                        account(f, -(long long) (end - e->off));
                        memmove(e->data, e->data + (end - e->off), (size_t) keep);
                        e->off = end;
                        e->len = keep;
                }
                i++;
        }
        return SQLITE_OK;
}

static int real_size(CrashFile *f, sqlite3_int64 *ret) {
        return f->real->pMethods->xFileSize(f->real, ret);
}

/* Before the first pending change since a sync: the logical size is the real one. */
static int begin_pending(CrashFile *f) {
        if (f->pending)
                return SQLITE_OK;
        int rc = real_size(f, &f->size);
        if (rc != SQLITE_OK)
                return rc;
        f->trunc = -1;
        f->pending = true;
        return SQLITE_OK;
}

static int apply_truncate(CrashFile *f) {
        if (f->trunc < 0)
                return SQLITE_OK;
        int rc = f->real->pMethods->xTruncate(f->real, f->trunc);
        if (rc == SQLITE_OK)
                f->trunc = -1;
        return rc;
}

static int write_back_one(CrashFile *f, size_t i) {
        int rc = apply_truncate(f);
        if (rc != SQLITE_OK)
                return rc;
        rc = f->real->pMethods->xWrite(f->real, f->ext[i].data, f->ext[i].len, f->ext[i].off);
        if (rc != SQLITE_OK)
                return rc;
        extent_drop(f, i);
        return SQLITE_OK;
}

/* Everything pending to the real file, without fsync. */
static int write_back_all(CrashFile *f) {
        int rc;
        if (!f->pending)
                return SQLITE_OK;
        rc = apply_truncate(f);
        while (rc == SQLITE_OK && f->n_ext > 0)
                rc = write_back_one(f, f->n_ext - 1);
        if (rc != SQLITE_OK)
                return rc;
        sqlite3_int64 sz;
        rc = real_size(f, &sz);
        if (rc == SQLITE_OK && sz != f->size)
                rc = f->real->pMethods->xTruncate(f->real, f->size);
        if (rc == SQLITE_OK)
                f->pending = false;
        return rc;
}

/* ---- io methods ----------------------------------------------------------------------------- */

static int cf_close(sqlite3_file *p) {
        CrashFile *f = (CrashFile *) p;
        int rc = SQLITE_OK;
        if (!f->passthrough)
                rc = write_back_all(f);
        extents_clear(f);
        free(f->ext);
        f->ext = NULL;
        f->n_alloc = 0;
        int rc2 = f->real->pMethods->xClose(f->real);
        return rc != SQLITE_OK ? rc : rc2;
}

static int cf_read(sqlite3_file *p, void *buf, int amt, sqlite3_int64 off) {
        CrashFile *f = (CrashFile *) p;
        if (f->passthrough || !f->pending)
                return f->real->pMethods->xRead(f->real, buf, amt, off);

        int rc = f->real->pMethods->xRead(f->real, buf, amt, off);
        if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ)
                return rc;
        /* The real file's bytes at or above a pending truncate are gone. */
        if (f->trunc >= 0 && off + amt > f->trunc) {
                sqlite3_int64 from = off > f->trunc ? off : f->trunc;
                memset((unsigned char *) buf + (from - off), 0, (size_t) (off + amt - from));
        }
        for (size_t i = 0; i < f->n_ext; i++) {
                const Extent *e = &f->ext[i];
                sqlite3_int64 a = e->off > off ? e->off : off;
                sqlite3_int64 b = e->off + e->len < off + amt ? e->off + e->len : off + amt;
                if (a < b)
                        memcpy((unsigned char *) buf + (a - off), e->data + (a - e->off), (size_t) (b - a));
        }
        if (off + amt > f->size) {
                sqlite3_int64 from = off > f->size ? off : f->size;
                memset((unsigned char *) buf + (from - off), 0, (size_t) (off + amt - from));
                return SQLITE_IOERR_SHORT_READ;
        }
        return SQLITE_OK;
}

static int cf_write(sqlite3_file *p, const void *buf, int amt, sqlite3_int64 off) {
        CrashFile *f = (CrashFile *) p;
        int rc;

        if (f->passthrough)
                return f->real->pMethods->xWrite(f->real, buf, amt, off);
        if (amt <= 0)
                return SQLITE_OK;
        rc = begin_pending(f);
        if (rc != SQLITE_OK)
                return rc;
        rc = extents_cut(f, off, off + amt);
        if (rc == SQLITE_OK)
                rc = extents_reserve(f, f->n_ext + 1);
        if (rc != SQLITE_OK)
                return rc;
        unsigned char *copy = malloc((size_t) amt);
        if (!copy)
                return SQLITE_NOMEM;
        memcpy(copy, buf, (size_t) amt);
        size_t i = 0;
        while (i < f->n_ext && f->ext[i].off < off)
                i++;
        memmove(f->ext + i + 1, f->ext + i, (f->n_ext - i) * sizeof(Extent));
        f->ext[i] = (Extent){ off, amt, copy };
        f->n_ext++;
        account(f, amt);
        if (off + amt > f->size)
                f->size = off + amt;

        /* The kernel may write dirty pages back whenever it likes, in any order. */
        if (writeback_percent > 0 && rng_next() % 100 < writeback_percent) {
                rc = write_back_one(f, (size_t) (rng_next() % f->n_ext));
                if (rc != SQLITE_OK)
                        return rc;
                __atomic_add_fetch(&total_writebacks, 1, __ATOMIC_RELAXED);
        }
        if (f->pending_bytes > CRASH_VFS_MAX_PENDING) {
                rc = write_back_all(f);
                if (rc != SQLITE_OK)
                        return rc;
                __atomic_add_fetch(&total_writebacks, 1, __ATOMIC_RELAXED);
        }
        return SQLITE_OK;
}

static int cf_truncate(sqlite3_file *p, sqlite3_int64 size) {
        CrashFile *f = (CrashFile *) p;
        if (f->passthrough)
                return f->real->pMethods->xTruncate(f->real, size);
        int rc = begin_pending(f);
        if (rc != SQLITE_OK)
                return rc;
        rc = extents_cut(f, size, INT64_MAX);
        if (rc != SQLITE_OK)
                return rc;
        if (f->trunc < 0 || size < f->trunc)
                f->trunc = size;
        f->size = size;
        return SQLITE_OK;
}

static int cf_sync(sqlite3_file *p, int flags) {
        CrashFile *f = (CrashFile *) p;
        if (!f->passthrough) {
                int rc = write_back_all(f);
                if (rc != SQLITE_OK)
                        return rc;
        }
        return f->real->pMethods->xSync(f->real, flags);
}

static int cf_file_size(sqlite3_file *p, sqlite3_int64 *ret) {
        CrashFile *f = (CrashFile *) p;
        if (f->passthrough || !f->pending)
                return real_size(f, ret);
        *ret = f->size;
        return SQLITE_OK;
}

static int cf_lock(sqlite3_file *p, int l) {
        CrashFile *f = (CrashFile *) p;
        return f->real->pMethods->xLock(f->real, l);
}
static int cf_unlock(sqlite3_file *p, int l) {
        CrashFile *f = (CrashFile *) p;
        return f->real->pMethods->xUnlock(f->real, l);
}
static int cf_check_reserved(sqlite3_file *p, int *ret) {
        CrashFile *f = (CrashFile *) p;
        return f->real->pMethods->xCheckReservedLock(f->real, ret);
}
static int cf_file_control(sqlite3_file *p, int op, void *arg) {
        CrashFile *f = (CrashFile *) p;
        if (op == SQLITE_FCNTL_VFSNAME) {
                /* Say so in "PRAGMA vfs_list"-style diagnostics. */
                *(char **) arg = sqlite3_mprintf("%s", CRASH_VFS_NAME);
                return SQLITE_OK;
        }
        return f->real->pMethods->xFileControl(f->real, op, arg);
}
static int cf_sector_size(sqlite3_file *p) {
        CrashFile *f = (CrashFile *) p;
        return f->real->pMethods->xSectorSize(f->real);
}
static int cf_device_characteristics(sqlite3_file *p) {
        CrashFile *f = (CrashFile *) p;
        return f->real->pMethods->xDeviceCharacteristics(f->real);
}
/* Shared memory passes through: see crash-vfs.h for why that is sound. */
static int cf_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **pp) {
        CrashFile *f = (CrashFile *) p;
        return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}
static int cf_shm_lock(sqlite3_file *p, int offset, int n, int flags) {
        CrashFile *f = (CrashFile *) p;
        return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}
static void cf_shm_barrier(sqlite3_file *p) {
        CrashFile *f = (CrashFile *) p;
        f->real->pMethods->xShmBarrier(f->real);
}
static int cf_shm_unmap(sqlite3_file *p, int delete_flag) {
        CrashFile *f = (CrashFile *) p;
        return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}
/* Never memory-map: a mapping would read the real file and miss the pending writes. */
static int cf_fetch(sqlite3_file *p, sqlite3_int64 off, int amt, void **pp) {
        (void) p;
        (void) off;
        (void) amt;
        *pp = NULL;
        return SQLITE_OK;
}
static int cf_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr) {
        CrashFile *f = (CrashFile *) p;
        if (ptr)
                return SQLITE_OK; /* cannot happen: cf_fetch hands out nothing */
        return f->real->pMethods->iVersion >= 3 ? f->real->pMethods->xUnfetch(f->real, off, NULL) : SQLITE_OK;
}

static const sqlite3_io_methods crash_io = {
        .iVersion = 3,
        .xClose = cf_close,
        .xRead = cf_read,
        .xWrite = cf_write,
        .xTruncate = cf_truncate,
        .xSync = cf_sync,
        .xFileSize = cf_file_size,
        .xLock = cf_lock,
        .xUnlock = cf_unlock,
        .xCheckReservedLock = cf_check_reserved,
        .xFileControl = cf_file_control,
        .xSectorSize = cf_sector_size,
        .xDeviceCharacteristics = cf_device_characteristics,
        .xShmMap = cf_shm_map,
        .xShmLock = cf_shm_lock,
        .xShmBarrier = cf_shm_barrier,
        .xShmUnmap = cf_shm_unmap,
        .xFetch = cf_fetch,
        .xUnfetch = cf_unfetch,
};

/* ---- vfs methods ---------------------------------------------------------------------------- */

static int cv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *p, int flags, int *out_flags) {
        CrashFile *f = (CrashFile *) p;
        (void) vfs;

        memset(f, 0, sizeof(*f));
        f->real = (sqlite3_file *) (f + 1);
        f->trunc = -1;
        /* Durable state only: the database, its WAL and its journals. */
        f->passthrough = !name || !(flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL |
                                             SQLITE_OPEN_SUPER_JOURNAL));
        int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
        if (rc != SQLITE_OK || !f->real->pMethods) {
                f->base.pMethods = NULL;
                return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
        }
        f->base.pMethods = &crash_io;
        return SQLITE_OK;
}

static int cv_delete(sqlite3_vfs *v, const char *n, int sync_dir) {
        (void) v;
        return real_vfs->xDelete(real_vfs, n, sync_dir);
}
static int cv_access(sqlite3_vfs *v, const char *n, int flags, int *ret) {
        (void) v;
        return real_vfs->xAccess(real_vfs, n, flags, ret);
}
static int cv_full_pathname(sqlite3_vfs *v, const char *n, int size, char *out) {
        (void) v;
        return real_vfs->xFullPathname(real_vfs, n, size, out);
}
static void *cv_dlopen(sqlite3_vfs *v, const char *n) {
        (void) v;
        return real_vfs->xDlOpen(real_vfs, n);
}
static void cv_dlerror(sqlite3_vfs *v, int n, char *msg) {
        (void) v;
        real_vfs->xDlError(real_vfs, n, msg);
}
static void (*cv_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void) {
        (void) v;
        return real_vfs->xDlSym(real_vfs, h, sym);
}
static void cv_dlclose(sqlite3_vfs *v, void *h) {
        (void) v;
        real_vfs->xDlClose(real_vfs, h);
}
static int cv_randomness(sqlite3_vfs *v, int n, char *out) {
        (void) v;
        return real_vfs->xRandomness(real_vfs, n, out);
}
static int cv_sleep(sqlite3_vfs *v, int us) {
        (void) v;
        return real_vfs->xSleep(real_vfs, us);
}
static int cv_current_time(sqlite3_vfs *v, double *ret) {
        (void) v;
        return real_vfs->xCurrentTime(real_vfs, ret);
}
static int cv_get_last_error(sqlite3_vfs *v, int n, char *out) {
        (void) v;
        return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}
static int cv_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *ret) {
        (void) v;
        return real_vfs->xCurrentTimeInt64(real_vfs, ret);
}

int crash_vfs_register(unsigned wb_percent, unsigned seed) {
        /* The knobs are (re)set on every call; the VFS is registered once. */
        writeback_percent = wb_percent > 100 ? 100 : wb_percent;
        rng_state = seed ? seed : (uint64_t) getpid() * 0x9E3779B97F4A7C15ULL;
        if (rng_state == 0)
                rng_state = 1;
        if (real_vfs)
                return SQLITE_OK;
        int rc = sqlite3_initialize();
        if (rc != SQLITE_OK)
                return rc;
        sqlite3_vfs *base = sqlite3_vfs_find(NULL);
        if (!base)
                return SQLITE_ERROR;
        real_vfs = base;
        crash_vfs = (sqlite3_vfs){
                .iVersion = 2,
                .szOsFile = (int) sizeof(CrashFile) + base->szOsFile,
                .mxPathname = base->mxPathname,
                .zName = CRASH_VFS_NAME,
                .xOpen = cv_open,
                .xDelete = cv_delete,
                .xAccess = cv_access,
                .xFullPathname = cv_full_pathname,
                .xDlOpen = cv_dlopen,
                .xDlError = cv_dlerror,
                .xDlSym = cv_dlsym,
                .xDlClose = cv_dlclose,
                .xRandomness = cv_randomness,
                .xSleep = cv_sleep,
                .xCurrentTime = cv_current_time,
                .xGetLastError = cv_get_last_error,
                .xCurrentTimeInt64 = cv_current_time_int64,
        };
        rc = sqlite3_vfs_register(&crash_vfs, 0);
        if (rc != SQLITE_OK)
                real_vfs = NULL;
        return rc;
}

const char *crash_vfs_from_environment(void) {
        static bool warned;
        const char *e = getenv(CRASH_VFS_ENV);

        if (!e || strcmp(e, "1") != 0)
                return NULL;
        const char *wb = getenv("ENTROPY_CRASH_VFS_WRITEBACK"), *sd = getenv("ENTROPY_CRASH_VFS_SEED");
        unsigned p = wb ? (unsigned) strtoul(wb, NULL, 10) : 0, seed = sd ? (unsigned) strtoul(sd, NULL, 10) : 0;
        if (crash_vfs_register(p, seed) != SQLITE_OK) {
                log_error("%s=1 is set but the crash-simulating VFS could not be registered; using the default VFS.",
                          CRASH_VFS_ENV);
                return NULL;
        }
        if (!warned) {
                log_warning("%s=1: SQLite writes are held in memory until fsync to simulate power cuts. This is "
                            "for the fault-injection tests only.",
                            CRASH_VFS_ENV);
                warned = true;
        }
        return CRASH_VFS_NAME;
}
