/* sqlite-util.c: process-wide SQLite settings. */
#include <sqlite3.h>
#include <stdbool.h>

#include "sqlite-util.h"

void sqlite_library_configure(void) {
        static bool done = false;

        if (done)
                return;
        done = true;
        /* SQLite keeps memory statistics by default, taking a global mutex on every one of its
         * many allocations; nothing here reads them. Settable only before the library
         * initializes: if it already has, the call fails and the default stays. */
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
