/* test-crash-vfs.c: the test-only crash-simulating SQLite VFS (common/crash-vfs.h).
 *
 * A "crash" is a child process that writes through the VFS and is then killed with SIGKILL: what
 * it had not synced must be gone when the parent reads the file through the real VFS, what it
 * had synced must be there, and a database in WAL + synchronous=FULL must come back with exactly
 * the transactions whose COMMIT returned. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash-vfs.h"
#include "tap.h"

static char dir[] = "/tmp/test-crash-vfs-XXXXXX";

static char *path_in_dir(const char *name) {
        static char buf[4][512];
        static int i;
        i = (i + 1) % 4;
        snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
        return buf[i];
}

/* The bytes of a file as the kernel has them (what survives a kill -9). */
static ssize_t slurp(const char *path, unsigned char *buf, size_t size) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        ssize_t n = read(fd, buf, size);
        close(fd);
        return n;
}

static sqlite3_file *vfs_open(const char *path) {
        sqlite3_vfs *v = sqlite3_vfs_find(CRASH_VFS_NAME);
        sqlite3_file *f = calloc(1, (size_t) v->szOsFile);
        int out = 0;
        if (v->xOpen(v, path, f, SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE, &out) != SQLITE_OK)
                tap_bail("cannot open %s through the crash VFS", path);
        return f;
}

static void vfs_close(sqlite3_file *f) {
        f->pMethods->xClose(f);
        free(f);
}

static void test_unsynced_writes_vanish_synced_stay(void) {
        const char *p = path_in_dir("plain");
        unsigned char buf[64];
        int status;

        pid_t pid = fork();
        if (pid == 0) {
                sqlite3_file *f = vfs_open(p);
                f->pMethods->xWrite(f, "hello", 5, 0);
                f->pMethods->xSync(f, SQLITE_SYNC_FULL);
                f->pMethods->xWrite(f, "XY", 2, 1);
                f->pMethods->xWrite(f, " world", 6, 5);
                char back[16] = {};
                if (f->pMethods->xRead(f, back, 11, 0) != SQLITE_OK || memcmp(back, "hXYlo world", 11) != 0)
                        _exit(3);
                raise(SIGKILL); /* the power cut */
                _exit(4);
        }
        waitpid(pid, &status, 0);
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child saw its own pending writes, then died");
        ssize_t n = slurp(p, buf, sizeof(buf));
        ok(n == 5 && memcmp(buf, "hello", 5) == 0, "after the crash the file holds exactly the synced bytes (%zd)", n);

        /* A clean close is no crash: the page cache would keep what was written. */
        sqlite3_file *f = vfs_open(p);
        f->pMethods->xWrite(f, "J", 1, 0);
        n = slurp(p, buf, sizeof(buf));
        ok(n == 5 && buf[0] == 'h', "an unsynced write is not in the real file");
        vfs_close(f);
        n = slurp(p, buf, sizeof(buf));
        ok(n == 5 && memcmp(buf, "Jello", 5) == 0, "a clean close writes it back");
}

/* Random writes, truncates and syncs against a model: the VFS's view always equals the model, and
 * after each sync so does the real file. */
static void test_random_against_model(void) {
        enum { MAX = 8192, OPS = 3000 };
        const char *p = path_in_dir("model");
        static unsigned char model[MAX], got[MAX], disk[MAX];
        sqlite3_int64 size = 0;
        bool view_ok = true, disk_ok = true;
        unsigned seed = 12345;

        sqlite3_file *f = vfs_open(p);
        for (int op = 0; op < OPS && view_ok && disk_ok; op++) {
                seed = seed * 1103515245 + 12345;
                unsigned k = (seed >> 16) % 10;
                if (k < 7) {
                        int off = (int) ((seed >> 3) % (MAX - 600)), len = 1 + (int) ((seed >> 11) % 512);
                        unsigned char data[512];
                        for (int i = 0; i < len; i++)
                                data[i] = (unsigned char) (op + i);
                        f->pMethods->xWrite(f, data, len, off);
                        if (off > size)
                                memset(model + size, 0, (size_t) (off - size));
                        memcpy(model + off, data, (size_t) len);
                        if (off + len > size)
                                size = off + len;
                } else if (k < 8) {
                        sqlite3_int64 t = (sqlite3_int64) ((seed >> 5) % MAX);
                        f->pMethods->xTruncate(f, t);
                        if (t > size)
                                memset(model + size, 0, (size_t) (t - size));
                        size = t;
                } else {
                        f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
                        ssize_t n = slurp(p, disk, sizeof(disk));
                        disk_ok = n == size && memcmp(disk, model, (size_t) size) == 0;
                }
                sqlite3_int64 sz = -1;
                f->pMethods->xFileSize(f, &sz);
                memset(got, 0xAA, sizeof(got));
                int rc = size > 0 ? f->pMethods->xRead(f, got, (int) size, 0) : SQLITE_OK;
                view_ok = sz == size && rc == SQLITE_OK && memcmp(got, model, (size_t) size) == 0;
                if (view_ok && size < MAX - 10) {
                        rc = f->pMethods->xRead(f, got, 10, size);
                        view_ok = rc == SQLITE_IOERR_SHORT_READ;
                }
        }
        ok(view_ok, "the VFS's view equals the model after every operation");
        ok(disk_ok, "after each sync the real file equals the model");
        vfs_close(f);
}

/* What a crash round saw: commits the child acknowledged, whether it died of our SIGKILL (not of
 * an error of its own), whether the crash VFS wrote pending ranges back early meanwhile, and the
 * rows and integrity of the database afterwards. */
typedef struct CrashRound {
        int acked, rows;
        bool killed, wrote_back, intact;
} CrashRound;

/* A child commits transactions one at a time and reports each one after COMMIT returned ('c'),
 * and an early writeback of the crash VFS when one happened ('w'); the parent kills it after
 * kill_after commits. */
static CrashRound crash_round(const char *db, bool use_crash_vfs, unsigned writeback, const char *sync_mode,
                              int kill_after) {
        CrashRound res = {.rows = -1};
        int pfd[2], status;
        if (pipe(pfd) < 0)
                tap_bail("pipe: %m");
        unlink(db);
        char wal[600], shm[600];
        snprintf(wal, sizeof(wal), "%s-wal", db);
        snprintf(shm, sizeof(shm), "%s-shm", db);
        unlink(wal);
        unlink(shm);

        pid_t pid = fork();
        if (pid == 0) {
                unsigned long long writebacks = crash_vfs_writebacks();
                sqlite3 *h;
                char sql[256];
                close(pfd[0]);
                crash_vfs_register(writeback, (unsigned) kill_after);
                if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                    use_crash_vfs ? CRASH_VFS_NAME : NULL) != SQLITE_OK)
                        _exit(2);
                snprintf(sql, sizeof(sql),
                         "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA wal_autocheckpoint=20;"
                         "CREATE TABLE t(i INTEGER PRIMARY KEY, pad BLOB);",
                         sync_mode);
                if (sqlite3_exec(h, sql, NULL, NULL, NULL) != SQLITE_OK)
                        _exit(2);
                for (int i = 1; i < 100000; i++) {
                        snprintf(sql, sizeof(sql), "INSERT INTO t VALUES (%d, randomblob(3000))", i);
                        if (sqlite3_exec(h, sql, NULL, NULL, NULL) != SQLITE_OK)
                                _exit(2);
                        if (write(pfd[1], "c", 1) != 1)
                                _exit(2);
                        if (crash_vfs_writebacks() != writebacks && write(pfd[1], "w", 1) != 1)
                                _exit(2);
                        writebacks = crash_vfs_writebacks();
                }
                _exit(0);
        }
        close(pfd[1]);
        char c;
        while (res.acked < kill_after && read(pfd[0], &c, 1) == 1)
                c == 'c' ? res.acked++ : (res.wrote_back = true);
        kill(pid, SIGKILL);
        res.killed = waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        /* Acknowledgements already in the pipe are commits too. */
        while (read(pfd[0], &c, 1) == 1)
                c == 'c' ? res.acked++ : (res.wrote_back = true);
        close(pfd[0]);

        sqlite3 *h;
        sqlite3_stmt *st;
        if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
                return res;
        if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK) {
                res.intact = sqlite3_step(st) == SQLITE_ROW &&
                             strcmp((const char *) sqlite3_column_text(st, 0), "ok") == 0;
                sqlite3_finalize(st);
        }
        if (sqlite3_prepare_v2(h, "SELECT count(*) FROM t", -1, &st, NULL) == SQLITE_OK) {
                if (sqlite3_step(st) == SQLITE_ROW)
                        res.rows = sqlite3_column_int(st, 0);
                sqlite3_finalize(st);
        } else
                res.rows = 0; /* the table itself was never durable */
        sqlite3_close(h);
        return res;
}

static void test_wal_full_keeps_exactly_the_committed(void) {
        const char *db = path_in_dir("full.db");
        bool all_exact = true, all_intact = true, all_ran = true, wrote_back = false;
        for (int round = 0; round < 16; round++) {
                int kill_after = 5 + round * 7;
                /* Half the rounds also write random pending ranges back early (out of order). */
                CrashRound r = crash_round(db, true, round % 2 ? 40 : 0, "FULL", kill_after);
                /* The commit in flight when the kill came may have reached its fsync and be durable
                 * without its acknowledgement: rows is acked or acked + 1. */
                if (r.rows < r.acked || r.rows > r.acked + 1) {
                        all_exact = false;
                        diag("round %d: %d acknowledged commits, %d rows after the crash", round, r.acked, r.rows);
                }
                if (!r.killed || r.acked < kill_after) {
                        all_ran = false;
                        diag("round %d: %d of %d commits before the child %s", round, r.acked, kill_after,
                             r.killed ? "was killed" : "died on its own");
                }
                all_intact = all_intact && r.intact;
                wrote_back = wrote_back || (round % 2 && r.wrote_back);
        }
        ok(all_ran, "each round's child made its commits and was killed by us, not by an error of its own");
        ok(all_exact, "WAL + synchronous=FULL: every acknowledged commit survives each simulated power cut");
        ok(all_intact, "integrity_check is ok after each simulated power cut");
        ok(wrote_back, "the early-writeback rounds did write pending ranges back before the cut");
}

static void test_sync_off_loses_what_kill9_alone_keeps(void) {
        const char *db = path_in_dir("off.db");

        CrashRound r = crash_round(db, false, 0, "OFF", 30);
        ok(r.killed && r.rows >= 30 && r.rows >= r.acked,
           "default VFS, synchronous=OFF: a plain kill -9 keeps every commit (%d of %d)", r.rows, r.acked);
        r = crash_round(db, true, 0, "OFF", 30);
        ok(r.killed && r.acked >= 30 && r.rows < r.acked,
           "crash VFS, synchronous=OFF: the simulated power cut loses unsynced commits (%d of %d)", r.rows, r.acked);
        ok(r.intact, "and the database is still intact");
}

int main(void) {
        if (!mkdtemp(dir))
                tap_bail("mkdtemp: %m");
        if (crash_vfs_register(0, 1) != SQLITE_OK)
                tap_bail("cannot register the crash VFS");
        ok(sqlite3_vfs_find(CRASH_VFS_NAME) != NULL, "the crash VFS is registered");
        ok(sqlite3_vfs_find(NULL) != sqlite3_vfs_find(CRASH_VFS_NAME), "and it is not the default VFS");

        unsetenv(CRASH_VFS_ENV);
        ok(crash_vfs_from_environment() == NULL, "without ENTROPY_CRASH_VFS=1 the default VFS is used");
        setenv(CRASH_VFS_ENV, "1", 1);
        is_str(crash_vfs_from_environment(), CRASH_VFS_NAME, "with ENTROPY_CRASH_VFS=1 the crash VFS is used");

        test_unsynced_writes_vanish_synced_stay();
        test_random_against_model();
        test_wal_full_keeps_exactly_the_committed();
        test_sync_off_loses_what_kill9_alone_keeps();

        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                diag("could not remove %s", dir);
        return tap_done();
}
