/* crash-vfs.h: a TEST-ONLY SQLite VFS that turns a kill -9 into a power cut.
 *
 * A kill -9 leaves the kernel's page cache intact, so it never loses a write(). This VFS, a shim
 * over the default (unix) VFS, keeps every write to a database, WAL or journal file in the
 * process's memory until that file's next xSync, which applies them and fsyncs. When the
 * process is killed, whatever was not synced is gone, exactly as on a power cut that hits
 * before the disk cache was flushed. Reads see the pending writes (the process's own view is
 * unchanged). It is the method of SQLite's own crash tests (src/test6.c).
 *
 * What it models: "every write since the last fsync of that file is lost". With a writeback
 * probability (below) it also models the kernel writing some dirty pages back early, in any
 * order, so that a crash leaves an arbitrary subset of the unsynced writes on disk. What it does
 * not model: torn sectors (a write half on disk), lost directory entries (a file created or
 * renamed without a directory fsync), and a disk that lies about fsync.
 *
 * The -shm file (WAL index) and temporary files pass straight through: the WAL index is
 * shared memory, not durable state. After a crash the first connection to open the database
 * takes the exclusive "DMS" lock, truncates the -shm and rebuilds the index from the WAL on
 * disk, so nothing of the lost memory image can be trusted or survive there.
 *
 * Enabled in entropy-control's store and entropy-worker's replay buffer only when the
 * environment says ENTROPY_CRASH_VFS=1 (the fault-injection suite, tests/faults/). It changes
 * nothing but the timing of writes reaching the file: with synchronous=FULL, every committed
 * transaction is fsynced before COMMIT returns, with or without it. It is refused for
 * synchronous=NORMAL, where other processes could read a WAL index that points at frames still
 * held in memory. Optional knobs (also test-only):
 *   ENTROPY_CRASH_VFS_WRITEBACK=P   percent (0-100) chance, per write, that the VFS writes back
 *                                   a random pending range early (without fsync)
 *   ENTROPY_CRASH_VFS_SEED=N        seed of that choice (default: from the pid)
 */
#pragma once

#include <sqlite3.h>
#include <stdbool.h>

#define CRASH_VFS_NAME "entropy-crash"
#define CRASH_VFS_ENV  "ENTROPY_CRASH_VFS"

/* Registers the VFS (idempotent) over the current default VFS, not as the default. writeback_percent
 * 0..100, seed 0 for one from the pid. Returns an SQLite result code. */
int crash_vfs_register(unsigned writeback_percent, unsigned seed);

/* When ENTROPY_CRASH_VFS=1 is set: registers the VFS from the environment's knobs, logs a loud
 * warning once, and returns CRASH_VFS_NAME to pass to sqlite3_open_v2(). Otherwise NULL (the
 * default VFS). */
const char *crash_vfs_from_environment(void);

/* Counters for tests: pending bytes held in memory by all open files, and early writebacks. */
unsigned long long crash_vfs_pending_bytes(void);
unsigned long long crash_vfs_writebacks(void);
