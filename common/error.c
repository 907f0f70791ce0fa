/* error.c - rlhf_strerror and rlhf_seterr from the RLHF_ERRNO_MAP table. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *rlhf_strerror(rlhf_err_t e) {
    switch (e) {
#define RLHF__ERR_STR(name, msg)                                                                                       \
    case RLHF_E##name: return msg;
        RLHF_ERRNO_MAP(RLHF__ERR_STR)
#undef RLHF__ERR_STR
    default: return "unknown error";
    }
}

rlhf_err_t rlhf_seterr(char *err, size_t errlen, rlhf_err_t code, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
