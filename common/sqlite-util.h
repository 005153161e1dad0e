/* sqlite-util.h: process-wide SQLite settings shared by the control plane's store and the
 * worker's replay buffer. */
#pragma once

/* Call before the first sqlite3_open*() of the process (and before crash_vfs_from_environment(),
 * which initializes the library); later calls change nothing. */
void sqlite_library_configure(void);
