/*
 * scan.c - structural pre-scan of a msgpack message, before msgpack-c sees it.
 *
 * msgpack-c allocates an array's or map's element table from the count in
 * its header, before it has read a single element: five bytes (dd ff ff ff
 * ff) would ask for 64 GiB. This walk reads headers only, allocates
 * nothing, and rejects a message unless every count fits in the bytes
 * that remain (each element takes at least one byte), the total object
 * count and nesting stay within PROTO_MAX_OBJECTS / PROTO_MAX_DEPTH, and
 * exactly one object fills the buffer. After it, msgpack-c's zone is
 * bounded by 32 bytes per input byte and cannot fail on structure.
 */
#include <stdio.h>

#include "proto/proto_int.h"

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static proto_reject_t scan_fail(proto_reject_t why, char *err, size_t errlen, size_t off, const char *what) {
    if (err && errlen) snprintf(err, errlen, "msgpack at byte %zu: %s", off, what);
    return why;
}

proto_reject_t proto__scan(const unsigned char *buf, size_t len, char *err, size_t errlen) {
    uint64_t rem[PROTO_MAX_DEPTH + 1]; /* objects still expected at each level */
    int depth = 0;
    uint64_t objects = 1;
    size_t pos = 0;
    rem[0] = 1;
    while (depth >= 0) {
        if (pos >= len) return scan_fail(PROTO_REJECT_TRUNCATED, err, errlen, pos, "input ends inside an object");
        unsigned b = buf[pos];
        size_t hdr = 1;     /* header bytes, type byte included */
        uint64_t body = 0;  /* payload bytes after the header */
        uint64_t count = 0; /* child objects (2 per map pair) */
        int lenbytes = 0;   /* size of a big-endian length/count field */
        int container = 0, ext = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b <= 0x8f) {
            container = 1, count = 2u * (b & 0x0f);
        } else if (b <= 0x9f) {
            container = 1, count = b & 0x0f;
        } else if (b <= 0xbf) {
            body = b & 0x1f;
        } else {
            switch (b) {
            case 0xc1: return scan_fail(PROTO_REJECT_MALFORMED, err, errlen, pos, "reserved type byte 0xc1");
            case 0xc4:
            case 0xd9: lenbytes = 1; break; /* bin8, str8 */
            case 0xc5:
            case 0xda: lenbytes = 2; break; /* bin16, str16 */
            case 0xc6:
            case 0xdb: lenbytes = 4; break;          /* bin32, str32 */
            case 0xc7: lenbytes = 1, ext = 1; break; /* ext8 */
            case 0xc8: lenbytes = 2, ext = 1; break;
            case 0xc9: lenbytes = 4, ext = 1; break;
            case 0xca: body = 4; break; /* float32 */
            case 0xcb: body = 8; break; /* float64 */
            case 0xcc:
            case 0xd0: body = 1; break; /* (u)int8 */
            case 0xcd:
            case 0xd1: body = 2; break;
            case 0xce:
            case 0xd2: body = 4; break;
            case 0xcf:
            case 0xd3: body = 8; break;
            case 0xd4: body = 2; break; /* fixext 1: type + data */
            case 0xd5: body = 3; break;
            case 0xd6: body = 5; break;
            case 0xd7: body = 9; break;
            case 0xd8: body = 17; break;
            case 0xdc: lenbytes = 2, container = 1; break; /* array16 */
            case 0xdd: lenbytes = 4, container = 1; break; /* array32 */
            case 0xde: lenbytes = 2, container = 2; break; /* map16 */
            case 0xdf: lenbytes = 4, container = 2; break; /* map32 */
            default: break;
            }
        }
        if (lenbytes) {
            if (len - pos < 1 + (size_t)lenbytes)
                return scan_fail(PROTO_REJECT_TRUNCATED, err, errlen, pos, "input ends inside a header");
            uint64_t v = be(buf + pos + 1, lenbytes);
            hdr += (size_t)lenbytes;
            if (container) {
                if (v > PROTO_MAX_OBJECTS)
                    return scan_fail(PROTO_REJECT_TOO_LARGE, err, errlen, pos, "element count above the limit");
                count = container == 2 ? 2 * v : v;
            } else {
                if (v > PROTO_MAX_MSG_BYTES)
                    return scan_fail(PROTO_REJECT_TOO_LARGE, err, errlen, pos, "byte length above the limit");
                body = v + (uint64_t)ext; /* ext: one type byte before the data */
            }
        }
        if (len - pos < hdr) return scan_fail(PROTO_REJECT_TRUNCATED, err, errlen, pos, "input ends inside a header");
        pos += hdr;
        if (body > len - pos) return scan_fail(PROTO_REJECT_TRUNCATED, err, errlen, pos, "input ends inside a value");
        pos += (size_t)body;
        rem[depth]--;
        if (count > 0) {
            /* every element takes at least one byte */
            if (count > len - pos)
                return scan_fail(PROTO_REJECT_TRUNCATED, err, errlen, pos, "more elements than bytes left");
            objects += count;
            if (objects > PROTO_MAX_OBJECTS)
                return scan_fail(PROTO_REJECT_TOO_LARGE, err, errlen, pos, "more objects than the limit");
            if (depth + 1 > PROTO_MAX_DEPTH)
                return scan_fail(PROTO_REJECT_TOO_DEEP, err, errlen, pos, "nesting deeper than the limit");
            rem[++depth] = count;
        }
        while (depth >= 0 && rem[depth] == 0) depth--;
    }
    if (pos != len) return scan_fail(PROTO_REJECT_TRAILING_BYTES, err, errlen, pos, "bytes after the message");
    return PROTO_REJECT_NONE;
}
