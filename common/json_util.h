/*
 * json_util.h - small helpers shared inside common/ by the jansson users
 * (safetensors headers, checkpoint config.json).
 */
#ifndef RLHF_JSON_UTIL_H
#define RLHF_JSON_UTIL_H

#include <jansson.h>

/* The JSON type of j as a word for error messages ("string", "integer"...). */
static inline const char *common__json_kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

#endif
