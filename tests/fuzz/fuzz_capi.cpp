// tests/fuzz/fuzz_capi.cpp - libFuzzer target: sequences of C ABI calls.
//
// The input is decoded into: which of a few fixed configurations to create
// the queue with (all pointing at a closed port on 127.0.0.1, so every send
// fails fast with "connection refused"; tiny timeouts and exponential backoff
// in milliseconds), whether to use C callbacks, then up to 64 calls among
// enqueue (random bytes; validate_json in some configurations), enqueue_ex
// with small/NULL error buffers, NULL/zero-length arguments, flush(0),
// flush(-1), stats with odd struct sizes, stats_json / stats_prometheus with
// random buffer sizes, poll_dropped, poll_log, shutdown(0); batchq_free at the
// end. Every return code must be one the header documents for that call and
// situation; counters must add up (enqueued == number of accepted enqueues,
// the stats invariant, after shutdown everything settled and every drop
// accounted for). Never any address but 127.0.0.1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "batchq.h"
#include "batchq/payload.hpp"
#include "fuzz_check.hpp"

namespace {

// A port on 127.0.0.1 that refuses connections: a socket bound to it (so no
// other process can take it) that never listens. Kept for the whole run.
int closed_port() {
  static int port = [] {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(s >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    FUZZ_CHECK(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    return static_cast<int>(ntohs(a.sin_port));  // s stays open on purpose
  }();
  return port;
}

struct config {
  const char* json;  // printf format with one %d: the port
  bool validate;
  batchq::payload_format format;
};

// Fixed, valid configurations. shutdown_timeout 0 everywhere: batchq_free of a
// queue not shut down drops at once instead of waiting 5 s for a dead host.
const config k_configs[] = {
    {R"({"http_endpoint":"http://127.0.0.1:%d/a","queue_size":4,"retry_count":2,"backoff":"exponential",)"
     R"("initial_retry_delay":0.001,"max_retry_delay":0.002,"flush_timeout":0.001,"timeout":200,)"
     R"("connect_timeout":100,"shutdown_timeout":0,"drop_buffer_entries":16,"log_buffer_lines":8})",
     false, batchq::payload_format::kong},
    {R"({"http_endpoint":"http://127.0.0.1:%d/b","queue_size":2,"retry_count":3,"backoff":"exponential",)"
     R"("initial_retry_delay":0.001,"max_retry_delay":0.004,"flush_timeout":0.002,"timeout":200,)"
     R"("validate_json":true,"max_bytes":256,"max_entries":8,"overflow":"refuse_new","process_delay":0.001,)"
     R"("shutdown_timeout":0,"drop_buffer_bytes":100,"log_buffer_lines":0,"name":"fuzz"})",
     true, batchq::payload_format::kong},
    {R"({"http_endpoint":"http://u:p@127.0.0.1:%d/c","queue_size":1,"retry_count":1,"format":"ndjson",)"
     R"("content_type":"application/x-ndjson","gzip":true,"validate_json":true,"max_entries":4,)"
     R"("overflow":"drop_oldest","timeout":100,"shutdown_timeout":0,"headers":{"X-A":"1"}})",
     true, batchq::payload_format::ndjson},
    {R"({"http_endpoint":"http://127.0.0.1:%d/d","queue_size":3,"retry_count":2,"backoff":"exponential",)"
     R"("initial_retry_delay":0.001,"max_retry_delay":0.001,"batch_max_bytes":64,"max_bytes":128,)"
     R"("max_entries":12,"flush_mode":"coalescing","flush_timeout":0.001,"concurrency":2,"format":"json_array",)"
     R"("max_retry_time":0.01,"timeout":100,"shutdown_timeout":0,"drop_buffer_entries":0})",
     false, batchq::payload_format::json_array},
};

// BATCHQ_EJSON is right for an entry when validate_json is on, or when the
// entry would change its batch's framing (refused whatever validate_json
// says: batchq::check_framing).
bool json_refusal_ok(const config& cfg, const std::string& e) {
  return cfg.validate || !batchq::check_framing(e, cfg.format);
}

struct reader {
  const std::uint8_t* p;
  std::size_t n;
  bool empty() const { return n == 0; }
  std::uint8_t u8() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  std::size_t u16() { return static_cast<std::size_t>(u8()) | static_cast<std::size_t>(u8()) << 8; }
  std::string bytes(std::size_t want) {
    const std::size_t k = want < n ? want : n;
    std::string s(reinterpret_cast<const char*>(p), k);
    p += k;
    n -= k;
    return s;
  }
};

// What the C callbacks saw (callbacks run on the queue's thread).
struct cb_state {
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> logs{0};
};

void on_drop(void* user, const batchq_dropped* e, std::size_t count) {
  FUZZ_CHECK(e != nullptr || count == 0);
  for (std::size_t i = 0; i < count; ++i) {
    FUZZ_CHECK(e[i].struct_size == sizeof(batchq_dropped));
    FUZZ_CHECK(e[i].reason >= 0 && e[i].reason <= BATCHQ_DROP_REJECTED);
    FUZZ_CHECK(e[i].len > 0 && e[i].data != nullptr);
    FUZZ_CHECK(e[i].last_error != nullptr && std::strlen(e[i].last_error) == e[i].last_error_len);
  }
  static_cast<cb_state*>(user)->dropped += count;
}

void on_log(void* user, int level, const char* msg, std::size_t len) {
  FUZZ_CHECK(level >= 0 && level <= 3);
  FUZZ_CHECK(msg != nullptr && std::strlen(msg) == len);
  static_cast<cb_state*>(user)->logs += 1;
}

bool balanced(const batchq_stats_t& s) { return s.enqueued == s.delivered + s.dropped + s.pending + s.in_flight; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in{data, size};
  const std::uint8_t head = in.u8();
  const config& cfg = k_configs[head % (sizeof k_configs / sizeof k_configs[0])];
  const bool with_callbacks = (head & 0x10) != 0;

  char json[1024];
  std::snprintf(json, sizeof json, cfg.json, closed_port());
  char err[256];
  batchq_queue* q = nullptr;
  cb_state seen;
  int rc;
  if (with_callbacks) {
    batchq_callbacks cb{};
    cb.struct_size = sizeof cb;
    cb.on_drop = (head & 0x20) ? on_drop : nullptr;
    cb.on_log = (head & 0x40) ? on_log : nullptr;
    cb.user = &seen;
    rc = batchq_new_with_callbacks(json, std::strlen(json), &cb, &q, err, sizeof err);
  } else {
    rc = batchq_new(json, std::strlen(json), &q, err, sizeof err);
  }
  if (rc != BATCHQ_OK) {
    std::fprintf(stderr, "fuzz_capi: batchq_new failed: %s: %s\n", batchq_strerror(rc), err);
    std::abort();
  }
  const bool pull_drops = !(with_callbacks && (head & 0x20));

  std::uint64_t accepted = 0, polled = 0;
  bool shut = false;
  std::vector<batchq_dropped> drops(9);
  std::vector<char> buf;
  for (int calls = 0; calls < 64 && !in.empty(); ++calls) {
    const std::uint8_t op = in.u8();
    switch (op % 13) {
      case 0:
      case 1: {  // enqueue random bytes
        const std::string e = in.bytes(in.u8() % 200 + (op & 0x80 ? 200 : 0));
        rc = batchq_enqueue(q, e.data(), e.size());
        if (e.empty()) {
          FUZZ_CHECK(rc == BATCHQ_EINVAL);
        } else if (shut) {
          FUZZ_CHECK(rc == BATCHQ_ESHUTDOWN || rc == BATCHQ_ETOOLARGE || (rc == BATCHQ_EJSON && json_refusal_ok(cfg, e)));
        } else {
          FUZZ_CHECK(rc == BATCHQ_OK || rc == BATCHQ_EFULL || rc == BATCHQ_ETOOLARGE ||
                     (rc == BATCHQ_EJSON && json_refusal_ok(cfg, e)));
        }
        if (rc == BATCHQ_OK) ++accepted;
        break;
      }
      case 2: {  // enqueue_ex with a small or NULL error buffer
        const std::string e = in.bytes(in.u8() % 64);
        const std::size_t elen = in.u8() % 40;
        std::vector<char> eb(elen + 1, 'Z');
        char* ebp = (op & 0x80) ? nullptr : eb.data();
        rc = batchq_enqueue_ex(q, e.data(), e.size(), ebp, ebp ? elen : 0);
        if (e.empty()) FUZZ_CHECK(rc == BATCHQ_EINVAL);
        else if (shut) FUZZ_CHECK(rc == BATCHQ_ESHUTDOWN || rc == BATCHQ_ETOOLARGE || (rc == BATCHQ_EJSON && json_refusal_ok(cfg, e)));
        else
          FUZZ_CHECK(rc == BATCHQ_OK || rc == BATCHQ_EFULL || rc == BATCHQ_ETOOLARGE || (rc == BATCHQ_EJSON && json_refusal_ok(cfg, e)));
        if (rc == BATCHQ_OK) ++accepted;
        if (ebp && elen > 0) FUZZ_CHECK(std::memchr(eb.data(), '\0', elen) != nullptr);
        FUZZ_CHECK(eb[elen] == 'Z');  // nothing written past errbuf_len
        break;
      }
      case 3:  // NULL / zero-length arguments
        FUZZ_CHECK(batchq_enqueue(q, nullptr, in.u8()) == BATCHQ_EINVAL);
        FUZZ_CHECK(batchq_enqueue(q, "{}", 0) == BATCHQ_EINVAL);
        FUZZ_CHECK(batchq_enqueue(nullptr, "{}", 2) == BATCHQ_EINVAL);
        FUZZ_CHECK(batchq_stats(q, nullptr) == BATCHQ_EINVAL);
        FUZZ_CHECK(batchq_flush(q, -1 - static_cast<std::int64_t>(in.u8())) == BATCHQ_EINVAL);
        FUZZ_CHECK(batchq_shutdown(q, -1) == BATCHQ_EINVAL);
        break;
      case 4: {  // flush(0)
        rc = batchq_flush(q, 0);
        FUZZ_CHECK(rc == BATCHQ_OK || rc == BATCHQ_ETIMEDOUT);
        break;
      }
      case 5: {  // stats, with a full or an odd struct_size
        batchq_stats_t s;
        std::memset(&s, 0xEE, sizeof s);
        const std::uint8_t k = in.u8();
        s.struct_size = (k & 1) ? sizeof s : k % (sizeof s + 8);
        const std::size_t asked = s.struct_size;
        rc = batchq_stats(q, &s);
        if (asked < sizeof(std::size_t)) {
          FUZZ_CHECK(rc == BATCHQ_EINVAL);
        } else {
          FUZZ_CHECK(rc == BATCHQ_OK);
          FUZZ_CHECK(s.struct_size == asked);
          if (asked >= sizeof s) {
            FUZZ_CHECK(balanced(s));
            FUZZ_CHECK(s.enqueued == accepted);
            if (shut) FUZZ_CHECK(s.pending == 0 && s.in_flight == 0);
          }
        }
        break;
      }
      case 6:
      case 7: {  // stats_json / stats_prometheus with a random buffer size
        const std::size_t blen = in.u16() % 5000;
        buf.assign(blen + 1, 'Z');
        std::size_t need = 12345;
        const bool null_buf = (in.u8() & 7) == 0;
        char* b = null_buf ? nullptr : buf.data();
        rc = (op % 13 == 6) ? batchq_stats_json(q, b, blen, &need) : batchq_stats_prometheus(q, b, blen, &need);
        if (null_buf && blen > 0) {
          FUZZ_CHECK(rc == BATCHQ_EINVAL);
        } else if (rc == BATCHQ_OK) {
          FUZZ_CHECK(need < blen && buf[need] == '\0' && std::strlen(buf.data()) == need);
        } else {
          FUZZ_CHECK(rc == BATCHQ_ESMALLBUF);
          FUZZ_CHECK(need >= blen && need > 0);
          if (b && blen > 0) FUZZ_CHECK(buf[0] == '\0');
        }
        FUZZ_CHECK(buf.empty() || buf[blen] == 'Z');
        FUZZ_CHECK(batchq_stats_json(q, nullptr, 0, nullptr) == BATCHQ_EINVAL);
        break;
      }
      case 8: {  // poll_dropped
        const std::size_t max = in.u8() % 10;
        for (auto& d : drops) d.struct_size = sizeof d;
        std::size_t count = 777;
        rc = batchq_poll_dropped(q, max ? drops.data() : nullptr, max > 8 ? 8 : max, &count);
        FUZZ_CHECK(rc == BATCHQ_OK);
        FUZZ_CHECK(count <= (max > 8 ? 8 : max));
        if (!pull_drops) FUZZ_CHECK(count == 0);
        for (std::size_t i = 0; i < count; ++i) {
          FUZZ_CHECK(drops[i].reason >= 0 && drops[i].reason <= BATCHQ_DROP_REJECTED);
          FUZZ_CHECK(drops[i].len > 0 && drops[i].data != nullptr);
          FUZZ_CHECK(drops[i].last_error != nullptr && std::strlen(drops[i].last_error) == drops[i].last_error_len);
        }
        polled += count;
        count = 5;
        FUZZ_CHECK(batchq_poll_dropped(q, nullptr, 1, &count) == BATCHQ_EINVAL && count == 0);
        break;
      }
      case 9: {  // poll_log with a random buffer size (0 allowed: asks the length)
        const std::size_t blen = in.u8() % 100;
        buf.assign(blen + 1, 'Z');
        int level = -1;
        std::size_t len = 999;
        rc = batchq_poll_log(q, &level, blen ? buf.data() : nullptr, blen, &len);
        if (rc == BATCHQ_ESMALLBUF) {
          FUZZ_CHECK(len > 0 && len + 1 > blen);  // does not fit: left for a larger buffer
        } else {
          FUZZ_CHECK(rc == BATCHQ_OK);
          if (len > 0) FUZZ_CHECK(level >= 0 && level <= 3 && len < blen && std::strlen(buf.data()) == len);
        }
        if (blen > 0) FUZZ_CHECK(std::memchr(buf.data(), '\0', blen) != nullptr);
        FUZZ_CHECK(buf[blen] == 'Z');
        break;
      }
      case 10: {  // shutdown(0): idempotent
        rc = batchq_shutdown(q, 0);
        FUZZ_CHECK(rc == BATCHQ_OK || rc == BATCHQ_ETIMEDOUT);
        shut = true;
        break;
      }
      case 11: {  // valid JSON entries, so that validating queues take some
        const char* e = (op & 0x80) ? R"({"request":{"uri":"/fuzz"},"status":200})" : "[1,2,3]";
        rc = batchq_enqueue(q, e, std::strlen(e));
        if (shut) FUZZ_CHECK(rc == BATCHQ_ESHUTDOWN || rc == BATCHQ_ETOOLARGE);
        else FUZZ_CHECK(rc == BATCHQ_OK || rc == BATCHQ_EFULL || rc == BATCHQ_ETOOLARGE);
        if (rc == BATCHQ_OK) ++accepted;
        break;
      }
      case 12: {  // strerror / reason names of any value: never NULL
        const int v = static_cast<int>(static_cast<std::int8_t>(in.u8()));
        FUZZ_CHECK(batchq_strerror(v) != nullptr && batchq_drop_reason_name(v) != nullptr);
        break;
      }
    }
  }

  // After shutdown everything has settled and every drop is accounted for.
  if (in.u8() & 1 || shut) {
    rc = batchq_shutdown(q, 0);
    FUZZ_CHECK(rc == BATCHQ_OK || rc == BATCHQ_ETIMEDOUT);
    batchq_stats_t s;
    s.struct_size = sizeof s;
    FUZZ_CHECK(batchq_stats(q, &s) == BATCHQ_OK);
    FUZZ_CHECK(balanced(s) && s.enqueued == accepted);
    FUZZ_CHECK(s.pending == 0 && s.in_flight == 0);
    FUZZ_CHECK(s.refused_full + s.refused_too_large + s.refused_invalid_json + s.refused_shutdown <= 64);
    if (pull_drops) {
      FUZZ_CHECK(s.dropped == polled + s.drop_buffer_pending + s.drop_buffer_overflow + s.drops_unreported);
    } else {
      FUZZ_CHECK(s.dropped == seen.dropped.load() + s.drops_unreported);
    }
    FUZZ_CHECK(batchq_enqueue(q, "{}", 2) == BATCHQ_ESHUTDOWN);
  }
  batchq_free(q);
  return 0;
}
