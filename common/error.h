/*
 * error.h - the one error type of the project.
 *
 * Every fallible function returns rlhf_err_t and puts results in
 * out-parameters. The table below generates the enum and rlhf_strerror().
 * Decoders of outside input additionally write a human sentence naming the
 * field and the fix into a caller buffer (char *err, size_t errlen).
 */
#ifndef RLHF_ERROR_H
#define RLHF_ERROR_H

#include <stddef.h>

#define RLHF_ERRNO_MAP(X)                                                                                              \
    X(OK, "success")                                                                                                   \
    X(NOMEM, "out of memory")                                                                                          \
    X(IO, "input/output error")                                                                                        \
    X(INVAL, "invalid argument")                                                                                       \
    X(FORMAT, "malformed input")                                                                                       \
    X(RANGE, "value out of range")                                                                                     \
    X(NOTFOUND, "not found")                                                                                           \
    X(MISMATCH, "shape or type mismatch")                                                                              \
    X(TRUNCATED, "input truncated")                                                                                    \
    X(CHECKSUM, "checksum mismatch")                                                                                   \
    X(UNSUPPORTED, "unsupported")

typedef enum {
#define RLHF__ERR_ENUM(name, msg) RLHF_E##name,
    RLHF_ERRNO_MAP(RLHF__ERR_ENUM)
#undef RLHF__ERR_ENUM
        RLHF_E__COUNT
} rlhf_err_t;

#define RLHF_OK RLHF_EOK

/* Static string for an error code; never NULL. */
const char *rlhf_strerror(rlhf_err_t e);

/* printf into err (if non-NULL) and return code; for one-line error reports. */
rlhf_err_t rlhf_seterr(char *err, size_t errlen, rlhf_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
