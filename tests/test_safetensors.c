/*
 * test_safetensors.c - the safetensors reader and atomic writer.
 *
 * Round trips every dtype bit-exactly (NaN payloads, -0, denormals, scalars,
 * empty tensors, metadata), then feeds the reader a table of corrupt files
 * and checks each is refused with the right code and a message naming the
 * offending tensor or field; every truncation point of a valid file; and a
 * seeded byte-flip fuzz (meant for the sanitizer build).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/rng.h"
#include "common/safetensors.h"

#ifndef RLHF_FIXTURES
#define RLHF_FIXTURES "tests/fixtures"
#endif

static char g_dir[64];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/rlhf_st_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void path_in(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_dir, name);
}

/* Fail with the message when rc/err do not match. sub2 may be NULL. */
static void check_refused(rlhf_err_t rc, rlhf_err_t want, const char *err, const char *sub1, const char *sub2,
                          const char *what) {
    int ok = rc == want && strstr(err, sub1) && (!sub2 || strstr(err, sub2));
    if (!ok) {
        print_error("%s: got %s (\"%s\"), want %s with '%s'%s%s\n", what, rlhf_strerror(rc), err, rlhf_strerror(want),
                    sub1, sub2 ? " and " : "", sub2 ? sub2 : "");
        fail();
    }
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_raw(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* 8-byte length, header text, data_len bytes of a pattern. */
static uint8_t *make_file(const char *hdr, size_t data_len, size_t *len) {
    size_t hl = strlen(hdr);
    *len = 8 + hl + data_len;
    uint8_t *b = malloc(*len + 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, hdr, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)(i * 37 + 1);
    return b;
}

/* ---- round trip ---- */

typedef struct {
    float f32[6];
    int64_t i64[4];
    uint8_t u8[5];
    double f64[2];
    uint16_t bf16[3];
    uint16_t f16[2];
    int32_t i32;
} payload_t;

static void fill_payload(payload_t *p) {
    uint32_t nan_payload = 0x7fc12345u, denorm = 0x00000001u;
    memcpy(&p->f32[0], &nan_payload, 4);
    p->f32[1] = -0.0f;
    memcpy(&p->f32[2], &denorm, 4);
    p->f32[3] = INFINITY;
    p->f32[4] = 1.0f / 3.0f;
    p->f32[5] = -1e30f;
    p->i64[0] = INT64_MIN;
    p->i64[1] = INT64_MAX;
    p->i64[2] = 0;
    p->i64[3] = -1;
    for (int i = 0; i < 5; i++) p->u8[i] = (uint8_t)(250 + i);
    p->f64[0] = M_PI;
    p->f64[1] = -1e-310;
    p->bf16[0] = 0x3f80, p->bf16[1] = 0xffff, p->bf16[2] = 0x0001;
    p->f16[0] = 0x3c00, p->f16[1] = 0x7e01;
    p->i32 = -123456789;
}

static void make_entries(const payload_t *p, st_entry_t *e) {
    static const float none[1] = {0};
    e[0] = (st_entry_t){"f32", ST_F32, 2, {2, 3}, p->f32};
    e[1] = (st_entry_t){"u8", ST_U8, 1, {5}, p->u8}; // odd size: shifts what follows
    e[2] = (st_entry_t){"i64", ST_I64, 1, {4}, p->i64};
    e[3] = (st_entry_t){"f64", ST_F64, 4, {1, 2, 1, 1}, p->f64};
    e[4] = (st_entry_t){"bf16", ST_BF16, 1, {3}, p->bf16};
    e[5] = (st_entry_t){"f16", ST_F16, 3, {1, 1, 2}, p->f16};
    e[6] = (st_entry_t){"scalar.i32", ST_I32, 0, {0}, &p->i32};
    e[7] = (st_entry_t){"empty", ST_F32, 2, {0, 7}, none};
    e[8] = (st_entry_t){"model.layers.11.self_attn.q_proj.weight", ST_F32, 1, {1}, &p->f32[4]};
}
#define N_ENTRIES 9

static void check_matches(const safetensors_t *st, const st_entry_t *e, int n) {
    assert_int_equal(safetensors_count(st), n);
    for (int i = 0; i < n; i++) {
        const st_tensor_t *t = safetensors_find(st, e[i].name);
        assert_non_null(t);
        assert_int_equal(safetensors_index(st, e[i].name), (int)(t - safetensors_tensor(st, 0)));
        assert_string_equal(t->name, e[i].name);
        assert_int_equal(t->dtype, e[i].dtype);
        assert_int_equal(t->ndim, e[i].ndim);
        size_t nb = st_dtype_size(e[i].dtype);
        for (int d = 0; d < e[i].ndim; d++) {
            assert_int_equal(t->shape[d], e[i].shape[d]);
            nb *= (size_t)e[i].shape[d];
        }
        assert_int_equal(t->nbytes, nb);
        if (nb) assert_memory_equal(safetensors_data(st, t), e[i].data, nb);
    }
    assert_null(safetensors_find(st, "nope"));
    assert_int_equal(safetensors_index(st, "nope"), -1);
    assert_int_equal(safetensors_index(st, ""), -1);
}

static void test_round_trip(void **state) {
    (void)state;
    payload_t p;
    fill_payload(&p);
    st_entry_t e[N_ENTRIES];
    make_entries(&p, e);
    const char *mk[] = {"format", "note", "empty"};
    const char *mv[] = {"pt", "h\xc3\xa9llo \"quoted\" \\ / \n", ""};
    char path[256], err[512] = "";
    path_in(path, sizeof path, "rt.safetensors");
    assert_int_equal(safetensors_write(path, e, N_ENTRIES, mk, mv, 3, err, sizeof err), RLHF_OK);

    // No temp file left behind.
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        assert_string_equal(de->d_name, "rt.safetensors");
        files++;
    }
    closedir(d);
    assert_int_equal(files, 1);

    // Header padded so the data section starts 8-byte aligned; spaces only.
    size_t len;
    uint8_t *raw = read_file(path, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    assert_int_equal((8 + hl) % 8, 0);
    assert_int_equal(raw[8], '{');
    assert_true(8 + hl <= len);

    safetensors_t *st = NULL;
    assert_int_equal(safetensors_open(&st, path, err, sizeof err), RLHF_OK);
    check_matches(st, e, N_ENTRIES);
    assert_string_equal(safetensors_label(st), path);
    for (int i = 0; i < 3; i++) assert_string_equal(safetensors_meta(st, mk[i]), mv[i]);
    assert_null(safetensors_meta(st, "absent"));
    // Data section aligned in the owned buffer; the first tensor starts it.
    assert_int_equal((uintptr_t)safetensors_data(st, safetensors_find(st, "f32")) % 8, 0);

    float back[6];
    assert_int_equal(safetensors_read_f32(st, "f32", back, 6, err, sizeof err), RLHF_OK);
    assert_memory_equal(back, p.f32, sizeof back);
    check_refused(safetensors_read_f32(st, "f32", back, 5, err, sizeof err), RLHF_EMISMATCH, err, "'f32'", "[2,3]",
                  "read_f32 numel");
    check_refused(safetensors_read_f32(st, "i64", back, 4, err, sizeof err), RLHF_EMISMATCH, err, "'i64'", "I64",
                  "read_f32 dtype");
    check_refused(safetensors_read_f32(st, "gone", back, 4, err, sizeof err), RLHF_ENOTFOUND, err, "'gone'", path,
                  "read_f32 missing");
    safetensors_destroy(&st);
    assert_null(st);
    safetensors_destroy(&st); // idempotent

    // Same result from a caller buffer.
    assert_int_equal(safetensors_parse(&st, raw, len, err, sizeof err), RLHF_OK);
    check_matches(st, e, N_ENTRIES);
    assert_string_equal(safetensors_meta(st, "format"), "pt");
    safetensors_destroy(&st);
    free(raw);

    // No metadata, no tensors: still a valid file.
    path_in(path, sizeof path, "empty.safetensors");
    assert_int_equal(safetensors_write(path, NULL, 0, NULL, NULL, 0, err, sizeof err), RLHF_OK);
    assert_int_equal(safetensors_open(&st, path, err, sizeof err), RLHF_OK);
    assert_int_equal(safetensors_count(st), 0);
    assert_null(safetensors_meta(st, "format"));
    assert_null(safetensors_tensor(st, 0));
    safetensors_destroy(&st);
}

static void test_overwrite_and_writer_errors(void **state) {
    (void)state;
    char path[256], err[512] = "";
    path_in(path, sizeof path, "ow.safetensors");
    float a[3] = {1, 2, 3}, b[2] = {4, 5};
    st_entry_t ea = {"w", ST_F32, 1, {3}, a}, eb = {"w", ST_F32, 1, {2}, b};
    assert_int_equal(safetensors_write(path, &ea, 1, NULL, NULL, 0, err, sizeof err), RLHF_OK);
    assert_int_equal(safetensors_write(path, &eb, 1, NULL, NULL, 0, err, sizeof err), RLHF_OK);
    safetensors_t *st = NULL;
    assert_int_equal(safetensors_open(&st, path, err, sizeof err), RLHF_OK);
    assert_int_equal(safetensors_find(st, "w")->shape[0], 2);
    safetensors_destroy(&st);

    // Refused writes leave the old file as it was.
    st_entry_t dup[2] = {ea, ea};
    check_refused(safetensors_write(path, dup, 2, NULL, NULL, 0, err, sizeof err), RLHF_EINVAL, err, "'w'", "twice",
                  "duplicate names");
    char longname[ST_MAX_NAME + 8];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    st_entry_t el = {longname, ST_F32, 1, {3}, a};
    check_refused(safetensors_write(path, &el, 1, NULL, NULL, 0, err, sizeof err), RLHF_EINVAL, err, "xxxx", "name",
                  "long name");
    st_entry_t en = {"neg", ST_F32, 2, {3, -1}, a};
    check_refused(safetensors_write(path, &en, 1, NULL, NULL, 0, err, sizeof err), RLHF_EINVAL, err, "'neg'",
                  "negative", "negative dim");
    st_entry_t eh = {"huge", ST_F32, 2, {INT64_MAX, 4}, a};
    check_refused(safetensors_write(path, &eh, 1, NULL, NULL, 0, err, sizeof err), RLHF_ERANGE, err, "'huge'", NULL,
                  "huge tensor");
    st_entry_t em = {"__metadata__", ST_F32, 1, {3}, a};
    check_refused(safetensors_write(path, &em, 1, NULL, NULL, 0, err, sizeof err), RLHF_EINVAL, err, "__metadata__",
                  NULL, "reserved name");
    const char *k2[] = {"k", "k"}, *v2[] = {"1", "2"};
    check_refused(safetensors_write(path, &ea, 1, k2, v2, 2, err, sizeof err), RLHF_EINVAL, err, "'k'", NULL,
                  "duplicate metadata");
    assert_int_equal(safetensors_open(&st, path, err, sizeof err), RLHF_OK);
    assert_int_equal(safetensors_find(st, "w")->shape[0], 2);
    safetensors_destroy(&st);

    // OS failures: RLHF_EIO with strerror.
    path_in(path, sizeof path, "no/such/dir/x.safetensors");
    check_refused(safetensors_write(path, &ea, 1, NULL, NULL, 0, err, sizeof err), RLHF_EIO, err, strerror(ENOENT),
                  "x.safetensors", "missing folder");
    check_refused(safetensors_open(&st, path, err, sizeof err), RLHF_EIO, err, strerror(ENOENT), "x.safetensors",
                  "open missing file");
    assert_null(st);
    check_refused(safetensors_open(&st, g_dir, err, sizeof err), RLHF_EIO, err, g_dir, NULL, "open a folder");
}

/* ---- corrupt inputs ---- */

typedef struct {
    const char *what;
    const char *hdr;
    size_t data_len;
    rlhf_err_t code;
    const char *sub1, *sub2; // substrings the message must contain
} bad_case_t;

#define T_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"
#define T_B "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]}"

static const bad_case_t bad_cases[] = {
    {"valid baseline", "{" T_A "," T_B "}", 24, RLHF_OK, "", NULL},
    {"invalid JSON", "{" T_A ",", 24, RLHF_EFORMAT, "JSON", NULL},
    {"trailing garbage", "{" T_A "} x", 16, RLHF_EFORMAT, "JSON", NULL},
    {"empty header", "", 0, RLHF_EFORMAT, "JSON", NULL},
    {"not an object", "[1,2]", 0, RLHF_EFORMAT, "object", "array"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, RLHF_EUNSUPPORTED, "'a'",
     "Q4"},
    {"lower-case dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, RLHF_EUNSUPPORTED,
     "'a'", "f32"},
    {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, RLHF_EFORMAT, "'a'",
     "dtype"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, RLHF_EFORMAT, "'a'", "dtype"},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, RLHF_EFORMAT, "'a'", "shape"},
    {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, RLHF_EFORMAT, "'a'", "data_offsets"},
    {"entry not an object", "{\"a\":5}", 0, RLHF_EFORMAT, "'a'", "object"},
    {"shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16, RLHF_EFORMAT, "'a'",
     "shape"},
    {"real dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4.0],\"data_offsets\":[0,16]}}", 16, RLHF_EFORMAT, "'a'",
     "shape[0]"},
    {"shape/offset size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[264,384],\"data_offsets\":[0,1000]}}", 1000,
     RLHF_EFORMAT, "'a'", "[264,384] (405504 bytes of F32) but data_offsets span 1000 bytes"},
    {"offsets past the data", "{" T_A "," T_B "}", 20, RLHF_ETRUNCATED, "'b'", "[16,24]"},
    {"offsets far out of range", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[9000000000,9000000004]}}", 4,
     RLHF_ETRUNCATED, "'a'", "9000000004"},
    {"begin after end", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, RLHF_EFORMAT, "'a'",
     "[8,4]"},
    {"negative offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 8, RLHF_EFORMAT, "'a'",
     "data_offsets"},
    {"one offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4]}}", 8, RLHF_EFORMAT, "'a'",
     "data_offsets"},
    {"string offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[\"0\",\"4\"]}}", 8, RLHF_EFORMAT,
     "'a'", "data_offsets"},
    {"overlapping tensors", "{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
     RLHF_EFORMAT, "'a'", "'b'"},
    {"same range twice", "{" T_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, RLHF_EFORMAT,
     "'a'", "'b'"},
    {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,0]}}", 0, RLHF_ERANGE, "'a'",
     "negative"},
    {"huge dims overflow",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],\"data_offsets\":[0,0]}}", 0,
     RLHF_ERANGE, "'a'", "overflow"},
    {"byte size overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}", 0,
     RLHF_ERANGE, "'a'", "overflow"},
    {"dim beyond int64", "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,0]}}", 0,
     RLHF_EFORMAT, "JSON", NULL},
    {"zero dim times huge dim is fine",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775807],\"data_offsets\":[0,0]}}", 0, RLHF_OK, "", NULL},
    {"five dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, RLHF_EUNSUPPORTED,
     "'a'", "5 dimensions"},
    {"metadata not an object", "{\"__metadata__\":[]," T_A "}", 16, RLHF_EFORMAT, "__metadata__", "array"},
    {"metadata value not a string", "{\"__metadata__\":{\"step\":3}," T_A "}", 16, RLHF_EFORMAT, "'step'", "integer"},
    {"duplicate tensor", "{" T_A "," T_A "}", 16, RLHF_EFORMAT, "JSON", "duplicate"},
    {"empty name", "{\"\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, RLHF_EFORMAT, "empty name",
     NULL},
    {"name too long",
     "{\""
     "n123456789n123456789n123456789n123456789n123456789n123456789n123456789n123456789n123456789"
     "n123456789n123456789n123456789n123456789n123456789n123456789n123456789n123456789\""
     ":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
     0, RLHF_EFORMAT, "n123456789", "limit"},
};

static void test_corrupt_table(void **state) {
    (void)state;
    char err[512], what[128];
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case_t *c = &bad_cases[i];
        size_t len;
        uint8_t *buf = make_file(c->hdr, c->data_len, &len);
        safetensors_t *st = (safetensors_t *)&err; // must be reset to NULL on error
        err[0] = '\0';
        rlhf_err_t rc = safetensors_parse(&st, buf, len, err, sizeof err);
        snprintf(what, sizeof what, "case '%s'", c->what);
        if (c->code == RLHF_OK) {
            if (rc != RLHF_OK) print_error("%s: %s\n", what, err);
            assert_int_equal(rc, RLHF_OK);
            safetensors_destroy(&st);
        } else {
            check_refused(rc, c->code, err, c->sub1, c->sub2, what);
            assert_null(st);
            assert_non_null(strchr(err, '.')); // a sentence
        }
        // The same through a file: the message names the file.
        if (c->code != RLHF_OK) {
            char path[256];
            path_in(path, sizeof path, "bad.safetensors");
            write_raw(path, buf, len);
            rc = safetensors_open(&st, path, err, sizeof err);
            check_refused(rc, c->code, err, path, c->sub1, what);
            assert_null(st);
        }
        free(buf);
    }
}

static void test_bad_lengths(void **state) {
    (void)state;
    char err[512];
    safetensors_t *st = NULL;
    uint8_t b[64] = {0};
    for (size_t n = 0; n < 8; n++)
        check_refused(safetensors_parse(&st, b, n, err, sizeof err), RLHF_ETRUNCATED, err, "8-byte", NULL,
                      "shorter than 8 bytes");
    // Header length past EOF.
    memset(b, ' ', sizeof b);
    uint64_t hl = 1000;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hl >> (8 * i));
    check_refused(safetensors_parse(&st, b, sizeof b, err, sizeof err), RLHF_ETRUNCATED, err, "header length 1000",
                  NULL, "header past EOF");
    // Longer than the 100 MB limit, and the largest u64.
    hl = 200u * 1000 * 1000;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hl >> (8 * i));
    check_refused(safetensors_parse(&st, b, sizeof b, err, sizeof err), RLHF_ERANGE, err, "200000000", "limit",
                  "header over 100 MB");
    memset(b, 0xff, 8);
    check_refused(safetensors_parse(&st, b, sizeof b, err, sizeof err), RLHF_ERANGE, err, "18446744073709551615", NULL,
                  "header length 2^64-1");
    // NUL bytes inside the header.
    size_t len;
    uint8_t *f = make_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, &len);
    f[12] = '\0';
    check_refused(safetensors_parse(&st, f, len, err, sizeof err), RLHF_EFORMAT, err, "JSON", NULL, "NUL in header");
    free(f);
    assert_null(st);
}

/* Every cut of a valid file is refused as truncated, in memory and on disk. */
static void test_truncation_points(void **state) {
    (void)state;
    payload_t p;
    fill_payload(&p);
    st_entry_t e[N_ENTRIES];
    make_entries(&p, e);
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    char path[256], cut[256], err[512];
    path_in(path, sizeof path, "whole.safetensors");
    assert_int_equal(safetensors_write(path, e, N_ENTRIES, mk, mv, 1, err, sizeof err), RLHF_OK);
    size_t len;
    uint8_t *raw = read_file(path, &len);
    // The last tensor in the data section is non-empty, so every cut is detectable.
    for (size_t n = 0; n < len; n++) {
        safetensors_t *st = NULL;
        rlhf_err_t rc = safetensors_parse(&st, raw, n, err, sizeof err);
        if (rc != RLHF_ETRUNCATED) {
            print_error("cut at %zu of %zu: got %s (%s)\n", n, len, rlhf_strerror(rc), err);
            fail();
        }
        assert_null(st);
    }
    size_t cuts[] = {0, 5, 8, 9, 40, len / 2, len - 9, len - 1};
    path_in(cut, sizeof cut, "cut.safetensors");
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_raw(cut, raw, cuts[i]);
        safetensors_t *st = NULL;
        check_refused(safetensors_open(&st, cut, err, sizeof err), RLHF_ETRUNCATED, err, cut, NULL, "cut on disk");
    }
    free(raw);
}

/* Random byte flips and lengths: never a crash; success only with a table
 * that stays inside the buffer. */
static void test_fuzz(void **state) {
    (void)state;
    payload_t p;
    fill_payload(&p);
    st_entry_t e[N_ENTRIES];
    make_entries(&p, e);
    char path[256], err[512];
    path_in(path, sizeof path, "fuzz.safetensors");
    assert_int_equal(safetensors_write(path, e, N_ENTRIES, NULL, NULL, 0, err, sizeof err), RLHF_OK);
    size_t len;
    uint8_t *raw = read_file(path, &len);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    rng_t r;
    rng_init(&r, 1234);
    int accepted = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, raw, len);
        int flips = 1 + (int)rng_below(&r, 4);
        for (int f = 0; f < flips; f++) {
            size_t at = rng_below(&r, (uint32_t)len);
            if (rng_below(&r, 2)) {
                buf[at] = (uint8_t)rng_u64(&r);
            } else {
                static const char pick[] = "0123456789-[]{},:\" e.";
                buf[at] = (uint8_t)pick[rng_below(&r, sizeof pick - 1)];
            }
        }
        size_t n = rng_below(&r, 8) ? len : rng_below(&r, (uint32_t)len + 1);
        safetensors_t *st = NULL;
        err[0] = '\0';
        rlhf_err_t rc = safetensors_parse(&st, buf, n, err, sizeof err);
        if (rc != RLHF_OK) {
            assert_null(st);
            assert_true(strlen(err) > 0);
            continue;
        }
        accepted++;
        uint64_t sum = 0;
        for (int i = 0; i < safetensors_count(st); i++) {
            const st_tensor_t *t = safetensors_tensor(st, i);
            const uint8_t *d = safetensors_data(st, t);
            for (size_t b = 0; b < t->nbytes; b++) sum += d[b];
            assert_ptr_equal(safetensors_find(st, t->name), t);
        }
        (void)sum;
        safetensors_destroy(&st);
    }
    assert_true(accepted > 0); // flips inside the data section are valid files
    free(buf);
    free(raw);
}

/* A file written by an independent writer (tests/torch_ref.py). */
static void test_python_fixture(void **state) {
    (void)state;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/parity_tiny.safetensors", RLHF_FIXTURES);
    if (access(path, R_OK) != 0) skip();
    safetensors_t *st = NULL;
    rlhf_err_t rc = safetensors_open(&st, path, err, sizeof err);
    if (rc != RLHF_OK) print_error("%s\n", err);
    assert_int_equal(rc, RLHF_OK);
    const st_tensor_t *t = safetensors_find(st, "model.embed_tokens.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->ndim, 2);
    safetensors_destroy(&st);
}

static void test_dtype_names(void **state) {
    (void)state;
    for (int d = 0; d < ST__COUNT; d++) {
        st_dtype_t back;
        assert_int_equal(st_dtype_parse(st_dtype_name((st_dtype_t)d), &back), RLHF_OK);
        assert_int_equal(back, d);
    }
    st_dtype_t x;
    assert_int_equal(st_dtype_parse("BOOL", &x), RLHF_EUNSUPPORTED);
    assert_int_equal(st_dtype_size(ST_BF16), 2);
    assert_int_equal(st_dtype_size(ST_I64), 8);
    assert_int_equal(st_dtype_size(ST_U8), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_names),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_overwrite_and_writer_errors),
        cmocka_unit_test(test_corrupt_table),
        cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_truncation_points),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_python_fixture),
    };
    return cmocka_run_group_tests_name("safetensors", tests, setup, teardown);
}
