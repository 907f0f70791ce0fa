/*
 * log.h - one line per notable event, on stderr, prefixed "[role id]".
 * Lines are written with one fprintf, so concurrent lines do not interleave.
 */
#ifndef RLHF_LOG_H
#define RLHF_LOG_H

#include <stdarg.h>

void log_line(const char *role, const char *id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void log_vline(const char *role, const char *id, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

#endif
