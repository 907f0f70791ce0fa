/*
 * proto.h - the wire protocol: message types, limits, and a validating
 * msgpack codec (over msgpack-c). proto/PROTOCOL.md is the normative spec;
 * this header is its C binding.
 *
 * Every message is one msgpack array, the envelope
 *     [magic, proto_version, type, sender, seq, body]
 * with body a map. Token arrays travel as bin of little-endian int32,
 * log-probs as bin of little-endian float32, never element by element.
 * A weights chunk is the one two-frame message: [header][raw data].
 *
 * Decoding checks every type, length and limit before use; a message that
 * fails is rejected with one specific proto_reject_t (a Prometheus label
 * value for rlhf_messages_rejected_total{reason}) and never read out of
 * bounds. Encoding runs the same semantic checks, so what proto_encode()
 * produces, proto_decode() accepts.
 *
 * Ownership. A decoded proto_msg_t owns all its memory (strings, token and
 * log-prob arrays, sample tables live in an arena inside the message; nothing
 * points into the input buffer), except weights_chunk.data, which is
 * borrowed from the caller's data frame. Decoding into the same proto_msg_t
 * again reuses the arena (no allocation in the steady state) and
 * invalidates every pointer of the previous decode; proto_msg_fini() frees
 * it. A message built by hand for proto_encode() holds borrowed pointers
 * that the encoder only reads.
 *
 * Threads: no global state; distinct proto_msg_t / proto_enc_t objects may
 * be used from different threads.
 *
 * What it deliberately is not: no socket loop, no retry or credit logic
 * (the roles own those), no compression.
 */
#ifndef RLHF_PROTO_H
#define RLHF_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* ---- constants and hard limits (PROTOCOL.md "Limits") ---- */

#define PROTO_MAGIC   0x524C4846u /* "RLHF" read as a big-endian uint32 */
#define PROTO_VERSION 1u

#define PROTO_MAX_MSG_BYTES   (64u << 20)  /* any frame; sockets set ZMQ_MAXMSGSIZE to this */
#define PROTO_MAX_CHUNK_BYTES (16u << 20)  /* data frame of one weights chunk */
#define PROTO_CHUNK_BYTES     (2u << 20)   /* recommended chunk length (bench transport) */
#define PROTO_MAX_BLOB_BYTES  (1ull << 40) /* size of one weights version */
#define PROTO_MAX_DEPTH       16           /* msgpack nesting, envelope = 1 */
#define PROTO_MAX_OBJECTS     (1u << 20)   /* msgpack objects in one message */
#define PROTO_MAX_ID          64           /* sender id bytes */
#define PROTO_MAX_NAME        64           /* role, task, capability, component, stat names */
#define PROTO_MAX_REASON      256          /* bye reason bytes */
#define PROTO_MAX_CAPS        32           /* capabilities in a hello */
#define PROTO_MAX_STATS       64           /* values in a stats message */
#define PROTO_MAX_COMPONENTS  16           /* named reward components per sample */
#define PROTO_MAX_TOKENS      65536        /* tokens in one prompt or completion */
#define PROTO_MAX_PROMPTS     1024         /* prompts in one ticket */
#define PROTO_MAX_K           256          /* samples per prompt */
#define PROTO_MAX_SAMPLES     4096         /* samples per message; also prompts * k per ticket */
#define PROTO_MAX_STOP        8            /* stop tokens */
#define PROTO_MAX_CREDIT      1024         /* credit in one request */
#define PROTO_MAX_VOCAB       (1 << 24)    /* token ids are in [0, PROTO_MAX_VOCAB) */
#define PROTO_MAX_DEADLINE_MS 86400000u    /* one day */
#define PROTO_MAX_TEMPERATURE 100.0f

/* Default TCP ports: the learner binds all six on one host. */
#define PROTO_PORT_WORK     5555
#define PROTO_PORT_ROLLOUTS 5556
#define PROTO_PORT_SCORE    5557
#define PROTO_PORT_SCORED   5558
#define PROTO_PORT_ANNOUNCE 5559
#define PROTO_PORT_WEIGHTS  5560

/* ---- message types: X(NAME, code, wire_name) ---- */

#define PROTO_TYPE_MAP(X)                                                                                              \
    X(HELLO, 1, hello)                                                                                                 \
    X(HEARTBEAT, 2, heartbeat)                                                                                         \
    X(BYE, 3, bye)                                                                                                     \
    X(STATS, 4, stats)                                                                                                 \
    X(WORK_REQUEST, 10, work_request)                                                                                  \
    X(TICKET, 11, ticket)                                                                                              \
    X(ROLLOUTS, 12, rollouts)                                                                                          \
    X(SCORE_REQUEST, 20, score_request)                                                                                \
    X(SCORE_WORK, 21, score_work)                                                                                      \
    X(SCORED, 22, scored)                                                                                              \
    X(WEIGHTS_ANNOUNCE, 30, weights_announce)                                                                          \
    X(WEIGHTS_REQUEST, 31, weights_request)                                                                            \
    X(WEIGHTS_CHUNK, 32, weights_chunk)

typedef enum {
    PROTO_NONE = 0,
#define PROTO__TYPE_ENUM(name, code, id) PROTO_##name = code,
    PROTO_TYPE_MAP(PROTO__TYPE_ENUM)
#undef PROTO__TYPE_ENUM
} proto_type_t;

/* Static wire name of a type ("rollouts"), NULL for an unknown code. */
const char *proto_type_name(uint32_t type);

/* Accept masks for proto_decode_opts_t: one bit per type code (< 64). */
#define PROTO_BIT(t) (1ull << (t))
/* learner side */
#define PROTO_ACCEPT_LEARNER_WORK                                                                                      \
    (PROTO_BIT(PROTO_HELLO) | PROTO_BIT(PROTO_HEARTBEAT) | PROTO_BIT(PROTO_BYE) | PROTO_BIT(PROTO_STATS) |             \
     PROTO_BIT(PROTO_WORK_REQUEST))
#define PROTO_ACCEPT_LEARNER_ROLLOUTS PROTO_BIT(PROTO_ROLLOUTS)
#define PROTO_ACCEPT_LEARNER_SCORE                                                                                     \
    (PROTO_BIT(PROTO_HELLO) | PROTO_BIT(PROTO_HEARTBEAT) | PROTO_BIT(PROTO_BYE) | PROTO_BIT(PROTO_STATS) |             \
     PROTO_BIT(PROTO_SCORE_REQUEST))
#define PROTO_ACCEPT_LEARNER_SCORED  PROTO_BIT(PROTO_SCORED)
#define PROTO_ACCEPT_LEARNER_WEIGHTS PROTO_BIT(PROTO_WEIGHTS_REQUEST)
/* actor / reward side */
#define PROTO_ACCEPT_ACTOR_WORK     (PROTO_BIT(PROTO_HELLO) | PROTO_BIT(PROTO_HEARTBEAT) | PROTO_BIT(PROTO_TICKET))
#define PROTO_ACCEPT_ACTOR_ANNOUNCE PROTO_BIT(PROTO_WEIGHTS_ANNOUNCE)
#define PROTO_ACCEPT_ACTOR_WEIGHTS  PROTO_BIT(PROTO_WEIGHTS_CHUNK)
#define PROTO_ACCEPT_REWARD_SCORE   (PROTO_BIT(PROTO_HELLO) | PROTO_BIT(PROTO_HEARTBEAT) | PROTO_BIT(PROTO_SCORE_WORK))

/* ---- reject reasons: X(NAME, "label") ---- */

#define PROTO_REJECT_MAP(X)                                                                                            \
    X(NONE, "none")                       /* not rejected */                                                           \
    X(TRUNCATED, "truncated")             /* input ends inside a msgpack object */                                     \
    X(TRAILING_BYTES, "trailing_bytes")   /* bytes after the envelope */                                               \
    X(MALFORMED, "malformed")             /* not msgpack (reserved byte 0xc1) */                                       \
    X(TOO_DEEP, "too_deep")               /* nesting above PROTO_MAX_DEPTH */                                          \
    X(TOO_LARGE, "too_large")             /* a byte length or element count above its limit */                         \
    X(BAD_ENVELOPE, "bad_envelope")       /* not an array of 6 */                                                      \
    X(BAD_MAGIC, "bad_magic")             /* envelope[0] is not PROTO_MAGIC */                                         \
    X(BAD_VERSION, "bad_version")         /* envelope[1] is not PROTO_VERSION */                                       \
    X(UNKNOWN_TYPE, "unknown_type")       /* envelope[2] names no type */                                              \
    X(UNEXPECTED_TYPE, "unexpected_type") /* a known type this socket does not take */                                 \
    X(WRONG_TYPE, "wrong_type")           /* a field has the wrong msgpack type */                                     \
    X(MISSING_FIELD, "missing_field")     /* a required field is absent */                                             \
    X(DUPLICATE_FIELD, "duplicate_field") /* a map key appears twice */                                                \
    X(NEGATIVE_COUNT, "negative_count")   /* a negative integer where an unsigned one belongs */                       \
    X(OUT_OF_RANGE, "out_of_range")       /* a number or enum value outside its range */                               \
    X(BAD_LENGTH, "bad_length")           /* bin not a multiple of 4, empty, or lengths disagree */                    \
    X(BAD_STRING, "bad_string")           /* a string empty or with a byte outside its charset */                      \
    X(BAD_TOKEN, "bad_token")             /* a token id outside [0, vocab) */                                          \
    X(NAN_REWARD, "nan_reward")           /* a reward or component is NaN or infinite */                               \
    X(NAN_LOGPROB, "nan_logprob")         /* a log-prob is NaN or infinite */                                          \
    X(BAD_FRAMES, "bad_frames")           /* wrong frame count, or data frame length != header */                      \
    X(NO_MEMORY, "no_memory")             /* the receiver could not allocate */

typedef enum {
#define PROTO__REJECT_ENUM(name, str) PROTO_REJECT_##name,
    PROTO_REJECT_MAP(PROTO__REJECT_ENUM)
#undef PROTO__REJECT_ENUM
        PROTO_REJECT__COUNT
} proto_reject_t;

/* Static label of a reason ("truncated"); "unknown" out of range. */
const char *proto_reject_reason_name(proto_reject_t r);

/* Per-reason counters for one receiver (plain data; the metrics registry
 * exports n[] as rlhf_messages_rejected_total{reason}). Not thread-safe. */
typedef struct {
    uint64_t n[PROTO_REJECT__COUNT];
    double last_log[PROTO_REJECT__COUNT]; /* when last logged, caller's seconds; < 0 = never */
} proto_rejects_t;

void proto_rejects_init(proto_rejects_t *r);
/* Count one rejection at time now_s (any monotonic seconds). Returns 1 when
 * the caller should log it: the first of its reason in the last 60 s. */
int proto_rejects_note(proto_rejects_t *r, proto_reject_t why, double now_s);
uint64_t proto_rejects_total(const proto_rejects_t *r);

/* ---- message bodies (plain data) ---- */

typedef enum { PROTO_ROLE_ACTOR = 1, PROTO_ROLE_REWARD = 2, PROTO_ROLE_LEARNER = 3 } proto_role_t;
/* "actor", "reward", "learner"; NULL for others. */
const char *proto_role_name(uint32_t role);

typedef enum { PROTO_FINISH_STOP = 1, PROTO_FINISH_LENGTH = 2 } proto_finish_t;

typedef enum {
    PROTO_CHUNK_OK = 0,
    PROTO_CHUNK_UNKNOWN_VERSION = 1, /* the learner no longer (or never) held it */
    PROTO_CHUNK_BAD_RANGE = 2        /* offset + length beyond the blob */
} proto_chunk_status_t;

/* A named number: reward component or stat. name: 1..PROTO_MAX_NAME bytes. */
typedef struct {
    const char *name;
    double value;
} proto_named_t;

typedef struct {
    uint32_t role;           /* proto_role_t */
    const char *const *caps; /* (n_caps) capability tags, e.g. "gen", "ref_logprobs" */
    uint32_t n_caps;
    const char *software;     /* "" when absent */
    uint64_t weights_version; /* 0: none held / unknown */
} proto_hello_t;

typedef struct {
    uint32_t in_flight;       /* tickets or score jobs in progress */
    uint64_t weights_version; /* 0: none / unknown */
} proto_heartbeat_t;

typedef struct {
    const char *reason; /* "" when absent; printable ASCII, spaces allowed */
} proto_bye_t;

typedef struct {
    const proto_named_t *values; /* (n_values) finite */
    uint32_t n_values;
} proto_stats_t;

typedef struct {
    uint32_t credit;          /* 1..PROTO_MAX_CREDIT more tickets wanted */
    uint64_t weights_version; /* held by the actor; 0 = none */
} proto_work_request_t;

typedef struct {
    float temperature;            /* [0, PROTO_MAX_TEMPERATURE]; 0 = greedy */
    uint32_t top_k;               /* 0 = off */
    float top_p;                  /* (0, 1]; 1 = off */
    uint32_t max_new_tokens;      /* 1..PROTO_MAX_TOKENS */
    int32_t stop[PROTO_MAX_STOP]; /* (n_stop) token ids that end a completion */
    uint32_t n_stop;
    uint64_t seed; /* sample j of prompt i uses seed + i*k + j */
} proto_sampling_t;

typedef struct {
    uint64_t id;           /* learner's prompt id (opaque to actors) */
    const int32_t *tokens; /* (n_tokens) */
    uint32_t n_tokens;     /* 1..PROTO_MAX_TOKENS */
} proto_prompt_t;

typedef struct {
    uint64_t ticket;
    uint64_t policy_version; /* generate with weights version >= this */
    uint32_t k;              /* samples per prompt, 1..PROTO_MAX_K */
    uint32_t deadline_ms;    /* 1..PROTO_MAX_DEADLINE_MS after sending */
    const char *task;        /* "" when absent */
    proto_sampling_t sampling;
    const proto_prompt_t *prompts; /* (n_prompts) 1..PROTO_MAX_PROMPTS, n_prompts*k <= PROTO_MAX_SAMPLES */
    uint32_t n_prompts;
} proto_ticket_t;

typedef struct {
    uint32_t prompt_index; /* index into the ticket's prompts */
    uint32_t sample_index; /* 0..k-1 */
    const int32_t *prompt; /* (n_prompt) */
    uint32_t n_prompt;
    const int32_t *completion; /* (n_completion), includes the stop token if finish == STOP */
    const float *logprobs;     /* (n_completion) behaviour log-probs, finite */
    uint32_t n_completion;     /* 1..PROTO_MAX_TOKENS */
    uint32_t finish;           /* proto_finish_t */
    uint64_t policy_version;   /* weights version that generated it */
    uint64_t queue_us;         /* ticket receipt -> generation start; 0 = unknown */
    uint64_t gen_us;           /* wall time of the generation that produced it */
} proto_sample_t;

typedef struct {
    uint64_t ticket;
    const proto_sample_t *samples; /* (n_samples) 1..PROTO_MAX_SAMPLES */
    uint32_t n_samples;
} proto_rollouts_t;

typedef struct {
    uint32_t prompt_index, sample_index;
    uint64_t prompt_id;    /* the ticket's prompts[prompt_index].id */
    const int32_t *prompt; /* (n_prompt) */
    uint32_t n_prompt;
    const int32_t *completion; /* (n_completion) */
    uint32_t n_completion;
    uint32_t finish; /* proto_finish_t */
} proto_score_item_t;

typedef struct {
    uint64_t ticket;
    const char *task;                /* "" when absent */
    float temperature;               /* for reference log-probs: softmax(logits / T); > 0 */
    uint32_t want_ref;               /* 1: reply with ref_logprobs */
    const proto_score_item_t *items; /* (n_items) 1..PROTO_MAX_SAMPLES */
    uint32_t n_items;
} proto_score_work_t;

typedef struct {
    uint32_t prompt_index, sample_index;
    double reward;                   /* finite */
    const proto_named_t *components; /* (n_components) finite, names distinct */
    uint32_t n_components;
    const float *ref_logprobs; /* (n_ref) NULL/0 when absent; else n_ref == n_completion */
    uint32_t n_ref;
    uint64_t score_us; /* 0 = unknown */
} proto_scored_sample_t;

typedef struct {
    uint64_t ticket;
    const proto_scored_sample_t *samples; /* (n_samples) 1..PROTO_MAX_SAMPLES */
    uint32_t n_samples;
} proto_scored_t;

typedef struct {
    uint64_t version;   /* >= 1 */
    uint64_t size;      /* bytes, 1..PROTO_MAX_BLOB_BYTES */
    uint64_t checksum;  /* XXH3_64bits(blob, seed 0): proto_weights_checksum */
    uint32_t chunk_max; /* largest length the learner serves, 1..PROTO_MAX_CHUNK_BYTES */
} proto_weights_announce_t;

typedef struct {
    uint64_t version;
    uint64_t offset; /* bytes */
    uint32_t length; /* 1..PROTO_MAX_CHUNK_BYTES */
} proto_weights_request_t;

typedef struct {
    uint64_t version, offset;
    uint32_t length;         /* data frame bytes; 0 unless status == OK */
    uint32_t status;         /* proto_chunk_status_t */
    uint64_t size, checksum; /* of the whole version, as in the announce */
    const void *data;        /* (length) BORROWED from the data frame; not encoded */
} proto_weights_chunk_t;

/* ---- the message ---- */

typedef struct proto__block proto__block_t;

typedef struct {
    uint32_t type;                 /* proto_type_t */
    uint32_t version;              /* set by decode (PROTO_VERSION); ignored by encode */
    char sender[PROTO_MAX_ID + 1]; /* NUL-terminated, 1..PROTO_MAX_ID printable ASCII, no space */
    uint64_t seq;                  /* per-sender counter, informative */
    union {
        proto_hello_t hello;
        proto_heartbeat_t heartbeat;
        proto_bye_t bye;
        proto_stats_t stats;
        proto_work_request_t work_request;
        proto_ticket_t ticket;
        proto_rollouts_t rollouts;
        proto_work_request_t score_request; /* weights_version unused (0) */
        proto_score_work_t score_work;
        proto_scored_t scored;
        proto_weights_announce_t weights_announce;
        proto_weights_request_t weights_request;
        proto_weights_chunk_t weights_chunk;
    };
    struct { /* private: decode arena */
        unsigned char *base;
        size_t cap, used;
        proto__block_t *extra;
        size_t extra_bytes;
    } mem_;
} proto_msg_t;

/* Zero m (an empty, valid message to decode into or to fill by hand). */
void proto_msg_init(proto_msg_t *m);
/* Free what decoding allocated; m is left as after proto_msg_init. */
void proto_msg_fini(proto_msg_t *m);
/* Set type, sender (copied) and seq, and zero the body. RLHF_ERANGE if
 * sender is longer than PROTO_MAX_ID. */
rlhf_err_t proto_msg_header(proto_msg_t *m, proto_type_t type, const char *sender, uint64_t seq);
/* Deep equality of envelope and body (weights_chunk.data compared by
 * content over length bytes; NULL equals NULL only). For tests and the
 * fuzzer. */
int proto_msg_equal(const proto_msg_t *a, const proto_msg_t *b);

/* ---- decoding ---- */

typedef struct {
    uint64_t accept;    /* PROTO_BIT set of types this socket takes; 0 = all known */
    int32_t vocab_size; /* token ids must be < this; 0 = PROTO_MAX_VOCAB */
} proto_decode_opts_t;

/*
 * Decode one frame of len bytes into m (reusing m's arena; m must have been
 * proto_msg_init'ed). opts may be NULL (all types, PROTO_MAX_VOCAB).
 * For a WEIGHTS_CHUNK this decodes the header only (data stays NULL): use
 * proto_decode_frames, or proto_weights_chunk_attach for the data frame.
 * On success RLHF_OK and *why = PROTO_REJECT_NONE. On a bad message *why
 * names the reason, err (if non-NULL) gets one line naming the field
 * ("rollouts.samples[3].logprobs: 1021 bytes is not a multiple of 4"), the
 * return is RLHF_ETRUNCATED (truncated), RLHF_ERANGE (too_large),
 * RLHF_ENOMEM (no_memory) or RLHF_EFORMAT (every other reason), and m's
 * body is unspecified (still safe to decode into again or fini).
 * buf is only read during the call.
 */
rlhf_err_t proto_decode(proto_msg_t *m, const void *buf, size_t len, const proto_decode_opts_t *opts,
                        proto_reject_t *why, char *err, size_t errlen);

/* Decode a whole ZeroMQ message of n frames (routing frames already
 * removed): one frame for every type, two for WEIGHTS_CHUNK (header, data);
 * another count is bad_frames. The chunk's data is borrowed from frames[1]
 * and must outlive the use of m->weights_chunk.data. */
rlhf_err_t proto_decode_frames(proto_msg_t *m, const void *const *frames, const size_t *lens, size_t n,
                               const proto_decode_opts_t *opts, proto_reject_t *why, char *err, size_t errlen);

/* Attach the data frame to a decoded WEIGHTS_CHUNK header: bad_frames
 * unless len == m->weights_chunk.length. data is borrowed. */
rlhf_err_t proto_weights_chunk_attach(proto_msg_t *m, const void *data, size_t len, proto_reject_t *why, char *err,
                                      size_t errlen);

/* ---- encoding ---- */

/* A reusable output buffer: data[0..len) holds the last encoded message. */
typedef struct {
    char *data;
    size_t len, cap;
} proto_enc_t;

void proto_enc_init(proto_enc_t *e);
void proto_enc_fini(proto_enc_t *e);
/* Take the bytes (caller owns them, free() them; e.g. a zmq_msg_init_data
 * free function); e is left empty and reusable. */
void *proto_enc_release(proto_enc_t *e, size_t *len);

/*
 * Check m like the decoder would (limits, ranges, finite rewards and
 * log-probs, token ids < PROTO_MAX_VOCAB) and encode it into e, replacing
 * e's previous contents. The buffer is sized once from an upper bound, so
 * packing never reallocates mid-message. For a WEIGHTS_CHUNK only the
 * header frame is produced; the data travels as the next frame (see
 * proto_zmq_send_chunk). On error e->len is 0, err names the field, and
 * the return is RLHF_EINVAL (a message the decoder would reject; *why, may
 * be NULL, gets the reason it would give) or RLHF_ENOMEM.
 */
rlhf_err_t proto_encode(proto_enc_t *e, const proto_msg_t *m, proto_reject_t *why, char *err, size_t errlen);

/* ---- weights ---- */

/* XXH3_64bits(blob, n) with seed 0: the checksum of a weights version. */
uint64_t proto_weights_checksum(const void *blob, size_t n);

/* ---- ZeroMQ glue (sockets are borrowed) ---- */

/* Set ZMQ_MAXMSGSIZE = PROTO_MAX_MSG_BYTES on a socket (before connect/bind). */
rlhf_err_t proto_zmq_limit(void *sock);

/* free function for zero-copy frames, libzmq's zmq_free_fn */
typedef void(proto_zmq_free_fn)(void *data, void *hint);

/*
 * Send a weights chunk reply: [route frames...][header][data], the data
 * frame zero-copy (zmq_msg_init_data on the caller's blob; libzmq's I/O
 * thread reads it directly). route/route_len: the ROUTER identity frame
 * (NULL for none). ffn(data, hint) is called exactly once, possibly from a
 * libzmq thread, when libzmq no longer needs data (sent, dropped, or the
 * send failed): keep the blob alive until then (e.g. hold a reference on
 * the version and drop it in ffn). ffn may be NULL when the blob outlives
 * the socket. Returns RLHF_EIO if libzmq refused a frame.
 */
rlhf_err_t proto_zmq_send_chunk(void *sock, const void *route, size_t route_len, const void *hdr, size_t hdr_len,
                                const void *data, size_t data_len, proto_zmq_free_fn *ffn, void *hint);

#endif
