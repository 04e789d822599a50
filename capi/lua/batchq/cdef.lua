-- batchq/cdef.lua - the declarations of capi/batchq.h that the batchq
-- module uses, for LuaJIT's FFI, and the header's error codes.
--
-- Written out by hand (the FFI parser takes no #include or #define);
-- tests/lua/test_cdef.lua checks every declaration here against batchq.h
-- (same functions, same struct fields in the same order, same error codes)
-- and fails when the header has a function this file neither declares nor
-- lists in NOT_BOUND. Loading it a second time (package.loaded cleared)
-- does not redefine the types.
local ffi = require "ffi"

local M = {}

-- The C declarations, as batchq.h has them minus BATCHQ_API and comments.
M.declarations = [[
typedef struct batchq_queue batchq_queue;

typedef struct batchq_dropped {
  size_t struct_size;
  int reason;
  uint32_t attempts;
  int64_t time_ms;
  const char *data;
  size_t len;
  const char *last_error;
  size_t last_error_len;
  int spooled;
} batchq_dropped;

typedef struct batchq_stats_t {
  size_t struct_size;
  uint64_t enqueued;
  uint64_t delivered;
  uint64_t dropped;
  uint64_t pending;
  uint64_t in_flight;
  uint64_t bytes_held;
  uint64_t dropped_by_reason[16];
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
  uint64_t drop_buffer_pending;
  uint64_t drop_buffer_overflow;
  uint64_t log_overflow;
  uint64_t spool_records;
  uint64_t spool_bytes;
  uint64_t spool_durable_seq;
  uint64_t spool_errors;
  uint64_t spool_evicted;
  uint64_t spool_replayed;
  uint64_t spool_damaged_records;
  uint64_t spool_damaged_bytes;
  uint64_t spool_unprotected;
  uint64_t spool_unavailable;
  uint64_t drop_pending;
  uint64_t drop_pending_bytes;
  uint64_t drops_unreported;
  uint64_t spool_replay_refused;
} batchq_stats_t;

const char *batchq_strerror(int code);
const char *batchq_version(void);
int batchq_version_number(void);
const char *batchq_drop_reason_name(int reason);

int batchq_new(const char *config_json, size_t len, batchq_queue **out,
               char *errbuf, size_t errbuf_len);
int batchq_enqueue(batchq_queue *q, const char *data, size_t len);
int batchq_enqueue_ex(batchq_queue *q, const char *data, size_t len,
                      char *errbuf, size_t errbuf_len);
int batchq_flush(batchq_queue *q, int64_t timeout_ms);
int batchq_shutdown(batchq_queue *q, int64_t timeout_ms);
void batchq_free(batchq_queue *q);
int batchq_poll_dropped(batchq_queue *q, batchq_dropped *out, size_t max,
                        size_t *count);
int batchq_poll_log(batchq_queue *q, int *level, char *buf, size_t buf_len,
                    size_t *len);
int batchq_stats(batchq_queue *q, batchq_stats_t *out);
int batchq_stats_json(batchq_queue *q, char *buf, size_t buf_len,
                      size_t *out_len);
int batchq_stats_prometheus(batchq_queue *q, char *buf, size_t buf_len,
                            size_t *out_len);
int batchq_shutdown_begin(batchq_queue *q, int64_t timeout_ms);
int batchq_shutdown_poll(batchq_queue *q);
int batchq_enqueue_lua(batchq_queue *q, const void *data, size_t len,
                       char *errbuf, size_t errbuf_len);
int batchq_lua_to_json(const void *data, size_t len, char *buf,
                       size_t buf_len, size_t *out_len, char *errbuf,
                       size_t errbuf_len);
]]

-- Functions of batchq.h deliberately left out: the C callbacks must never be
-- used from Lua (they run on the library's threads). batchq_enqueue (the
-- module calls batchq_enqueue_ex) is declared for bench/lua/bench_ffi.lua.
M.NOT_BOUND = {
  batchq_new_with_callbacks = true,
}

-- Error codes of batchq.h (enum batchq_error, without the BATCHQ_ prefix);
-- append-only there, so a code this table lacks still shows up as its
-- batchq_strerror() text.
M.errors = {
  OK = 0, EINVAL = -1, ECONFIG = -2, EFULL = -3, ETOOLARGE = -4, EJSON = -5,
  ESHUTDOWN = -6, ETIMEDOUT = -7, ENOMEM = -8, ESPOOL = -9, ESMALLBUF = -10,
  EINTERNAL = -11, EINPROGRESS = -12, EFORK = -13,
}

-- The uint64_t scalar fields of batchq_stats_t in declaration order: the Lua
-- view (q:stats()) is made of these, so a field appended to the struct
-- shows up in it without another list to keep.
M.stats_fields = {}
do
  local body = M.declarations:match("typedef struct batchq_stats_t {(.-)} batchq_stats_t;")
  for name in body:gmatch("uint64_t%s+([%w_]+)%s*;") do
    M.stats_fields[#M.stats_fields + 1] = name
  end
end

if not pcall(ffi.typeof, "batchq_stats_t") then
  ffi.cdef(M.declarations)
end

return M
