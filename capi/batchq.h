/*
 * batchq.h - the C ABI of batchq (libbatchq.so).
 *
 * A batchq_queue is an HTTP log shipper: entries (already-serialized JSON,
 * typically one per request) are batched, sent to an HTTP endpoint with
 * Kong http-log's semantics (batch size, flush timeout, retry count with
 * backoff), and every entry that cannot be delivered is handed back to the
 * host - pulled with batchq_poll_dropped() or pushed to a C callback - and,
 * when a spool directory is configured, kept on disk.
 *
 * Conventions (every function):
 *  - Returns int: 0 (BATCHQ_OK) on success, a negative BATCHQ_E* code on
 *    failure; batchq_strerror(code) names it. Functions that can explain more
 *    take a caller-owned `char *errbuf, size_t errbuf_len` (may be NULL/0),
 *    always NUL-terminated when errbuf_len > 0.
 *  - Never throws, never aborts on bad input: a NULL handle or pointer gives
 *    BATCHQ_EINVAL.
 *  - Input buffers are copied before the call returns (LuaJIT only keeps a
 *    passed string alive for the duration of the call).
 *  - Thread-safety is stated per function. No function calls back into the
 *    caller except the optional C callbacks of batchq_new_with_callbacks(),
 *    which run on the queue's sending thread and must not call into Lua.
 *  - Enums and error codes are append-only; struct types that can grow start
 *    with `size_t struct_size`, which the caller sets to sizeof(the struct).
 *
 * Only <stddef.h> and <stdint.h> are needed; C89-compatible declarations.
 */
#ifndef BATCHQ_H
#define BATCHQ_H

#include <stddef.h>
#include <stdint.h>

#include "batchq/version.h" /* BATCHQ_VERSION_MAJOR/MINOR/PATCH/NUMBER/STRING */

#if defined(_WIN32)
#if defined(BATCHQ_BUILDING_CAPI)
#define BATCHQ_API __declspec(dllexport)
#else
#define BATCHQ_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define BATCHQ_API __attribute__((visibility("default")))
#else
#define BATCHQ_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */

enum batchq_error {
  BATCHQ_OK = 0,
  BATCHQ_EINVAL = -1,     /* a NULL handle/pointer, or a bad argument value */
  BATCHQ_ECONFIG = -2,    /* configuration refused: errbuf names the key and what is allowed */
  BATCHQ_EFULL = -3,      /* queue full and overflow is "refuse_new": entry not taken */
  BATCHQ_ETOOLARGE = -4,  /* entry larger than max_bytes: entry not taken */
  BATCHQ_EJSON = -5,      /* entry is not valid JSON (validate_json on): entry not taken */
  BATCHQ_ESHUTDOWN = -6,  /* the queue was shut down: entry not taken */
  BATCHQ_ETIMEDOUT = -7,  /* flush/shutdown did not finish within its timeout */
  BATCHQ_ENOMEM = -8,     /* out of memory */
  BATCHQ_ESPOOL = -9,     /* the spool could not be opened (errbuf: path and system error) */
  BATCHQ_ESMALLBUF = -10, /* output buffer too small: *out_len holds the size needed */
  BATCHQ_EINTERNAL = -11, /* an unexpected internal error (a bug: please report) */
  BATCHQ_EINPROGRESS = -12, /* batchq_shutdown_poll(): the shutdown is still running */
  BATCHQ_EFORK = -13        /* queue used in a child process after fork(); create queues after forking */
};

/* The name of an error code: "BATCHQ_EFULL: queue full". Static storage; never
 * NULL ("unknown error" for unknown codes). Thread-safe. */
BATCHQ_API const char *batchq_strerror(int code);

/* ---- version ------------------------------------------------------------ */

/* The library's version, "MAJOR.MINOR.PATCH". Static storage. Thread-safe.
 * Compare with BATCHQ_VERSION_STRING to detect a header/library mismatch. */
BATCHQ_API const char *batchq_version(void);
/* BATCHQ_VERSION_NUMBER of the library (MAJOR*10000 + MINOR*100 + PATCH). */
BATCHQ_API int batchq_version_number(void);

/* ---- drop reasons -------------------------------------------------------- */

enum batchq_drop_reason {
  BATCHQ_DROP_RETRIES_EXHAUSTED = 0,   /* every attempt (retry_count) failed */
  BATCHQ_DROP_RETRY_TIME_EXCEEDED = 1, /* still failing after max_retry_time */
  BATCHQ_DROP_QUEUE_FULL = 2,          /* pushed out by newer entries (max_entries/max_bytes) */
  BATCHQ_DROP_TOO_LARGE = 3,           /* receiver answered 413 (with drop_permanent_4xx) */
  BATCHQ_DROP_SHUTDOWN = 4,            /* shutdown's deadline passed first */
  BATCHQ_DROP_REJECTED = 5             /* receiver answered another 4xx (with drop_permanent_4xx) */
};

/* "retries_exhausted", ... Static storage; "unknown" for unknown values. */
BATCHQ_API const char *batchq_drop_reason_name(int reason);

/* ---- the queue ------------------------------------------------------------ */

typedef struct batchq_queue batchq_queue;

/*
 * Creates a queue (and its sending thread) from a JSON object.
 *
 * Keys (Kong http-log's names and units, plus batchq's own); every key is
 * optional except http_endpoint:
 *   http_endpoint  string   http:// or https:// URL; userinfo becomes Basic auth
 *   method         string   "POST" (default), "PUT", "PATCH"
 *   content_type   string   "application/json"
 *   headers        object   name -> string value; not Host/Content-Length/Content-Type
 *   timeout        number   ms, default 10000 (whole request; per socket
 *                           operation with timeout_scope "operation")
 *   keepalive      number   ms, default 60000 (idle connection reuse; 0 = none)
 *   connect_timeout number  ms, default min(timeout, 5000)
 *   (ms values: fractions round up, above 2^31-1 clamped; see the README)
 *   queue_size     integer  entries per batch, default 1
 *   retry_count    integer  total attempts per batch, default 10
 *   flush_timeout  number   s, default 2
 *   process_delay  number   s, default 0
 *   ... and the batchq keys listed in the README's configuration reference
 *   (bounds, backoff, format, gzip, TLS, spool, drop buffer).
 * An unknown key, a wrong type or a value out of range gives BATCHQ_ECONFIG
 * and a message naming the key and what is allowed, e.g.
 *   "queue_sise: unknown key (did you mean queue_size?)".
 *
 * config_json: not NUL-terminated necessarily; `len` bytes are read and copied.
 * On success *out receives the queue, owned by the caller (batchq_free).
 * Thread-safety: may be called from any thread. Create queues after fork():
 * the sending thread does not survive a fork.
 */
BATCHQ_API int batchq_new(const char *config_json, size_t len, batchq_queue **out, char *errbuf,
                          size_t errbuf_len);

/* One dropped entry, as handed out by batchq_poll_dropped() and the C drop
 * callback. Pointers stay valid until the next batchq_poll_dropped() on the
 * same queue, batchq_free(), or the callback's return. */
typedef struct batchq_dropped {
  size_t struct_size;     /* set by the caller to sizeof(batchq_dropped) */
  int reason;             /* enum batchq_drop_reason */
  uint32_t attempts;      /* attempts made at the entry's batch (0 = never attempted) */
  int64_t time_ms;        /* when it was dropped, Unix time in milliseconds */
  const char *data;       /* the entry's bytes (not NUL-terminated) */
  size_t len;
  const char *last_error; /* the last attempt's error text, "" if none */
  size_t last_error_len;
  int spooled;            /* 1 if the entry is also in the dead-letter spool */
} batchq_dropped;

typedef void (*batchq_drop_fn)(void *user, const batchq_dropped *entries, size_t count);
typedef void (*batchq_log_fn)(void *user, int level /* 0 debug .. 3 error */, const char *msg, size_t len);

typedef struct batchq_callbacks {
  size_t struct_size; /* sizeof(batchq_callbacks) */
  /* Receives dropped entries instead of the poll buffer. Runs on one of the
   * queue's threads (sending or reporting), the thread calling shutdown/free,
   * or the thread that batchq_shutdown_begin() starts; never concurrently
   * with itself or on_log; must not call into Lua or block for long; may
   * call batchq_stats(). NULL: use the buffer. */
  batchq_drop_fn on_drop;
  /* Receives the queue's log lines in Kong's wording. Same thread rules.
   * NULL: lines go to the buffer read by batchq_poll_log(). */
  batchq_log_fn on_log;
  void *user;
} batchq_callbacks;

/* batchq_new() with C callbacks (for C/C++ hosts, never for LuaJIT). cb may be
 * NULL. */
BATCHQ_API int batchq_new_with_callbacks(const char *config_json, size_t len, const batchq_callbacks *cb,
                                         batchq_queue **out, char *errbuf, size_t errbuf_len);

/*
 * Adds one entry: `len` bytes at `data` are copied. Returns 0, or
 * BATCHQ_EFULL / BATCHQ_ETOOLARGE / BATCHQ_EJSON / BATCHQ_ESHUTDOWN (the entry
 * was not taken: the caller still has it), BATCHQ_EINVAL (NULL queue, or NULL
 * data with len > 0; len == 0 is refused too: an empty entry is not JSON).
 * With validate_json on, errbuf receives the parse error and its offset.
 * Whatever validate_json says, an entry that would change the batch's framing
 * (not exactly one JSON value in shape, or a raw CR/LF with ndjson) is refused
 * with BATCHQ_EJSON, errbuf saying what and where.
 *
 * Never blocks on sending and takes no lock held during a send. In the
 * default (memory) mode it moves the entry into the calling thread's own
 * ring (no lock); the entry that crosses the ring's wake threshold (the
 * first of a batch, or one that fills it) locks the queue and signals the
 * worker when the worker sleeps (a futex wake: at queue_size 1 that is every
 * entry), as does a thread's first enqueue or one that finds no credit. With a write-ahead spool it also makes
 * one write(2). Thread-safe: any number of threads may enqueue at once.
 */
BATCHQ_API int batchq_enqueue(batchq_queue *q, const char *data, size_t len);
/* batchq_enqueue() with an error buffer for the reason of a refusal. */
BATCHQ_API int batchq_enqueue_ex(batchq_queue *q, const char *data, size_t len, char *errbuf, size_t errbuf_len);

/* Closes the open batch and waits up to timeout_ms (>= 0) until everything
 * enqueued before the call is delivered or dropped. 0 or BATCHQ_ETIMEDOUT
 * (nothing is lost on a timeout: entries stay queued). Blocks the caller:
 * never call it from an nginx request handler; use it from a timer or at
 * worker exit. Thread-safe. */
BATCHQ_API int batchq_flush(batchq_queue *q, int64_t timeout_ms);

/* Stops accepting entries, tries to deliver what is queued until timeout_ms,
 * then drops what is left (reason BATCHQ_DROP_SHUTDOWN; with a spool_dir it
 * is kept in <spool_dir>/write-ahead for the next owner) and stops the
 * sending thread. Returns 0 if nothing was left at the deadline (entries
 * dropped earlier for other reasons do not count: see batchq_stats), else
 * BATCHQ_ETIMEDOUT. Dropped entries can still be polled afterwards.
 * Idempotent. Blocks up to timeout_ms. Thread-safe, but not concurrently with
 * batchq_free(). */
BATCHQ_API int batchq_shutdown(batchq_queue *q, int64_t timeout_ms);

/* Shuts down (with the configured shutdown_timeout, default 5 s, if not done
 * yet) and frees the queue (in a child after fork(): see below). After
 * batchq_shutdown_begin() it waits for that shutdown instead (at most until
 * its deadline); once batchq_shutdown_poll() has returned 0 it returns
 * without waiting. batchq_free(NULL) is a no-op. After it, `q` must
 * not be used; a second batchq_free() of the same pointer is undefined (the
 * Lua module guards against it). */
BATCHQ_API void batchq_free(batchq_queue *q);
/* After fork(): in the child, every function taking a queue created before
 * the fork returns BATCHQ_EFORK at once (the queue's threads stayed in the
 * parent), and batchq_free() frees the entries without waiting or joining
 * the parent's threads (a few fixed-size parts are kept until exit). The
 * parent's queue is unaffected. */

/* ---- dropped entries and log lines (pull) ----------------------------------- */

/*
 * Moves up to `max` dropped entries, oldest first, out of the queue's bounded
 * drop buffer into out[0..*count). out[i].struct_size must be set by the
 * caller (at least for out[0]; the library uses out[0].struct_size for all).
 * The memory the records point to stays valid until the next call on this
 * queue or batchq_free(). The buffer holds at most drop_buffer_entries entries
 * / drop_buffer_bytes bytes (configuration); what does not fit is counted in
 * batchq_stats.drop_buffer_overflow (and is in the spool if one is set).
 * Thread-safety: one poller at a time per queue; concurrent with enqueue.
 */
BATCHQ_API int batchq_poll_dropped(batchq_queue *q, batchq_dropped *out, size_t max, size_t *count);

/*
 * Moves the oldest buffered log line into buf (NUL-terminated) and its level
 * (0 debug .. 3 error) into *level; *len receives the line's length. Returns
 * 0 with *len == 0 when no line is waiting, and BATCHQ_ESMALLBUF with *len =
 * the line's length when it does not fit in buf_len - 1 bytes: the line stays
 * for a call with a larger buffer (buf may be NULL with buf_len 0 to ask).
 * Holds the last log_buffer_lines lines (default 256); older ones are counted
 * in batchq_stats_t.log_overflow. One poller at a time per queue.
 */
BATCHQ_API int batchq_poll_log(batchq_queue *q, int *level, char *buf, size_t buf_len, size_t *len);

/* ---- statistics -------------------------------------------------------------- */

typedef struct batchq_stats_t {
  size_t struct_size; /* set by the caller to sizeof(batchq_stats_t) */
  /* enqueued == delivered + dropped + pending + in_flight, in every snapshot */
  uint64_t enqueued;
  uint64_t delivered;
  uint64_t dropped;     /* all reasons */
  uint64_t pending;
  uint64_t in_flight;
  uint64_t bytes_held;
  uint64_t dropped_by_reason[16]; /* indexed by enum batchq_drop_reason */
  uint64_t batches_queued;
  uint64_t batches_in_flight;
  uint64_t batches_delivered;
  uint64_t attempts;
  uint64_t failed_attempts;
  uint64_t retried;
  uint64_t refused_full;
  uint64_t refused_too_large;
  uint64_t refused_invalid_json;
  uint64_t refused_shutdown;
  uint64_t drop_buffer_pending;  /* dropped entries waiting for batchq_poll_dropped */
  uint64_t drop_buffer_overflow; /* dropped entries the buffer could not keep */
  uint64_t log_overflow;         /* log lines the buffer could not keep */
  /* spool (0 when no spool is configured) */
  uint64_t spool_records;        /* records appended */
  uint64_t spool_bytes;          /* bytes on disk */
  uint64_t spool_durable_seq;    /* highest record known to be fsync'ed */
  uint64_t spool_errors;         /* failed writes (e.g. ENOSPC) */
  uint64_t spool_evicted;        /* records deleted by the spool_max_bytes cap */
  uint64_t spool_replayed;       /* entries re-queued from the spools at start */
  /* damaged spool regions found since the queue started, and their bytes;
   * each is logged (file, offset) and kept in <spool>/quarantine/ */
  uint64_t spool_damaged_records;
  uint64_t spool_damaged_bytes;
  uint64_t spool_unprotected;    /* write_ahead: entries accepted without a write-ahead record */
  uint64_t spool_unavailable;    /* 1 while a configured spool cannot be opened: the queue works in
                                  * memory and retries it in the background (see the log) */
  /* dropped entries (counted in `dropped`) waiting inside the queue to be
   * handed to the drop callback / buffer, their bytes, and those destroyed
   * unreported because more than the pending-drop bound was waiting */
  uint64_t drop_pending;
  uint64_t drop_pending_bytes;
  uint64_t drops_unreported;
  uint64_t spool_replay_refused; /* entries replayed from the spools at start that the queue
                                  * refused (kept as dead letters) */
  /* New fields are appended here, in the order of the counter table
   * (include/batchq/detail/counters.hpp); capi/batchq.cpp checks it. */
} batchq_stats_t;

/* Fills *out with a consistent snapshot. out->struct_size must be set; a
 * smaller (older) struct gets only the fields it has. Thread-safe. */
BATCHQ_API int batchq_stats(batchq_queue *q, batchq_stats_t *out);

/* The same figures as a JSON object / Prometheus text exposition (metric names
 * prefixed "batchq_", label queue="<name>" from the `name` config key).
 * Writes at most buf_len bytes including a NUL; *out_len receives the length
 * needed (excluding the NUL). BATCHQ_ESMALLBUF if buf_len <= *out_len: call
 * again with a larger buffer. buf may be NULL with buf_len 0 to ask the size. */
BATCHQ_API int batchq_stats_json(batchq_queue *q, char *buf, size_t buf_len, size_t *out_len);
BATCHQ_API int batchq_stats_prometheus(batchq_queue *q, char *buf, size_t buf_len, size_t *out_len);

/* ---- non-blocking shutdown (start, then poll) ------------------------------- */

/*
 * Starts a shutdown and returns at once: never waits on the network, a lock
 * held during a send, or the deadline. When it returns, intake is closed
 * (batchq_enqueue returns BATCHQ_ESHUTDOWN). The queue's own threads then
 * deliver what is queued until timeout_ms (>= 0) from this call; at that
 * deadline an attempt still in flight is cancelled and whatever is left is
 * dropped with reason BATCHQ_DROP_SHUTDOWN: with a spool_dir it is written to
 * <spool_dir>/write-ahead for the next owner (batchq-replay sees it); without
 * one it goes to the drop callback or the drop buffer (batchq_poll_dropped),
 * so the host can print or keep it. Nothing is lost silently.
 *
 * Several queues begun one after the other drain in parallel: each has its
 * own threads, so N queues with the same timeout_ms all finish by about one
 * deadline, not N.
 *
 * Returns 0, also when a shutdown was already begun or done (calling it
 * again is harmless; the first deadline stands); BATCHQ_EINVAL for a NULL
 * queue or a negative timeout; BATCHQ_EINTERNAL if no thread could be
 * started (intake is closed then anyway: call batchq_shutdown()).
 * Thread-safe; must not race with batchq_free().
 */
BATCHQ_API int batchq_shutdown_begin(batchq_queue *q, int64_t timeout_ms);

/*
 * Whether a shutdown begun with batchq_shutdown_begin() (or done with
 * batchq_shutdown()) has finished. Never blocks.
 *   0                   finished: every entry was delivered, or, when the
 *                       deadline came first, is in the write-ahead spool or
 *                       was handed to the drop callback / drop buffer (reason
 *                       BATCHQ_DROP_SHUTDOWN; pull it with
 *                       batchq_poll_dropped, which works after the shutdown).
 *                       The sending threads have ended and the spools are
 *                       synced; batchq_free() now returns without waiting.
 *   BATCHQ_EINPROGRESS  still running (at most until its deadline, plus the
 *                       ~100 ms an attempt in flight takes to notice).
 *   BATCHQ_EINVAL       NULL queue, or no shutdown was begun.
 * batchq_free() on a queue whose shutdown is still running waits for that
 * shutdown, i.e. at most until its deadline; it does not start another.
 * Thread-safe.
 */
BATCHQ_API int batchq_shutdown_poll(batchq_queue *q);
/* ---- entries as LuaJIT string.buffer encodings ------------------------------ */

/*
 * Adds one entry given as a LuaJIT string.buffer encoding of a Lua value
 * (what `require("string.buffer").new():encode(value)` writes; buf:ref()
 * gives its pointer and length without making a Lua string). The queue sends
 * it as the JSON that lua-cjson's cjson.encode(value) would have produced
 * with its default settings (Kong http-log's): numbers as "%.14g", "/"
 * escaped as "\/", empty tables as {}, cjson's array/object and sparse-array
 * rules, ngx.null as null. The JSON is made on the queue's sending thread
 * when a request body is built, and before a dropped entry is handed out
 * (batchq_poll_dropped, on_drop) or written to a spool: everything that
 * shows or keeps an entry shows JSON. In spool_mode "write_ahead" it is made
 * during this call instead (the write-ahead record is JSON).
 *
 * `len` bytes at `data` are copied. Returns what batchq_enqueue_ex() returns,
 * and BATCHQ_EJSON (counted in refused_invalid_json) when the bytes are not
 * one complete encoding, use a string.buffer dictionary, or hold a value
 * cjson.encode() refuses (NaN/Inf, FFI cdata such as int64_t, a
 * lightuserdata other than NULL, an excessively sparse array, a key that is
 * not a number or string, nesting deeper than 1000); errbuf says which and
 * at what offset. The entry is then not taken: encode it with cjson to get
 * cjson's own answer. max_bytes counts the encoded bytes; validate_json does
 * not apply. A table's metatable is not in the encoding, so cjson.array_mt /
 * empty_array_mt have no effect (an empty table is {}).
 * Thread-safe like batchq_enqueue_ex(); never blocks on sending.
 */
BATCHQ_API int batchq_enqueue_lua(batchq_queue *q, const void *data, size_t len, char *errbuf, size_t errbuf_len);

/*
 * Converts one LuaJIT string.buffer encoding to JSON exactly as the queue
 * does for batchq_enqueue_lua() entries (for tools, tests and C hosts).
 * Writes at most buf_len bytes including a NUL; *out_len receives the JSON's
 * length (excluding the NUL). BATCHQ_ESMALLBUF if buf_len <= *out_len (buf
 * may be NULL with buf_len 0 to ask the size); BATCHQ_EJSON with errbuf as
 * for batchq_enqueue_lua(); BATCHQ_EINVAL for NULL data with len > 0, len 0,
 * or a NULL out_len. The JSON is at most 20 * len + 16 bytes. Thread-safe.
 */
BATCHQ_API int batchq_lua_to_json(const void *data, size_t len, char *buf, size_t buf_len, size_t *out_len,
                                  char *errbuf, size_t errbuf_len);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BATCHQ_H */
