/* log.c: stderr logging. Under journald (JOURNAL_STREAM set) lines carry a <N> priority prefix
 * instead of a program name, so `journalctl -p` filters work without linking sd-journal here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

static int max_level = LOG_INFO;
static const char *log_ident = "entropy";

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_ident(const char *ident) {
        log_ident = ident;
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {
                [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",  [LOG_ERR] = "err",
                [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
        };
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcasecmp(s, names[i]) == 0)
                        return (int) i;
        if (strcasecmp(s, "error") == 0)
                return LOG_ERR;
        return -EINVAL;
}

static bool under_journal(void) {
        static int cached = -1;
        if (cached < 0)
                cached = getenv("JOURNAL_STREAM") != NULL;
        return cached;
}

int log_internal(int level, int error, const char *file, int line, const char *format, ...) {
        int saved_errno = errno;
        char buf[2048];
        va_list ap;

        if (level > max_level)
                return error < 0 ? error : -abs(error);

        /* %m must show the error we were given, not whatever errno happens to hold. */
        if (error != 0)
                errno = abs(error);
        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        if (under_journal())
                fprintf(stderr, "<%d>%s\n", level, buf);
        else if (max_level >= LOG_DEBUG)
                fprintf(stderr, "%s[%d]: %s (%s:%d)\n", log_ident, (int) getpid(), buf, file, line);
        else
                fprintf(stderr, "%s[%d]: %s\n", log_ident, (int) getpid(), buf);

        errno = saved_errno;
        return error < 0 ? error : -abs(error);
}
