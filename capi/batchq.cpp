// extern "C" shims over batchq::http_log. No logic of its own: argument
// checks, copying, error-code mapping, and catching every exception so that
// none crosses into C or LuaJIT (which cannot unwind C++ frames).
#include "batchq.h"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "batchq/http_log.hpp"
#include "batchq/lua_json.hpp"
#include "batchq/version.h"

struct batchq_queue {
  std::unique_ptr<batchq::http_log> log;
  // What the last batchq_poll_dropped() handed out; the records point here.
  std::vector<batchq::dropped_entry> polled;
};

namespace {

void set_err(char* buf, std::size_t len, const std::string& msg) {
  if (!buf || len == 0) return;
  const std::size_t n = std::min(len - 1, msg.size());
  std::memcpy(buf, msg.data(), n);
  buf[n] = '\0';
}

// Runs f() (which returns a BATCHQ_ code); an exception becomes
// BATCHQ_ENOMEM or BATCHQ_EINTERNAL with errbuf saying which.
template <class F>
int guarded(char* errbuf, std::size_t errbuf_len, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    set_err(errbuf, errbuf_len, "out of memory");
    return BATCHQ_ENOMEM;
  } catch (...) {
    set_err(errbuf, errbuf_len, "unknown internal error");
    return BATCHQ_EINTERNAL;
  }
}

int code_of(batchq::enqueue_result r) {
  switch (r) {
    case batchq::enqueue_result::accepted: return BATCHQ_OK;
    case batchq::enqueue_result::too_large: return BATCHQ_ETOOLARGE;
    case batchq::enqueue_result::queue_full: return BATCHQ_EFULL;
    case batchq::enqueue_result::shut_down: return BATCHQ_ESHUTDOWN;
    case batchq::enqueue_result::invalid_json: return BATCHQ_EJSON;
  }
  return BATCHQ_EINTERNAL;
}

void fill_dropped(batchq_dropped& d, const batchq::dropped_entry& e) {
  d.reason = static_cast<int>(e.reason);
  d.attempts = static_cast<uint32_t>(std::min<std::size_t>(e.attempts, UINT32_MAX));
  d.time_ms = e.time_ms;
  d.data = e.data.data();
  d.len = e.data.size();
  d.last_error = e.last_error.c_str();
  d.last_error_len = e.last_error.size();
  d.spooled = e.spooled ? 1 : 0;
}

// Copies into *out the first out->struct_size bytes of `full` (at most
// sizeof(S)) and keeps out->struct_size: a caller built against an older,
// shorter struct (its first member is its own size) gets the prefix it knows.
template <class S>
void copy_prefix(S* out, const S& full) {
  const std::size_t want = out->struct_size;
  const std::size_t n = std::min(want, sizeof(S));
  std::memcpy(static_cast<void*>(out), &full, n);
  out->struct_size = want;
}

// A queue created before fork() used in the child: its threads are the
// parent's (http_log::forked()).
bool forked(const batchq_queue* q, char* errbuf = nullptr, std::size_t errbuf_len = 0) {
  if (!q->log->forked()) return false;
  set_err(errbuf, errbuf_len, batchq::fork_error().what());
  return true;
}

int write_text(const std::string& text, char* buf, std::size_t buf_len, std::size_t* out_len) {
  if (out_len) *out_len = text.size();
  if (!buf || buf_len <= text.size()) {
    if (buf && buf_len) buf[0] = '\0';
    return BATCHQ_ESMALLBUF;
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  return BATCHQ_OK;
}

int create(const char* json, std::size_t len, const batchq_callbacks* cb, batchq_queue** out, char* errbuf,
           std::size_t errbuf_len) {
  if (out) *out = nullptr;
  set_err(errbuf, errbuf_len, "");  // NUL-terminated on every path, "" on success
  if (!out) {
    set_err(errbuf, errbuf_len, "out: must not be NULL");
    return BATCHQ_EINVAL;
  }
  if (!json || len == 0) {
    set_err(errbuf, errbuf_len, "config_json: must be a JSON object (got NULL or length 0)");
    return BATCHQ_EINVAL;
  }
  if (cb && cb->struct_size < offsetof(batchq_callbacks, user) + sizeof(void*)) {
    set_err(errbuf, errbuf_len, "callbacks: struct_size must be sizeof(batchq_callbacks)");
    return BATCHQ_EINVAL;
  }
  try {
    auto q = std::make_unique<batchq_queue>();
    batchq::http_log_options o = batchq::parse_http_log_config(std::string_view(json, len));
    batchq::http_log_callbacks hcb;
    if (cb) {
      const batchq_callbacks c = *cb;  // the lambdas below keep their own copy
      if (c.on_drop) {
        hcb.on_drop = [c](batchq::span<std::string> entries, const batchq::drop_info& info, bool spooled) {
          std::vector<batchq_dropped> recs(entries.size());
          const std::string last_error(info.last_error);
          for (std::size_t i = 0; i < entries.size(); ++i) {
            batchq_dropped& d = recs[i];
            d.struct_size = sizeof(batchq_dropped);
            d.reason = static_cast<int>(info.reason);
            d.attempts = static_cast<uint32_t>(info.attempts);
            d.time_ms = info.time_ms;
            d.data = entries[i].data();
            d.len = entries[i].size();
            d.last_error = last_error.c_str();
            d.last_error_len = last_error.size();
            d.spooled = spooled ? 1 : 0;
          }
          c.on_drop(c.user, recs.data(), recs.size());
        };
      }
      if (c.on_log) {
        hcb.on_log = [c](batchq::log_level l, std::string_view text) {
          const std::string line(text);
          c.on_log(c.user, static_cast<int>(l), line.c_str(), line.size());
        };
      }
    }
    q->log = std::make_unique<batchq::http_log>(std::move(o), std::move(hcb));
    *out = q.release();
    return BATCHQ_OK;
  } catch (const batchq::options_error& e) {
    set_err(errbuf, errbuf_len, e.what());
    return BATCHQ_ECONFIG;
  } catch (const std::bad_alloc&) {
    set_err(errbuf, errbuf_len, "out of memory");
    return BATCHQ_ENOMEM;
  } catch (const batchq::spool_dir_error& e) {
    set_err(errbuf, errbuf_len, e.what());
    return BATCHQ_ESPOOL;
  } catch (const std::runtime_error& e) {
    set_err(errbuf, errbuf_len, e.what());
    return BATCHQ_ECONFIG;
  } catch (const std::exception& e) {
    set_err(errbuf, errbuf_len, e.what());
    return BATCHQ_EINTERNAL;
  } catch (...) {
    set_err(errbuf, errbuf_len, "unknown internal error");
    return BATCHQ_EINTERNAL;
  }
}

}  // namespace

namespace {

// One enqueue for both entry kinds (JSON text, string.buffer bytes): the
// argument checks, the fork check, and errbuf NUL-terminated on every path
// (batchq.h): "" when accepted.
template <class Enqueue>
int enqueue_common(batchq_queue* q, const void* data, size_t len, char* errbuf, size_t errbuf_len,
                   const char* what, Enqueue&& enqueue) {
  if (!q) {
    set_err(errbuf, errbuf_len, "queue: must not be NULL");
    return BATCHQ_EINVAL;
  }
  if (!data || len == 0) {
    set_err(errbuf, errbuf_len, std::string("entry: must be ") + what + " (got NULL or length 0)");
    return BATCHQ_EINVAL;
  }
  if (forked(q, errbuf, errbuf_len)) return BATCHQ_EFORK;
  return guarded(errbuf, errbuf_len, [&]() -> int {
    std::string why;
    const auto r = enqueue(std::string_view(static_cast<const char*>(data), len), errbuf ? &why : nullptr);
    set_err(errbuf, errbuf_len, r != batchq::enqueue_result::accepted ? why : std::string());
    return code_of(r);
  });
}

}  // namespace

extern "C" {

BATCHQ_API const char* batchq_strerror(int code) {
  switch (code) {
    case BATCHQ_OK: return "BATCHQ_OK: success";
    case BATCHQ_EINVAL: return "BATCHQ_EINVAL: invalid argument (NULL pointer or bad value)";
    case BATCHQ_ECONFIG: return "BATCHQ_ECONFIG: configuration refused";
    case BATCHQ_EFULL: return "BATCHQ_EFULL: queue full";
    case BATCHQ_ETOOLARGE: return "BATCHQ_ETOOLARGE: entry larger than max_bytes";
    case BATCHQ_EJSON: return "BATCHQ_EJSON: entry is not valid JSON";
    case BATCHQ_ESHUTDOWN: return "BATCHQ_ESHUTDOWN: queue is shut down";
    case BATCHQ_ETIMEDOUT: return "BATCHQ_ETIMEDOUT: did not finish in time";
    case BATCHQ_ENOMEM: return "BATCHQ_ENOMEM: out of memory";
    case BATCHQ_ESPOOL: return "BATCHQ_ESPOOL: spool error";
    case BATCHQ_ESMALLBUF: return "BATCHQ_ESMALLBUF: buffer too small";
    case BATCHQ_EINTERNAL: return "BATCHQ_EINTERNAL: internal error";
    case BATCHQ_EINPROGRESS: return "BATCHQ_EINPROGRESS: shutdown still running";
    case BATCHQ_EFORK:
      return "BATCHQ_EFORK: queue used in a child process after fork(); create queues after forking";
    default: return "unknown error";
  }
}

BATCHQ_API const char* batchq_version(void) { return BATCHQ_VERSION_STRING; }

BATCHQ_API int batchq_version_number(void) { return BATCHQ_VERSION_NUMBER; }

BATCHQ_API const char* batchq_drop_reason_name(int reason) {
  if (reason < 0 || reason >= static_cast<int>(batchq::drop_reason_count)) return "unknown";
  return batchq::to_string(static_cast<batchq::drop_reason>(reason));
}

BATCHQ_API int batchq_new(const char* config_json, size_t len, batchq_queue** out, char* errbuf, size_t errbuf_len) {
  return create(config_json, len, nullptr, out, errbuf, errbuf_len);
}

BATCHQ_API int batchq_new_with_callbacks(const char* config_json, size_t len, const batchq_callbacks* cb,
                                         batchq_queue** out, char* errbuf, size_t errbuf_len) {
  return create(config_json, len, cb, out, errbuf, errbuf_len);
}

BATCHQ_API int batchq_enqueue_ex(batchq_queue* q, const char* data, size_t len, char* errbuf, size_t errbuf_len) {
  return enqueue_common(q, data, len, errbuf, errbuf_len, "non-empty",
                        [q](std::string_view e, std::string* why) { return q->log->enqueue_copy(e, why); });
}

BATCHQ_API int batchq_enqueue(batchq_queue* q, const char* data, size_t len) {
  return batchq_enqueue_ex(q, data, len, nullptr, 0);
}

BATCHQ_API int batchq_flush(batchq_queue* q, int64_t timeout_ms) {
  if (!q || timeout_ms < 0) return BATCHQ_EINVAL;
  if (forked(q)) return BATCHQ_EFORK;
  return q->log->flush(std::chrono::milliseconds(timeout_ms)) ? BATCHQ_OK : BATCHQ_ETIMEDOUT;
}

BATCHQ_API int batchq_shutdown(batchq_queue* q, int64_t timeout_ms) {
  if (!q || timeout_ms < 0) return BATCHQ_EINVAL;
  if (forked(q)) return BATCHQ_EFORK;
  return q->log->shutdown(std::chrono::milliseconds(timeout_ms)) ? BATCHQ_OK : BATCHQ_ETIMEDOUT;
}

BATCHQ_API int batchq_shutdown_begin(batchq_queue* q, int64_t timeout_ms) {
  if (!q || timeout_ms < 0) return BATCHQ_EINVAL;
  if (forked(q)) return BATCHQ_EFORK;
  return q->log->shutdown_begin(std::chrono::milliseconds(timeout_ms)) ? BATCHQ_OK : BATCHQ_EINTERNAL;
}

BATCHQ_API int batchq_shutdown_poll(batchq_queue* q) {
  if (!q) return BATCHQ_EINVAL;
  if (forked(q)) return BATCHQ_EFORK;
  if (!q->log->shutdown_started()) return BATCHQ_EINVAL;
  return q->log->shutdown_finished() ? BATCHQ_OK : BATCHQ_EINPROGRESS;
}

BATCHQ_API void batchq_free(batchq_queue* q) {
  if (!q) return;
  try {
    delete q;  // http_log's destructor shuts down with shutdown_timeout
  } catch (...) {
  }
}

BATCHQ_API int batchq_poll_dropped(batchq_queue* q, batchq_dropped* out, size_t max, size_t* count) {
  if (count) *count = 0;
  if (!q || !count || (max > 0 && !out)) return BATCHQ_EINVAL;
  if (max > 0 && out[0].struct_size < offsetof(batchq_dropped, spooled)) return BATCHQ_EINVAL;
  if (forked(q)) return BATCHQ_EFORK;
  try {
    q->polled.clear();
    const std::size_t n = q->log->poll_dropped(q->polled, max);
    const std::size_t stride = max > 0 ? out[0].struct_size : 0;
    for (std::size_t i = 0; i < n; ++i) {
      batchq_dropped full{};
      full.struct_size = sizeof(batchq_dropped);
      fill_dropped(full, q->polled[i]);
      // The caller's array elements are `stride` bytes apart.
      auto* dst = reinterpret_cast<batchq_dropped*>(reinterpret_cast<char*>(out) + i * stride);
      dst->struct_size = stride;
      copy_prefix(dst, full);
    }
    *count = n;
    return BATCHQ_OK;
  } catch (const std::bad_alloc&) {
    return BATCHQ_ENOMEM;
  } catch (...) {
    return BATCHQ_EINTERNAL;
  }
}

BATCHQ_API int batchq_poll_log(batchq_queue* q, int* level, char* buf, size_t buf_len, size_t* len) {
  if (len) *len = 0;
  if (!q || !level || !len || (!buf && buf_len)) return BATCHQ_EINVAL;
  if (forked(q)) return BATCHQ_EFORK;
  try {
    batchq::log_level l;
    std::string line;
    std::size_t needed = 0;
    if (!q->log->poll_log(l, line, buf_len, &needed)) {
      if (buf && buf_len) buf[0] = '\0';
      if (needed == 0) return BATCHQ_OK;  // nothing waiting
      *len = needed;                       // too long for buf: left in place
      return BATCHQ_ESMALLBUF;
    }
    *level = static_cast<int>(l);
    *len = line.size();
    set_err(buf, buf_len, line);
    return BATCHQ_OK;
  } catch (...) {
    return BATCHQ_EINTERNAL;
  }
}

// batchq_stats_t from the counter table (batchq/detail/counters.hpp): each
// row's field, in table order, and nothing else. The per-result family is
// four fields named after the C constants' wording.
#define BQ_C_FILL_queue(m, c) f.c = s.m;
#define BQ_C_FILL_total(m, c) f.c = s.m();
#define BQ_C_FILL_buffer(m, c) f.c = b.m;
#define BQ_C_FILL_spool(m, c) f.c = sp.m;
#define BQ_C_FILL_reason(m, c) \
  for (std::size_t r = 0; r < batchq::drop_reason_count; ++r) f.c[r] = s.m[r];
#define BQ_C_FILL_result(m, c)                                                              \
  f.c##_full = s.m[static_cast<std::size_t>(batchq::enqueue_result::queue_full)];           \
  f.c##_too_large = s.m[static_cast<std::size_t>(batchq::enqueue_result::too_large)];       \
  f.c##_invalid_json = s.m[static_cast<std::size_t>(batchq::enqueue_result::invalid_json)]; \
  f.c##_shutdown = s.m[static_cast<std::size_t>(batchq::enqueue_result::shut_down)];
#define BQ_C_FILL(g, m, c, p, t, h) BQ_C_FILL_##g(m, c)

// Where each row lives in batchq_stats_t: {offset, bytes}.
struct c_span {
  std::size_t offset, size;
};
#define BQ_C_SPAN_queue(c) c_span{offsetof(batchq_stats_t, c), sizeof(std::uint64_t)},
#define BQ_C_SPAN_total(c) BQ_C_SPAN_queue(c)
#define BQ_C_SPAN_buffer(c) BQ_C_SPAN_queue(c)
#define BQ_C_SPAN_spool(c) BQ_C_SPAN_queue(c)
#define BQ_C_SPAN_reason(c) c_span{offsetof(batchq_stats_t, c), sizeof(batchq_stats_t::c)},
#define BQ_C_SPAN_result(c)                                                                          \
  c_span{offsetof(batchq_stats_t, c##_full), 8}, c_span{offsetof(batchq_stats_t, c##_too_large), 8}, \
      c_span{offsetof(batchq_stats_t, c##_invalid_json), 8}, c_span{offsetof(batchq_stats_t, c##_shutdown), 8},
#define BQ_C_SPAN(g, m, c, p, t, h) BQ_C_SPAN_##g(c)
constexpr c_span stats_spans[] = {BATCHQ_COUNTERS(BQ_C_SPAN)};

// True when the rows tile batchq_stats_t exactly, after struct_size, in
// table order: a field the table lacks, a row the struct lacks, or a
// different order fails the build here.
constexpr bool stats_struct_follows_table() {
  std::size_t at = sizeof(size_t);
  for (const c_span& sp : stats_spans) {
    if (sp.offset != at) return false;
    at += sp.size;
  }
  return at == sizeof(batchq_stats_t);
}
static_assert(stats_struct_follows_table(),
              "batchq_stats_t (capi/batchq.h) and the counter table (include/batchq/detail/counters.hpp) differ");
static_assert(sizeof(batchq_stats_t::dropped_by_reason) / sizeof(std::uint64_t) >= batchq::drop_reason_count,
              "batchq_stats_t::dropped_by_reason has fewer slots than drop_reason has values");
static_assert(std::tuple_size<decltype(batchq::queue_stats::refused)>::value == 5,
              "a new enqueue_result needs its refused_* field in batchq_stats_t and BQ_C_FILL_result");

BATCHQ_API int batchq_stats(batchq_queue* q, batchq_stats_t* out) {
  if (!q || !out || out->struct_size < sizeof(size_t)) return BATCHQ_EINVAL;
  if (forked(q)) return BATCHQ_EFORK;
  try {
    const batchq::queue_stats s = q->log->stats();
    const batchq::spool_figures sp = q->log->spool_stats();
    const batchq::buffer_figures b = q->log->buffer_stats();
    batchq_stats_t f{};
    f.struct_size = sizeof(f);
    BATCHQ_COUNTERS(BQ_C_FILL)
    copy_prefix(out, f);
    return BATCHQ_OK;
  } catch (...) {
    return BATCHQ_EINTERNAL;
  }
}

BATCHQ_API int batchq_stats_json(batchq_queue* q, char* buf, size_t buf_len, size_t* out_len) {
  if (out_len) *out_len = 0;
  if (!q || !out_len || (!buf && buf_len)) return BATCHQ_EINVAL;
  if (forked(q)) return BATCHQ_EFORK;
  try {
    return write_text(q->log->stats_json(), buf, buf_len, out_len);
  } catch (...) {
    return BATCHQ_EINTERNAL;
  }
}

BATCHQ_API int batchq_stats_prometheus(batchq_queue* q, char* buf, size_t buf_len, size_t* out_len) {
  if (out_len) *out_len = 0;
  if (!q || !out_len || (!buf && buf_len)) return BATCHQ_EINVAL;
  if (forked(q)) return BATCHQ_EFORK;
  try {
    return write_text(q->log->stats_prometheus(), buf, buf_len, out_len);
  } catch (...) {
    return BATCHQ_EINTERNAL;
  }
}

BATCHQ_API int batchq_enqueue_lua(batchq_queue* q, const void* data, size_t len, char* errbuf, size_t errbuf_len) {
  return enqueue_common(q, data, len, errbuf, errbuf_len, "a non-empty string.buffer encoding",
                        [q](std::string_view e, std::string* why) { return q->log->enqueue_lua_copy(e, why); });
}

BATCHQ_API int batchq_lua_to_json(const void* data, size_t len, char* buf, size_t buf_len, size_t* out_len,
                                  char* errbuf, size_t errbuf_len) {
  if (out_len) *out_len = 0;
  set_err(errbuf, errbuf_len, "");
  if (!out_len || (!buf && buf_len)) {
    set_err(errbuf, errbuf_len, "out_len: must not be NULL (and buf NULL only with buf_len 0)");
    return BATCHQ_EINVAL;
  }
  if (!data || len == 0) {
    set_err(errbuf, errbuf_len, "data: must be a non-empty string.buffer encoding (got NULL or length 0)");
    return BATCHQ_EINVAL;
  }
  return guarded(errbuf, errbuf_len, [&]() -> int {
    std::string json, why;
    if (!batchq::lua_to_json(std::string_view(static_cast<const char*>(data), len), json, &why)) {
      set_err(errbuf, errbuf_len, why);
      return BATCHQ_EJSON;
    }
    return write_text(json, buf, buf_len, out_len);
  });
}

}  // extern "C"
