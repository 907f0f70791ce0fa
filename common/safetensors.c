/*
 * safetensors.c - reader and atomic writer for the safetensors format
 * (see safetensors.h).
 *
 * The reader reads the whole file into one 64-byte aligned buffer (our
 * checkpoints are small; no mmap, so a file replaced under us cannot fault)
 * and validates the header completely before anything else looks at it.
 * The JSON header is kept alive (jansson) so metadata strings can be lent
 * out until destroy.
 *
 * What it deliberately is not: no lazy loading, no dtype conversion, no
 * big-endian hosts (the format is little-endian and so is the data we copy).
 */
#include "common/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/json_util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) // refuse larger JSON headers
#define ST_ALIGN      64                            // buffer alignment

struct safetensors {
    char *label;          // path (or "<buffer>") for error messages, owned
    uint8_t *buf;         // whole file, ST_ALIGN-aligned, owned
    size_t len;           // bytes in buf
    const uint8_t *data;  // data section = buf + 8 + header length
    size_t data_len;      // bytes in the data section
    json_t *header;       // parsed header, owned (metadata strings borrow from it)
    json_t *meta;         // borrowed from header: the __metadata__ object or NULL
    int n;                // tensors
    st_tensor_t *tensors; // (n), in header order
    int *by_name;         // (n) indices sorted by name, for binary search
};

static const char *const st_names[ST__COUNT] = {"F32", "F16", "BF16", "I64", "I32", "U8", "F64"};
static const size_t st_sizes[ST__COUNT] = {4, 2, 2, 8, 4, 1, 8};

size_t st_dtype_size(st_dtype_t d) {
    return (unsigned)d < ST__COUNT ? st_sizes[d] : 0;
}

const char *st_dtype_name(st_dtype_t d) {
    return (unsigned)d < ST__COUNT ? st_names[d] : "?";
}

rlhf_err_t st_dtype_parse(const char *name, st_dtype_t *out) {
    for (int i = 0; i < ST__COUNT; i++) {
        if (strcmp(name, st_names[i]) == 0) {
            *out = (st_dtype_t)i;
            return RLHF_OK;
        }
    }
    return RLHF_EUNSUPPORTED;
}

/* "[a,b,c]" into buf (always NUL-terminated). */
static const char *shape_str(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t at = 0;
    int w = snprintf(buf, len, "[");
    for (int i = 0; i < ndim && w >= 0; i++) {
        at += (size_t)w;
        if (at >= len) break;
        w = snprintf(buf + at, len - at, i ? ",%lld" : "%lld", (long long)shape[i]);
    }
    at = strlen(buf);
    if (at + 1 < len) snprintf(buf + at, len - at, "]");
    return buf;
}

/* Bytes of a tensor: product(shape) * size, or -1 on overflow (> SIZE_MAX/2,
 * which no file we can hold in memory reaches). Dims must be >= 0. */
static int tensor_bytes(int ndim, const int64_t *shape, size_t esize, size_t *out) {
    const uint64_t lim = (uint64_t)(SIZE_MAX / 2);
    uint64_t b = esize;
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (d != 0 && b > lim / d) return -1;
        b *= d;
    }
    *out = (size_t)b;
    return 0;
}

/* ---- reading ---- */

static void st_free(safetensors_t *st) {
    if (!st) return;
    free(st->label);
    free(st->buf);
    json_decref(st->header);
    free(st->tensors);
    free(st->by_name);
    free(st);
}

void safetensors_destroy(safetensors_t **p) {
    if (!p) return;
    st_free(*p);
    *p = NULL;
}

static uint8_t *alloc_aligned(size_t len) {
    size_t cap = (len + ST_ALIGN - 1) / ST_ALIGN * ST_ALIGN;
    if (cap == 0) cap = ST_ALIGN;
    return aligned_alloc(ST_ALIGN, cap);
}

/* qsort context-free comparators need the table: sort (index, key) pairs. */
typedef struct {
    const st_tensor_t *t;
    int i;
} st_ref_t;

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const st_ref_t *)a)->t->name, ((const st_ref_t *)b)->t->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    const st_tensor_t *x = ((const st_ref_t *)a)->t, *y = ((const st_ref_t *)b)->t;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

/* Validate and fill one tensor entry of the header. */
static rlhf_err_t parse_entry(const safetensors_t *st, const char *name, json_t *v, st_tensor_t *t, char *err,
                              size_t errlen) {
    const char *L = st->label;
    char sb[160];
    size_t nlen = strlen(name);
    if (nlen == 0) return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: a tensor has an empty name.", L);
    if (nlen >= ST_MAX_NAME)
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: tensor name '%.40s...' is %zu bytes long (limit %d).", L,
                           name, nlen, ST_MAX_NAME - 1);
    memcpy(t->name, name, nlen + 1);
    if (!json_is_object(v))
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: tensor '%s' must be a JSON object (got %s).", L, name,
                           common__json_kind(v));

    json_t *jd = json_object_get(v, "dtype");
    if (!jd) return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: tensor '%s' has no 'dtype'.", L, name);
    if (!json_is_string(jd))
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: tensor '%s' field 'dtype' must be a string (got %s).", L,
                           name, common__json_kind(jd));
    if (st_dtype_parse(json_string_value(jd), &t->dtype) != RLHF_OK)
        return rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED,
                           "%s: tensor '%s' has dtype '%.32s', which is not one of F32 F16 BF16 I64 I32 U8 F64.", L,
                           name, json_string_value(jd));

    json_t *js = json_object_get(v, "shape");
    if (!js) return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: tensor '%s' has no 'shape'.", L, name);
    if (!json_is_array(js))
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: tensor '%s' field 'shape' must be an array (got %s).", L,
                           name, common__json_kind(js));
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return rlhf_seterr(err, errlen, RLHF_EUNSUPPORTED, "%s: tensor '%s' has %zu dimensions (at most %d supported).",
                           L, name, nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *e = json_array_get(js, i);
        if (!json_is_integer(e))
            return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: tensor '%s' shape[%zu] must be an integer (got %s).", L,
                               name, i, common__json_kind(e));
        json_int_t d = json_integer_value(e);
        if (d < 0)
            return rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: tensor '%s' shape[%zu] is negative (%lld).", L, name, i,
                               (long long)d);
        t->shape[i] = (int64_t)d;
    }
    for (size_t i = nd; i < ST_MAX_DIMS; i++) t->shape[i] = 0;
    size_t want;
    if (tensor_bytes(t->ndim, t->shape, st_dtype_size(t->dtype), &want) != 0)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: tensor '%s' has shape %s, whose byte size overflows.", L,
                           name, shape_str(sb, sizeof sb, t->ndim, t->shape));

    json_t *jo = json_object_get(v, "data_offsets");
    if (!jo) return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: tensor '%s' has no 'data_offsets'.", L, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return rlhf_seterr(err, errlen, RLHF_EFORMAT,
                           "%s: tensor '%s' field 'data_offsets' must be an array of two integers [begin,end].", L,
                           name);
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return rlhf_seterr(err, errlen, RLHF_EFORMAT,
                           "%s: tensor '%s' has data_offsets [%lld,%lld]; need 0 <= begin <= end.", L, name,
                           (long long)b, (long long)e);
    if ((uint64_t)e > (uint64_t)st->data_len)
        return rlhf_seterr(err, errlen, RLHF_ETRUNCATED,
                           "%s: tensor '%s' has data_offsets [%lld,%lld] past the end of the %zu-byte data section "
                           "(file truncated or offsets wrong).",
                           L, name, (long long)b, (long long)e, st->data_len);
    t->offset = (size_t)b;
    t->nbytes = (size_t)(e - b);
    if (t->nbytes != want)
        return rlhf_seterr(err, errlen, RLHF_EFORMAT,
                           "%s: tensor '%s' has shape %s (%zu bytes of %s) but data_offsets span %zu bytes.", L, name,
                           shape_str(sb, sizeof sb, t->ndim, t->shape), want, st_dtype_name(t->dtype), t->nbytes);
    return RLHF_OK;
}

/* Validate buf[0..len) (owned by st already) and build the tensor table. */
static rlhf_err_t st_index(safetensors_t *st, char *err, size_t errlen) {
    const char *L = st->label;
    if (st->len < 8)
        return rlhf_seterr(err, errlen, RLHF_ETRUNCATED,
                           "%s: file is %zu bytes, shorter than the 8-byte header length.", L, st->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | st->buf[i];
    if (hlen > ST_MAX_HEADER)
        return rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: header length %llu exceeds the %llu-byte limit.", L,
                           (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > st->len - 8)
        return rlhf_seterr(err, errlen, RLHF_ETRUNCATED,
                           "%s: header length %llu runs past the end of the %zu-byte file (truncated).", L,
                           (unsigned long long)hlen, st->len);
    st->data = st->buf + 8 + hlen;
    st->data_len = st->len - 8 - (size_t)hlen;

    json_error_t je;
    st->header = json_loadb((const char *)st->buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!st->header)
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: header is not valid JSON (%s at byte %d).", L, je.text,
                           je.position);
    if (!json_is_object(st->header))
        return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: header must be a JSON object (got %s).", L,
                           common__json_kind(st->header));

    size_t nt = json_object_size(st->header);
    st->meta = json_object_get(st->header, "__metadata__");
    if (st->meta) {
        nt--;
        if (!json_is_object(st->meta))
            return rlhf_seterr(err, errlen, RLHF_EFORMAT, "%s: '__metadata__' must be an object (got %s).", L,
                               common__json_kind(st->meta));
        const char *k;
        json_t *v;
        json_object_foreach(st->meta, k, v) {
            if (!json_is_string(v))
                return rlhf_seterr(err, errlen, RLHF_EFORMAT,
                                   "%s: __metadata__ value for '%.80s' must be a string (got %s).", L, k,
                                   common__json_kind(v));
        }
    }
    if (nt > INT_MAX / 2) return rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: too many tensors (%zu).", L, nt);
    st->tensors = calloc(nt ? nt : 1, sizeof(*st->tensors));
    st->by_name = calloc(nt ? nt : 1, sizeof(*st->by_name));
    st_ref_t *refs = calloc(nt ? nt : 1, sizeof(*refs));
    if (!st->tensors || !st->by_name || !refs) {
        free(refs);
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory for %zu tensor entries.", L, nt);
    }

    rlhf_err_t rc = RLHF_OK;
    const char *k;
    json_t *v;
    int n = 0;
    json_object_foreach(st->header, k, v) {
        if (strcmp(k, "__metadata__") == 0) continue;
        rc = parse_entry(st, k, v, &st->tensors[n], err, errlen);
        if (rc != RLHF_OK) goto out;
        n++;
    }
    st->n = n;

    // Overlaps: sort by offset; each non-empty range must start at or after
    // the end of the previous non-empty one (empty ranges overlap nothing).
    for (int i = 0; i < n; i++) refs[i] = (st_ref_t){&st->tensors[i], i};
    qsort(refs, (size_t)n, sizeof(*refs), cmp_by_offset);
    const st_tensor_t *prev = NULL;
    for (int i = 0; i < n; i++) {
        const st_tensor_t *t = refs[i].t;
        if (t->nbytes == 0) continue;
        if (prev && t->offset < prev->offset + prev->nbytes) {
            rc = rlhf_seterr(
                err, errlen, RLHF_EFORMAT, "%s: tensors '%s' [%zu,%zu) and '%s' [%zu,%zu) overlap in the data section.",
                L, prev->name, prev->offset, prev->offset + prev->nbytes, t->name, t->offset, t->offset + t->nbytes);
            goto out;
        }
        prev = t;
    }

    for (int i = 0; i < n; i++) refs[i] = (st_ref_t){&st->tensors[i], i};
    qsort(refs, (size_t)n, sizeof(*refs), cmp_by_name);
    for (int i = 0; i < n; i++) st->by_name[i] = refs[i].i;
out:
    free(refs);
    return rc;
}

static rlhf_err_t st_new(safetensors_t **out, const char *label) {
    safetensors_t *st = calloc(1, sizeof(*st));
    if (!st) return RLHF_ENOMEM;
    st->label = strdup(label);
    if (!st->label) {
        free(st);
        return RLHF_ENOMEM;
    }
    *out = st;
    return RLHF_OK;
}

rlhf_err_t safetensors_parse(safetensors_t **out, const void *buf, size_t len, char *err, size_t errlen) {
    *out = NULL;
    safetensors_t *st = NULL;
    if (st_new(&st, "<safetensors buffer>") != RLHF_OK)
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "safetensors: out of memory.");
    st->buf = alloc_aligned(len);
    if (!st->buf) {
        st_free(st);
        return rlhf_seterr(err, errlen, RLHF_ENOMEM, "safetensors: out of memory for a %zu-byte buffer.", len);
    }
    if (len) memcpy(st->buf, buf, len);
    st->len = len;
    rlhf_err_t rc = st_index(st, err, errlen);
    if (rc != RLHF_OK) {
        st_free(st);
        return rc;
    }
    *out = st;
    return RLHF_OK;
}

rlhf_err_t safetensors_open(safetensors_t **out, const char *path, char *err, size_t errlen) {
    *out = NULL;
    safetensors_t *st = NULL;
    rlhf_err_t rc;
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot open: %s.", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot stat: %s.", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: not a regular file.", path);
        goto fail;
    }
    if ((uint64_t)sb.st_size > (uint64_t)(SIZE_MAX / 2)) {
        rc = rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: file too large to load (%lld bytes).", path,
                         (long long)sb.st_size);
        goto fail;
    }
    if (st_new(&st, path) != RLHF_OK) {
        rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory.", path);
        goto fail;
    }
    st->len = (size_t)sb.st_size;
    st->buf = alloc_aligned(st->len);
    if (!st->buf) {
        rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory for %zu bytes.", path, st->len);
        goto fail;
    }
    size_t got = 0;
    while (got < st->len) {
        ssize_t r = read(fd, st->buf + got, st->len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: read failed: %s.", path, strerror(errno));
            goto fail;
        }
        if (r == 0) break; // shrank under us: validate what we have
        got += (size_t)r;
    }
    st->len = got;
    close(fd);
    fd = -1;
    rc = st_index(st, err, errlen);
    if (rc != RLHF_OK) goto fail;
    *out = st;
    return RLHF_OK;
fail:
    if (fd >= 0) close(fd);
    st_free(st);
    return rc;
}

int safetensors_count(const safetensors_t *st) {
    return st->n;
}

const st_tensor_t *safetensors_tensor(const safetensors_t *st, int i) {
    return i >= 0 && i < st->n ? &st->tensors[i] : NULL;
}

int safetensors_index(const safetensors_t *st, const char *name) {
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->tensors[st->by_name[mid]].name);
        if (c == 0) return st->by_name[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

const st_tensor_t *safetensors_find(const safetensors_t *st, const char *name) {
    int i = safetensors_index(st, name);
    return i < 0 ? NULL : &st->tensors[i];
}

const void *safetensors_data(const safetensors_t *st, const st_tensor_t *t) {
    return st->data + t->offset;
}

const char *safetensors_meta(const safetensors_t *st, const char *key) {
    if (!st->meta) return NULL;
    return json_string_value(json_object_get(st->meta, key)); // NULL-safe
}

const char *safetensors_label(const safetensors_t *st) {
    return st->label;
}

rlhf_err_t safetensors_read_f32(const safetensors_t *st, const char *name, float *dst, size_t numel, char *err,
                                size_t errlen) {
    const st_tensor_t *t = safetensors_find(st, name);
    if (!t) return rlhf_seterr(err, errlen, RLHF_ENOTFOUND, "%s: tensor '%s' is missing.", st->label, name);
    if (t->dtype != ST_F32)
        return rlhf_seterr(err, errlen, RLHF_EMISMATCH, "%s: tensor '%s' has dtype %s, expected F32.", st->label, name,
                           st_dtype_name(t->dtype));
    if (t->nbytes / sizeof(float) != numel) {
        char sb[160];
        return rlhf_seterr(err, errlen, RLHF_EMISMATCH, "%s: tensor '%s' has shape %s (%zu elements), expected %zu.",
                           st->label, name, shape_str(sb, sizeof sb, t->ndim, t->shape), t->nbytes / sizeof(float),
                           numel);
    }
    if (numel) memcpy(dst, safetensors_data(st, t), numel * sizeof(float));
    return RLHF_OK;
}

/* ---- writing ---- */

static rlhf_err_t write_all(int fd, const void *p, size_t len, const char *path, char *err, size_t errlen) {
    const uint8_t *b = p;
    while (len > 0) {
        size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t w = write(fd, b, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return rlhf_seterr(err, errlen, RLHF_EIO, "%s: write failed: %s.", path, strerror(errno));
        b += w;
        len -= (size_t)w;
    }
    return RLHF_OK;
}

rlhf_err_t safetensors__write_atomic(const char *path, int nbuf, const void *const *bufs, const size_t *lens, char *err,
                                     size_t errlen) {
    rlhf_err_t rc = RLHF_OK;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    char *dir = malloc(plen + 2);
    int fd = -1;
    if (!tmp || !dir) {
        rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory.", path);
        goto done;
    }
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot create: %s.", tmp, strerror(errno));
        goto done;
    }
    for (int i = 0; i < nbuf && rc == RLHF_OK; i++)
        if (lens[i]) rc = write_all(fd, bufs[i], lens[i], tmp, err, errlen);
    if (rc != RLHF_OK) goto unlink_tmp;
    if (fsync(fd) != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: fsync failed: %s.", tmp, strerror(errno));
        goto unlink_tmp;
    }
    int crc = close(fd);
    fd = -1;
    if (crc != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: close failed: %s.", tmp, strerror(errno));
        goto unlink_tmp;
    }
    if (rename(tmp, path) != 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot rename from %s: %s.", path, tmp, strerror(errno));
        goto unlink_tmp;
    }
    // Make the rename durable: fsync the containing folder.
    memcpy(dir, path, plen + 1);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: cannot open folder to fsync: %s.", dir, strerror(errno));
        goto done;
    }
    if (fsync(dfd) != 0 && errno != EINVAL) // some filesystems cannot fsync folders
        rc = rlhf_seterr(err, errlen, RLHF_EIO, "%s: fsync of folder failed: %s.", dir, strerror(errno));
    close(dfd);
    goto done;
unlink_tmp:
    if (fd >= 0) close(fd);
    fd = -1;
    unlink(tmp);
done:
    if (fd >= 0) close(fd);
    free(tmp);
    free(dir);
    return rc;
}

rlhf_err_t safetensors_write(const char *path, const st_entry_t *entries, int n, const char *const *meta_keys,
                             const char *const *meta_vals, int n_meta, char *err, size_t errlen) {
    rlhf_err_t rc = RLHF_OK;
    json_t *hdr = NULL;
    char *text = NULL;
    const void **bufs = NULL;
    size_t *lens = NULL;
    char sb[160];
    if (n < 0 || n_meta < 0 || (n > 0 && !entries) || (n_meta > 0 && (!meta_keys || !meta_vals)))
        return rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: bad arguments to safetensors_write.", path);

    hdr = json_object();
    bufs = calloc((size_t)n + 2, sizeof(*bufs));
    lens = calloc((size_t)n + 2, sizeof(*lens));
    if (!hdr || !bufs || !lens) goto nomem;

    if (n_meta > 0) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(hdr, "__metadata__", meta) != 0) goto nomem;
        for (int i = 0; i < n_meta; i++) {
            if (!meta_keys[i] || !meta_vals[i]) {
                rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: metadata entry %d has a NULL key or value.", path, i);
                goto fail;
            }
            if (json_object_get(meta, meta_keys[i])) {
                rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: metadata key '%s' given twice.", path, meta_keys[i]);
                goto fail;
            }
            json_t *s = json_string(meta_vals[i]);
            if (!s) {
                rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: metadata '%s' is not valid UTF-8.", path, meta_keys[i]);
                goto fail;
            }
            if (json_object_set_new(meta, meta_keys[i], s) != 0) {
                rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: metadata key '%s' is not valid UTF-8.", path,
                                 meta_keys[i]);
                goto fail;
            }
        }
    }

    // Tensors are laid out back to back in the order given (the layout the
    // reference implementation requires: no gaps).
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_entry_t *e = &entries[i];
        size_t nl = e->name ? strlen(e->name) : 0;
        if (nl == 0 || nl >= ST_MAX_NAME || strcmp(e->name, "__metadata__") == 0) {
            rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: tensor %d has an invalid name '%.40s' (1..%d bytes).", path,
                             i, e->name ? e->name : "(null)", ST_MAX_NAME - 1);
            goto fail;
        }
        if ((unsigned)e->dtype >= ST__COUNT) {
            rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: tensor '%s' has an invalid dtype %d.", path, e->name,
                             (int)e->dtype);
            goto fail;
        }
        if (e->ndim < 0 || e->ndim > ST_MAX_DIMS) {
            rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: tensor '%s' has %d dimensions (0..%d allowed).", path,
                             e->name, e->ndim, ST_MAX_DIMS);
            goto fail;
        }
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0) {
                rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: tensor '%s' shape[%d] is negative (%lld).", path,
                                 e->name, d, (long long)e->shape[d]);
                goto fail;
            }
        }
        size_t nb;
        if (tensor_bytes(e->ndim, e->shape, st_dtype_size(e->dtype), &nb) != 0 || off + nb < off ||
            off + nb > (size_t)LLONG_MAX) {
            rc = rlhf_seterr(err, errlen, RLHF_ERANGE, "%s: tensor '%s' with shape %s is too large.", path, e->name,
                             shape_str(sb, sizeof sb, e->ndim, e->shape));
            goto fail;
        }
        if (nb > 0 && !e->data) {
            rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: tensor '%s' has no data.", path, e->name);
            goto fail;
        }
        if (json_object_get(hdr, e->name)) {
            rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: tensor name '%s' given twice.", path, e->name);
            goto fail;
        }
        json_t *shape = json_array();
        json_t *t = json_object();
        int bad = !shape || !t;
        for (int d = 0; d < e->ndim && !bad; d++)
            bad |= json_array_append_new(shape, json_integer((json_int_t)e->shape[d]));
        if (bad) {
            json_decref(shape);
            json_decref(t);
            goto nomem;
        }
        bad |= json_object_set_new(t, "dtype", json_string(st_dtype_name(e->dtype)));
        bad |= json_object_set_new(t, "shape", shape); // t owns shape from here
        bad |= json_object_set_new(t, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + nb)));
        if (bad) {
            json_decref(t);
            goto nomem;
        }
        if (json_object_set_new(hdr, e->name, t) != 0) {
            rc = rlhf_seterr(err, errlen, RLHF_EINVAL, "%s: tensor name '%.40s' is not valid UTF-8.", path, e->name);
            goto fail;
        }
        bufs[i + 2] = e->data;
        lens[i + 2] = nb;
        off += nb;
    }

    text = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text) goto nomem;
    // Pad with spaces so the data section starts 8-byte aligned.
    size_t tl = strlen(text);
    size_t hl = (8 + tl + 7) / 8 * 8 - 8;
    char *padded = realloc(text, hl + 1);
    if (!padded) goto nomem;
    text = padded;
    memset(text + tl, ' ', hl - tl);
    text[hl] = '\0';
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    bufs[0] = len8;
    lens[0] = 8;
    bufs[1] = text;
    lens[1] = hl;
    rc = safetensors__write_atomic(path, n + 2, bufs, lens, err, errlen);
    goto fail;
nomem:
    rc = rlhf_seterr(err, errlen, RLHF_ENOMEM, "%s: out of memory building the header.", path);
fail:
    json_decref(hdr);
    free(text);
    free(bufs);
    free(lens);
    return rc;
}
