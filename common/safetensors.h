/*
 * safetensors.h - read and write the safetensors format
 * (8-byte little-endian header length N, N bytes of JSON header, raw data).
 *
 * The reader validates everything before use: header length against file
 * size, JSON shape, dtype names, shape products against byte ranges, byte
 * ranges inside the data section, no overlaps. On error it writes one
 * sentence into err naming the tensor/field and what is wrong.
 * Codes: RLHF_EIO (OS failure, with strerror), RLHF_ETRUNCATED (file shorter
 * than its header or data offsets say), RLHF_ERANGE (header over 100 MB,
 * negative dims, byte size overflow), RLHF_EUNSUPPORTED (unknown dtype, more
 * than ST_MAX_DIMS dims), RLHF_EFORMAT (anything else malformed: JSON, types,
 * sizes vs offsets, overlaps, names), RLHF_ENOMEM.
 * Tensors may leave gaps between them; they may not overlap.
 * The writer is atomic: temp file in the same folder, fsync, rename, fsync
 * of the folder.
 */
#ifndef RLHF_SAFETENSORS_H
#define RLHF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef enum { ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_U8, ST_F64, ST__COUNT } st_dtype_t;

#define ST_MAX_DIMS 4
#define ST_MAX_NAME 160

typedef struct {
    char name[ST_MAX_NAME];
    st_dtype_t dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t offset; // bytes from the start of the data section
    size_t nbytes;
} st_tensor_t;

typedef struct safetensors safetensors_t; /* opaque: file bytes + parsed table */

/* Read and validate the file at path. Caller owns *out (safetensors_destroy);
 * on error *out is NULL. */
rlhf_err_t safetensors_open(safetensors_t **out, const char *path, char *err, size_t errlen);
/* Parse from a caller buffer (copied). Same validation as open. */
rlhf_err_t safetensors_parse(safetensors_t **out, const void *buf, size_t len, char *err, size_t errlen);
void safetensors_destroy(safetensors_t **st);
/* The path given to open (or "<safetensors buffer>"), for error messages. */
const char *safetensors_label(const safetensors_t *st);

int safetensors_count(const safetensors_t *st);
/* Tensor i in header order, 0 <= i < count (NULL otherwise). Borrowed. */
const st_tensor_t *safetensors_tensor(const safetensors_t *st, int i);
/* NULL when absent. */
const st_tensor_t *safetensors_find(const safetensors_t *st, const char *name);
/* Index (for safetensors_tensor) of name, or -1 when absent. O(log n). */
int safetensors_index(const safetensors_t *st, const char *name);
/* Borrowed pointer to the tensor's bytes, valid until destroy. Data is
 * 8-byte aligned inside the owned buffer when the file's layout allows. */
const void *safetensors_data(const safetensors_t *st, const st_tensor_t *t);
/* __metadata__ string value for key, or NULL. Borrowed. */
const char *safetensors_meta(const safetensors_t *st, const char *key);

/* Convenience: find name, check dtype F32 and element count == numel,
 * copy into dst. Errors name the tensor. */
rlhf_err_t safetensors_read_f32(const safetensors_t *st, const char *name, float *dst, size_t numel, char *err,
                                size_t errlen);

typedef struct {
    const char *name;
    st_dtype_t dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; // borrowed
} st_entry_t;

/* Write entries (and metadata key/value string pairs, may be 0) to path,
 * atomically. Tensors are stored back to back in the order given; the JSON
 * header (keys sorted) is padded with spaces so the data section starts
 * 8-byte aligned. Names must be unique, 1..ST_MAX_NAME-1 bytes, and not
 * "__metadata__" (RLHF_EINVAL); OS failures are RLHF_EIO with strerror.
 * On failure the previous file at path, if any, is untouched. */
rlhf_err_t safetensors_write(const char *path, const st_entry_t *entries, int n, const char *const *meta_keys,
                             const char *const *meta_vals, int n_meta, char *err, size_t errlen);

size_t st_dtype_size(st_dtype_t d);
const char *st_dtype_name(st_dtype_t d);
/* Name ("F32", ...) to dtype; RLHF_EUNSUPPORTED for any other name. */
rlhf_err_t st_dtype_parse(const char *name, st_dtype_t *out);

/* Shared inside common/ (checkpoint.c): write the concatenation of nbuf
 * buffers to path atomically: "<path>.tmp.<pid>" in the same folder, fsync,
 * rename over path, fsync of the folder. The temp file is removed on
 * failure. RLHF_EIO with strerror(errno) on OS failures. */
rlhf_err_t safetensors__write_atomic(const char *path, int nbuf, const void *const *bufs, const size_t *lens, char *err,
                                     size_t errlen);

#endif
