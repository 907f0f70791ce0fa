/*
 * tokenizer.h - the byte-level tokenizer with special tokens.
 *
 * Ids 0..255 are the bytes themselves (any byte, 0x00 included, so every
 * string round-trips); ids 256..263 are special tokens. The vocabulary size
 * TOK_VOCAB_SIZE must equal the vocab_size of the model presets (model.h).
 *
 * What it deliberately is not: no BPE, no merges, no Unicode handling, no
 * heap. Every function writes into caller buffers and is thread-safe.
 *
 * Special tokens are only produced from text by tok_encode_special(): plain
 * tok_encode() turns "<|user|>" into its 8 bytes, so user text can never
 * inject a role marker into a chat prompt.
 */
#ifndef RLHF_TOKENIZER_H
#define RLHF_TOKENIZER_H

#include <stddef.h>

enum {
    TOK_N_BYTES = 256,
    TOK_PAD = 256,       // "<|pad|>"
    TOK_BOS = 257,       // "<|bos|>"
    TOK_EOS = 258,       // "<|eos|>"
    TOK_SYSTEM = 259,    // "<|system|>"
    TOK_USER = 260,      // "<|user|>"
    TOK_ASSISTANT = 261, // "<|assistant|>"
    TOK_END = 262,       // "<|end|>"    end of a chat turn
    TOK_RESERVED = 263,  // "<|reserved|>"
    TOK_VOCAB_SIZE = 264
};

/* Longest special-token name, without the NUL ("<|assistant|>"). */
#define TOK_MAX_NAME 13

/* Encode len bytes of text (NUL bytes included) as byte ids, one per byte.
 * Special-token strings are NOT recognised. text may be NULL when len is 0.
 * Returns the number of ids written, or -1 if cap is too small (out is then
 * left untouched). */
int tok_encode(const char *text, size_t len, int *out, int cap);

/* As tok_encode, but the literal names of the special tokens ("<|bos|>",
 * "<|user|>", ...: see tok_special_name) become their ids. Returns the count,
 * or -1 if cap is too small (out may then hold a partial result). */
int tok_encode_special(const char *text, size_t len, int *out, int cap);

/* Decode n ids into out (snprintf-style): bytes as themselves, specials as
 * their names, ids outside [0, TOK_VOCAB_SIZE) as "<|unk|>". Writes at most
 * cap-1 bytes and a NUL when cap > 0 (out may be NULL when cap is 0).
 * Returns the number of bytes the full decoding needs, excluding the NUL;
 * the output is complete iff the return value is < cap. Decoded bytes may
 * include 0x00, so use the return value, not strlen, as the length. */
size_t tok_decode(const int *ids, int n, char *out, size_t cap);

/* 1 if id is one of the special tokens 256..263, else 0. */
int tok_is_special(int id);

/* Static name of a special token ("<|user|>"), NULL for any other id. */
const char *tok_special_name(int id);

/* Id of a special token from its name, -1 if name is not one. For configs
 * that name stop tokens. */
int tok_special_id(const char *name);

/* Chat prompt for one user turn:
 *   BOS <|user|> bytes(user) <|end|> <|assistant|>
 * The user text is encoded with tok_encode (specials in it stay bytes).
 * user may be NULL (empty turn). Returns the count (strlen(user) + 4), or
 * -1 if cap is too small (out is then left untouched). */
int tok_chat_prompt(const char *user, int *out, int cap);

#endif
