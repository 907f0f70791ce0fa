/* log.c - "[role id] message" lines on stderr (log.h). */
#include "common/log.h"

#include <stdio.h>

void log_vline(const char *role, const char *id, const char *fmt, va_list ap) {
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "[%s %s] %s\n", role, id, line);
}

void log_line(const char *role, const char *id, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vline(role, id, fmt, ap);
    va_end(ap);
}
