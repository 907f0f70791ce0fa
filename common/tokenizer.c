/* tokenizer.c - byte-level tokenizer with special tokens (see tokenizer.h). */
#include "common/tokenizer.h"

#include <limits.h>
#include <string.h>

#define N_SPECIAL (TOK_VOCAB_SIZE - TOK_N_BYTES)

static const char *const special_names[N_SPECIAL] = {
    "<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|reserved|>",
};

static const char unk_name[] = "<|unk|>";

int tok_is_special(int id) {
    return id >= TOK_N_BYTES && id < TOK_VOCAB_SIZE;
}

const char *tok_special_name(int id) {
    return tok_is_special(id) ? special_names[id - TOK_N_BYTES] : NULL;
}

int tok_special_id(const char *name) {
    if (!name) return -1;
    for (int k = 0; k < N_SPECIAL; k++)
        if (strcmp(name, special_names[k]) == 0) return TOK_N_BYTES + k;
    return -1;
}

int tok_encode(const char *text, size_t len, int *out, int cap) {
    if (len > (size_t)INT_MAX || (int)len > cap) return -1;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len; i++) out[i] = s[i];
    return (int)len;
}

/* Special token whose name starts text[0..len), or -1. Names all begin with
 * "<|" and no name is a prefix of another, so the first match is the only. */
static int match_special(const char *text, size_t len, size_t *name_len) {
    if (len < 2 || text[0] != '<' || text[1] != '|') return -1;
    for (int k = 0; k < N_SPECIAL; k++) {
        size_t nl = strlen(special_names[k]);
        if (nl <= len && memcmp(text, special_names[k], nl) == 0) {
            *name_len = nl;
            return TOK_N_BYTES + k;
        }
    }
    return -1;
}

int tok_encode_special(const char *text, size_t len, int *out, int cap) {
    const unsigned char *s = (const unsigned char *)text;
    int n = 0;
    size_t i = 0;
    while (i < len) {
        if (n >= cap) return -1;
        size_t nl = 0;
        int id = match_special(text + i, len - i, &nl);
        if (id >= 0) {
            out[n++] = id;
            i += nl;
        } else {
            out[n++] = s[i++];
        }
    }
    return n;
}

size_t tok_decode(const int *ids, int n, char *out, size_t cap) {
    size_t need = 0;
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id >= 0 && id < TOK_N_BYTES) {
            if (need + 1 < cap) out[need] = (char)(unsigned char)id;
            need++;
            continue;
        }
        const char *name = tok_is_special(id) ? special_names[id - TOK_N_BYTES] : unk_name;
        size_t nl = strlen(name);
        if (need + 1 < cap) {
            size_t room = cap - 1 - need;
            memcpy(out + need, name, nl < room ? nl : room);
        }
        need += nl;
    }
    if (cap > 0) out[need < cap ? need : cap - 1] = '\0';
    return need;
}

int tok_chat_prompt(const char *user, int *out, int cap) {
    size_t len = user ? strlen(user) : 0;
    if (len > (size_t)INT_MAX - 4 || cap < (int)len + 4) return -1;
    int n = 0;
    out[n++] = TOK_BOS;
    out[n++] = TOK_USER;
    n += tok_encode(user, len, out + n, cap - n);
    out[n++] = TOK_END;
    out[n++] = TOK_ASSISTANT;
    return n;
}
