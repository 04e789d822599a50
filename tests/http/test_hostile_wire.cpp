// Issue 12, items 5, 9 and 10: what a hostile entry, receiver or
// configuration can do to the payload, the sender and the configuration.
// Real loopback receivers on 127.0.0.1, a real dead-letter spool on disk.
//   - poison entries: one entry never changes a batch's framing (every format)
//   - split_on_4xx: a batch refused with a permanent 4xx is bisected, so only
//     the refused entries are dropped, with the receiver's answer
//   - secrets: configured header values and URL credentials never leave the
//     library in error texts, log lines, drop reports, spool records or stats
//   - configuration: a 1 MB unknown key, a URL password with a raw '#'
#include "support/catch.hpp"
#include "support/receiver.hpp"

#include <batchq/batch_queue.hpp>
#include <batchq/http_log.hpp>
#include <batchq/http_sender.hpp>
#include <batchq/payload.hpp>
#include <batchq/spool.hpp>

#include <rapidjson/document.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "support/test_util.hpp"

using namespace std::chrono_literals;
using batchq::drop_reason;
using batchq::enqueue_result;
using batchq::payload_format;
using batchq::test::receiver;
using batchq::test::recorded_request;
using batchq::test::reply;

namespace {

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

std::string entry_n(long n, bool poison = false) {
  return "{\"n\":" + std::to_string(n) + (poison ? ",\"poison\":true" : "") + ",\"msg\":\"hello\"}";
}

// The "n" of every object in a body: a bare object, an array, or ndjson lines.
// Returns false if the body does not parse that way.
bool ns_of(const std::string& body, payload_format f, std::vector<long>& out) {
  auto take = [&](const rapidjson::Value& v) {
    if (!v.IsObject() || !v.HasMember("n") || !v["n"].IsInt64()) return false;
    out.push_back(static_cast<long>(v["n"].GetInt64()));
    return true;
  };
  if (f == payload_format::ndjson) {
    std::size_t pos = 0;
    while (pos < body.size()) {
      const std::size_t nl = body.find('\n', pos);
      if (nl == std::string::npos) return false;  // every line ends with '\n'
      rapidjson::Document d;
      d.Parse(body.data() + pos, nl - pos);
      if (d.HasParseError() || !take(d)) return false;
      pos = nl + 1;
    }
    return true;
  }
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError()) return false;
  if (d.IsArray()) {
    for (const auto& v : d.GetArray())
      if (!take(v)) return false;
    return true;
  }
  return take(d);
}

// A strict receiver: 200 when every record of the body parses and has an
// "n" (counted), else 400 with a body saying so - as a log backend does.
struct strict_receiver {
  payload_format format;
  receiver rx;
  std::mutex mu;
  std::map<long, int> accepted;
  std::size_t refused = 0;
  explicit strict_receiver(payload_format f) : format(f) {
    rx.set_responder([this](const recorded_request& req) {
      std::vector<long> ns;
      std::lock_guard<std::mutex> g(mu);
      if (!ns_of(req.body, format, ns)) {
        ++refused;
        return reply::with_status(400, "malformed record in batch");
      }
      for (long n : ns) ++accepted[n];
      return reply::with_status(200);
    });
  }
};

// Per entry number, how often the receiver accepted it (responder threads
// write, the test thread checks after flush).
struct tally {
  std::mutex mu;
  std::map<long, int> delivered;
  // Counts the entries of an accepted body; call with mu held.
  void accept_locked(const std::string& body, payload_format f) {
    std::vector<long> ns;
    if (ns_of(body, f, ns))
      for (long n : ns) ++delivered[n];
  }
  reply accept(const std::string& body, payload_format f) {
    std::lock_guard<std::mutex> g(mu);
    accept_locked(body, f);
    return reply::with_status(200);
  }
  // `expected` distinct entries accepted, each exactly once, and not `absent`.
  void check_each_once(std::size_t expected, long absent = -1) {
    std::lock_guard<std::mutex> g(mu);
    CHECK(delivered.size() == expected);
    if (absent >= 0) CHECK(delivered.count(absent) == 0);
    for (const auto& [n, times] : delivered) CHECK(times == 1);
  }
};

struct reports {
  std::mutex mu;
  std::vector<std::string> dropped;
  std::vector<drop_reason> reasons;
  std::vector<std::string> errors;
  std::vector<std::string> lines;
  batchq::http_log_callbacks callbacks() {
    batchq::http_log_callbacks cb;
    cb.on_drop = [this](batchq::span<std::string> e, const batchq::drop_info& info, bool) {
      std::lock_guard<std::mutex> g(mu);
      for (auto& s : e) {
        dropped.push_back(s);
        reasons.push_back(info.reason);
        errors.emplace_back(info.last_error);
      }
    };
    cb.on_log = [this](batchq::log_level, std::string_view line) {
      std::lock_guard<std::mutex> g(mu);
      lines.emplace_back(line);
    };
    return cb;
  }
};

batchq::http_log_options batch_options(const std::string& url, std::size_t batch, payload_format f) {
  batchq::http_log_options o;
  o.http.http_endpoint = url;
  o.http.timeout = 5000ms;
  o.format = f;
  if (f == payload_format::ndjson) o.http.content_type = "application/x-ndjson";
  o.queue.batch_max_size = batch;
  o.queue.max_entries = 0;
  o.queue.flush_timeout = 50ms;
  o.queue.retry_count = 2;
  o.queue.backoff = batchq::backoff_policy::exponential;
  o.queue.initial_retry_delay = 5ms;
  o.queue.max_retry_delay = 10ms;
  return o;
}

}  // namespace

// ---- item 5: poison entries ------------------------------------------------

TEST_CASE("check_framing: exactly one JSON value per entry, no raw newline in ndjson", "[poison]") {
  const payload_format all[] = {payload_format::kong, payload_format::json_array, payload_format::ndjson};
  for (const auto f : all) {
    INFO("format " << batchq::to_string(f));
    for (const char* ok : {R"({"a":1})", R"( {"a":[1,{"b":"]}\"["}]} )", "[]", "[[[]]]", "123", "-1.5e3", "true",
                           "null", R"("a string with , and ] and \" inside")", R"({"a":"x\\"})",
                           R"({"a":tru})" /* bad grammar, right shape: the receiver's business */}) {
      std::string err = "untouched";
      CHECK(batchq::check_framing(ok, f, &err));
      INFO(ok);
    }
    for (const char* bad : {"", "   ", R"({"a":1},{"b":2})", R"({"a":1}{"b":2})", R"({"a":1} {"b":2})",
                            "{\"a\":1}]", "]", "}", ",", R"({"a":1)", R"({"a":[1})", R"({"a":"x)", R"("abc)",
                            R"(["x\"])", "1,2", "1 2", "true false", R"({"a":1}])", R"("a","b")", "1:2"}) {
      std::string err;
      INFO("entry " << bad);
      CHECK_FALSE(batchq::check_framing(bad, f, &err));
      CHECK(contains(err, "framing"));
      CHECK(contains(err, "at offset"));
      CHECK(contains(err, "send exactly one JSON value per entry"));
    }
  }
  // A raw newline is whitespace for JSON (fine in an array) but ends an ndjson line.
  for (const char* nl : {"{\"a\":1,\n\"b\":2}", "{\"a\":1}\n", "\n{\"a\":1}", "{\"a\":1}\r", "[1,\r\n2]"}) {
    INFO("entry with a newline: " << nl);
    CHECK(batchq::check_framing(nl, payload_format::json_array));
    CHECK(batchq::check_framing(nl, payload_format::kong));
    std::string err;
    CHECK_FALSE(batchq::check_framing(nl, payload_format::ndjson, &err));
    CHECK(contains(err, "raw newline"));
  }
  // Inside a string a raw newline is invalid JSON anyway; in ndjson it is framing.
  std::string err;
  CHECK_FALSE(batchq::check_framing("{\"a\":\"x\ny\"}", payload_format::ndjson, &err));
  CHECK(contains(err, "offset 7"));
  // Long strings (scanned with memchr past 32 bytes): an escaped quote does
  // not end them, an even run of backslashes before a quote does.
  const std::string x100(100, 'x');
  CHECK(batchq::check_framing("{\"a\":\"" + x100 + "\\\"" + x100 + "\\\\\"}", payload_format::json_array));
  CHECK_FALSE(batchq::check_framing("{\"a\":\"" + x100 + "\\\"}", payload_format::json_array));
  CHECK_FALSE(batchq::check_framing("{\"a\":\"" + x100 + "\\\\\\\"}", payload_format::json_array));
  CHECK(batchq::check_framing("\"" + x100 + "\\\\\"", payload_format::kong));
  CHECK_FALSE(batchq::check_framing("\"" + x100 + "\\\"", payload_format::kong));
  CHECK_FALSE(batchq::check_framing("[\"" + x100 + "\"],[1]", payload_format::json_array));
  // Deep nesting is fine and needs no recursion.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK(batchq::check_framing(deep, payload_format::json_array));
  CHECK_FALSE(batchq::check_framing(deep + "]", payload_format::json_array));
}

TEST_CASE("ndjson + validate_json: an entry holding a newline is refused, the 99 others are delivered", "[poison]") {
  strict_receiver sr(payload_format::ndjson);
  reports rep;
  auto o = batch_options(sr.rx.url("/ndjson"), 100, payload_format::ndjson);
  o.validate_json = true;
  batchq::http_log log(o, rep.callbacks());
  int refused = 0;
  std::string why;
  for (long n = 0; n < 100; ++n) {
    // Valid JSON (the newline is whitespace between members): validate_json
    // passes it; as one ndjson line it would be two broken lines.
    const std::string e = n == 42 ? "{\"n\":42,\n\"msg\":\"hello\"}" : entry_n(n);
    if (log.enqueue(e, &why) != enqueue_result::accepted) {
      ++refused;
      CHECK(n == 42);
      CHECK(contains(why, "raw newline"));
    }
  }
  CHECK(refused == 1);
  REQUIRE(log.flush(30s));
  const auto s = log.stats();
  CHECK(s.delivered == 99);
  CHECK(s.dropped_total() == 0);
  CHECK(s.refused_for(enqueue_result::invalid_json) == 1);
  CHECK(s.balanced());
  std::lock_guard<std::mutex> g(sr.mu);
  CHECK(sr.refused == 0);
  CHECK(sr.accepted.size() == 99);
  for (const auto& [n, times] : sr.accepted) CHECK(times == 1);
}

TEST_CASE("json_array without validate_json: two values in one entry are refused, not two records", "[poison]") {
  strict_receiver sr(payload_format::json_array);
  auto o = batch_options(sr.rx.url("/array"), 10, payload_format::json_array);
  batchq::http_log log(o);
  std::string why;
  CHECK(log.enqueue(R"({"n":1},{"n":2})", &why) == enqueue_result::invalid_json);
  CHECK(contains(why, "offset 7"));
  CHECK(log.enqueue(R"x({"n":3}])x", &why) == enqueue_result::invalid_json);  // would close the array early
  CHECK(log.enqueue(R"x({"n":4,"x":[)x", &why) == enqueue_result::invalid_json);  // would swallow the next entry
  CHECK(log.enqueue(entry_n(5), &why) == enqueue_result::accepted);
  REQUIRE(log.flush(30s));
  std::lock_guard<std::mutex> g(sr.mu);
  CHECK(sr.accepted == std::map<long, int>{{5, 1}});
  CHECK(log.stats().refused_for(enqueue_result::invalid_json) == 3);
}

TEST_CASE("batch_queue: process_result::split bisects a refused batch, in order, each entry once", "[split]") {
  batchq::manual_clock clk;
  batchq::batch_queue_options o;
  o.exec = batchq::execution::manual;
  o.time_source = &clk;
  o.batch_max_size = 10;
  o.process_delay = 0ms;
  std::vector<std::vector<std::string>> calls;
  std::vector<std::string> delivered, dropped;
  std::vector<drop_reason> reasons;
  bool split = true;
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [&](batchq::span<const std::string> b, const batchq::attempt_context&) {
    calls.emplace_back(b.begin(), b.end());
    if (std::find(b.begin(), b.end(), "7") == b.end()) return batchq::process_result::success();
    auto r = batchq::process_result::reject("refused: 7", drop_reason::rejected);
    r.split = split;
    return r;
  };
  cb.on_delivered = [&](batchq::span<const std::string> b) { delivered.insert(delivered.end(), b.begin(), b.end()); };
  cb.on_drop = [&](batchq::span<std::string> e, const batchq::drop_info& info) {
    for (auto& x : e) {
      dropped.push_back(x);
      reasons.push_back(info.reason);
    }
  };
  SECTION("split") {
    batchq::batch_queue<std::string> q(o, cb);
    for (int i = 0; i < 10; ++i) REQUIRE(q.enqueue(std::to_string(i)) == enqueue_result::accepted);
    for (int k = 0; k < 20 && q.run_due(); ++k) {
    }
    REQUIRE(q.flush(0ms));  // the halves carry the batch's id: nothing left
    using v = std::vector<std::string>;
    REQUIRE(calls.size() == 7);
    CHECK(calls[0] == v{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"});
    CHECK(calls[1] == v{"0", "1", "2", "3", "4"});
    CHECK(calls[2] == v{"5", "6", "7", "8", "9"});
    CHECK(calls[3] == v{"5", "6"});
    CHECK(calls[4] == v{"7", "8", "9"});
    CHECK(calls[5] == v{"7"});
    CHECK(calls[6] == v{"8", "9"});
    CHECK(delivered == v{"0", "1", "2", "3", "4", "5", "6", "8", "9"});
    CHECK(dropped == v{"7"});
    CHECK(reasons == std::vector<drop_reason>{drop_reason::rejected});
    const auto st = q.stats();
    CHECK(st.balanced());
    CHECK(st.attempts == 7);
    CHECK(st.failed_attempts == 4);  // [0-9], [5-9], [7-9], [7]
    CHECK(st.delivered == 9);
    CHECK(st.bytes_held == 0);
  }
  SECTION("no split: the whole batch goes") {
    split = false;
    batchq::batch_queue<std::string> q(o, cb);
    for (int i = 0; i < 10; ++i) REQUIRE(q.enqueue(std::to_string(i)) == enqueue_result::accepted);
    for (int k = 0; k < 20 && q.run_due(); ++k) {
    }
    CHECK(calls.size() == 1);
    CHECK(dropped.size() == 10);
    CHECK(q.stats().balanced());
  }
}

// A receiver that refuses (400) every body holding the poisoned entry and
// accepts the others, and what the log reported.
struct poison_receiver {
  receiver rx;
  tally t;
  reports rep;
  poison_receiver() {
    rx.set_responder([this](const recorded_request& req) {
      if (contains(req.body, "\"poison\"")) return reply::with_status(400, "refused: record with field poison");
      return t.accept(req.body, payload_format::kong);
    });
  }
  // Entries 0..99 in one batch of 100, entry `poison` poisoned; flushed.
  auto run(const batchq::http_log_options& o, long poison) {
    batchq::http_log log(o, rep.callbacks());
    for (long n = 0; n < 100; ++n) REQUIRE(log.enqueue(entry_n(n, n == poison)) == enqueue_result::accepted);
    REQUIRE(log.flush(30s));
    return log.stats();
  }
  // The poisoned entry was reported dropped alone, with the receiver's answer.
  void check_dropped_alone(long poison, drop_reason why) {
    std::lock_guard<std::mutex> g(rep.mu);
    REQUIRE(rep.dropped.size() == 1);
    CHECK(rep.dropped[0] == entry_n(poison, true));
    CHECK(rep.reasons[0] == why);
    CHECK(contains(rep.errors[0], "returned status code 400 and body refused: record with field poison"));
  }
};

TEST_CASE("split_on_4xx: a batch with one refused entry delivers the 99 others; the one is dropped with the answer",
          "[poison][split]") {
  poison_receiver p;
  auto o = batch_options(p.rx.url("/split"), 100, payload_format::kong);
  o.http.drop_permanent_4xx = true;
  const auto s = p.run(o, 37);
  CHECK(s.balanced());
  CHECK(s.enqueued == 100);
  CHECK(s.delivered == 99);
  CHECK(s.dropped_for(drop_reason::rejected) == 1);
  CHECK(s.dropped_total() == 1);
  CHECK(s.attempts == p.rx.count());      // every request of the bisection is counted
  CHECK(p.rx.count() <= 2 * 7 + 1);       // one path down a tree of depth 7, plus siblings
  CHECK(s.failed_attempts == 7);          // each level refused the half holding the entry
  p.t.check_each_once(99, 37);
  p.check_dropped_alone(37, drop_reason::rejected);
}

TEST_CASE("split_on_4xx, default options (4xx retried, as Kong): the 99 good entries are delivered, the one refused "
          "entry is retried and then dropped alone",
          "[poison][split]") {
  poison_receiver p;
  const auto o = batch_options(p.rx.url("/split-default"), 100, payload_format::kong);
  REQUIRE_FALSE(o.http.drop_permanent_4xx);
  REQUIRE(o.split_on_4xx);
  const auto s = p.run(o, 63);
  CHECK(s.balanced());
  CHECK(s.delivered == 99);
  CHECK(s.dropped_for(drop_reason::retries_exhausted) == 1);
  CHECK(s.dropped_total() == 1);
  CHECK(s.attempts == p.rx.count());
  p.t.check_each_once(99, 63);
  p.check_dropped_alone(63, drop_reason::retries_exhausted);
}

TEST_CASE("split_on_4xx: a half that then fails for a while is retried with its own budget, not dropped",
          "[poison][split]") {
  receiver rx;
  tally t;
  std::set<std::string> seen;  // under t.mu
  rx.set_responder([&](const recorded_request& req) {
    if (contains(req.body, "\"poison\"")) return reply::with_status(400, "refused: poison");
    std::lock_guard<std::mutex> g(t.mu);
    if (seen.insert(req.body).second) return reply::with_status(503, "busy");  // every good half fails once first
    t.accept_locked(req.body, payload_format::kong);
    return reply::with_status(200);
  });
  reports rep;
  auto o = batch_options(rx.url("/flaky"), 16, payload_format::kong);
  o.http.drop_permanent_4xx = true;
  o.queue.retry_count = 2;  // a split 4 levels deep must not have used it up
  batchq::http_log log(o, rep.callbacks());
  for (long n = 0; n < 16; ++n) REQUIRE(log.enqueue(entry_n(n, n == 11)) == enqueue_result::accepted);
  REQUIRE(log.flush(30s));
  const auto s = log.stats();
  CHECK(s.balanced());
  CHECK(s.delivered == 15);
  CHECK(s.dropped_for(drop_reason::rejected) == 1);
  CHECK(s.dropped_total() == 1);
  CHECK(s.retried == 4);  // [0-7], [12-15], [8-9], [10]: each once
  t.check_each_once(15, 11);
}

TEST_CASE("split_on_4xx: a receiver that refuses everything ends with every entry dropped exactly once",
          "[poison][split]") {
  receiver rx;
  rx.set_default(reply::with_status(422, "no"));
  reports rep;
  auto o = batch_options(rx.url("/never"), 100, payload_format::json_array);
  o.http.drop_permanent_4xx = true;
  batchq::http_log log(o, rep.callbacks());
  std::vector<std::string> sent;
  for (long n = 0; n < 100; ++n) {
    sent.push_back(entry_n(n));
    REQUIRE(log.enqueue(sent.back()) == enqueue_result::accepted);
  }
  REQUIRE(log.flush(60s));
  const auto s = log.stats();
  CHECK(s.balanced());
  CHECK(s.dropped_for(drop_reason::rejected) == 100);
  CHECK(s.delivered == 0);
  CHECK(rx.count() == 2 * 100 - 1);  // the whole bisection tree, no more
  CHECK(s.attempts == 2 * 100 - 1);
  std::lock_guard<std::mutex> g(rep.mu);
  std::vector<std::string> got = rep.dropped;
  std::sort(got.begin(), got.end());
  std::sort(sent.begin(), sent.end());
  CHECK(got == sent);  // each exactly once
}

TEST_CASE("split_on_4xx: 413 splits until the pieces fit; off, the whole batch is dropped", "[poison][split]") {
  receiver rx;
  tally t;
  rx.set_responder([&](const recorded_request& req) {
    if (req.body.size() > 400) return reply::with_status(413, "payload too large");
    return t.accept(req.body, payload_format::json_array);
  });
  SECTION("on (the default)") {
    auto o = batch_options(rx.url("/small"), 64, payload_format::json_array);
    o.http.drop_permanent_4xx = true;
    CHECK(o.split_on_4xx);
    batchq::http_log log(o);
    for (long n = 0; n < 64; ++n) REQUIRE(log.enqueue(entry_n(n)) == enqueue_result::accepted);
    REQUIRE(log.flush(30s));
    CHECK(log.stats().delivered == 64);
    CHECK(log.stats().dropped_total() == 0);
    t.check_each_once(64);
  }
  SECTION("off (split_on_4xx false, from the JSON configuration)") {
    auto o = batchq::parse_http_log_config("{\"http_endpoint\":\"" + rx.url("/small") +
                                           "\",\"queue_size\":64,\"max_entries\":0,\"flush_timeout\":0.05,"
                                           "\"format\":\"json_array\",\"drop_permanent_4xx\":true,"
                                           "\"split_on_4xx\":false}");
    CHECK_FALSE(o.split_on_4xx);
    batchq::http_log log(o);
    for (long n = 0; n < 64; ++n) REQUIRE(log.enqueue(entry_n(n)) == enqueue_result::accepted);
    REQUIRE(log.flush(30s));
    CHECK(log.stats().dropped_for(drop_reason::too_large) == 64);
    CHECK(rx.count() == 1);
  }
}

// ---- item 9: secrets ----------------------------------------------------------

TEST_CASE("secrets: an echoing receiver leaks no configured value into drops, logs, the spool or stats",
          "[secrets]") {
  receiver rx;
  // Echoes the request line and every header, as some error pages do.
  rx.set_responder([](const recorded_request& req) {
    std::string echo = req.method + " " + req.target + "\n";
    for (const auto& [k, v] : req.headers) echo += k + ": " + v + "\n";
    return reply::with_status(500, echo);
  });
  batchq::test::temp_dir spool_dir;
  const std::vector<std::string> secrets = {"k3y-0f-the-tenant", "apikey-value-9", "Bearer-less-tok", "qs-secret-77",
                                            "pa#ss w0rd"};
  reports rep;
  batchq::http_log_options o;
  // user info (password percent-encoded: '#' %23, ' ' %20) and a query credential
  o.http.http_endpoint = "http://us3r:pa%23ss%20w0rd@127.0.0.1:" + std::to_string(rx.port()) +
                         "/ingest?tenant=eu&api_key=qs-secret-77";
  o.http.headers = {{"X-Api-Key", "k3y-0f-the-tenant"}, {"apikey", "apikey-value-9"},
                    {"X-Token", "Token Bearer-less-tok"}, {"X-Small", "on"}};
  o.http.max_error_body = 4096;
  o.queue.retry_count = 2;
  o.queue.backoff = batchq::backoff_policy::exponential;
  o.queue.initial_retry_delay = 5ms;
  o.queue.max_retry_delay = 10ms;
  o.queue.flush_timeout = 20ms;
  o.spool.dir = spool_dir.path();
  {
    batchq::http_log log(o, rep.callbacks());
    REQUIRE(log.enqueue(entry_n(1)) == enqueue_result::accepted);
    REQUIRE(log.flush(30s));
    CHECK(log.stats().dropped_for(drop_reason::retries_exhausted) == 1);
    for (const auto& s : secrets) {
      CHECK_FALSE(contains(log.stats_json(), s));
      CHECK_FALSE(contains(log.stats_prometheus(), s));
    }
  }
  // The receiver did get them (so the echo really held them) ...
  REQUIRE(rx.count() == 2);
  const auto req = rx.requests()[0];
  CHECK(req.header("X-Api-Key") == "k3y-0f-the-tenant");
  CHECK(contains(req.target, "qs-secret-77"));
  std::lock_guard<std::mutex> g(rep.mu);
  REQUIRE(rep.errors.size() == 1);
  INFO(rep.errors[0]);
  CHECK(contains(rep.errors[0], "returned status code 500 and body POST /ingest?tenant=eu&api_key=***"));
  CHECK(contains(rep.errors[0], "X-Small: on"));  // short values cannot be secret and stay readable
  REQUIRE_FALSE(rep.lines.empty());
  // ... and none of them leaves: drop reports, log lines, the spool's records.
  batchq::spool_options so;
  so.dir = spool_dir.path() + "/dead-letter";
  so.read_only = true;
  auto sp = batchq::spool::open(so);
  REQUIRE(sp);
  const auto recs = sp->read_all();
  REQUIRE(recs.size() == 1);
  CHECK(contains(recs[0].last_error, "api_key=***"));
  for (const auto& s : secrets) {
    INFO("secret " << s);
    CHECK_FALSE(contains(rep.errors[0], s));
    CHECK_FALSE(contains(recs[0].last_error, s));
    for (const auto& line : rep.lines) CHECK_FALSE(contains(line, s));
  }
  CHECK_FALSE(contains(rep.errors[0], "pa%23ss%20w0rd"));
}

TEST_CASE("secrets: a secret cut by max_error_body is masked whole, not quoted in part", "[secrets]") {
  receiver rx;
  rx.set_default(reply::with_status(500, std::string(20, 'x') + "k3y-0f-the-tenant and more"));
  batchq::http_sender_options o;
  o.http_endpoint = rx.url("/cut");
  o.headers = {{"X-Api-Key", "k3y-0f-the-tenant"}};
  o.max_error_body = 24;  // the cut falls inside the secret
  batchq::http_sender s(o);
  const auto r = s.send("{}");
  CHECK(r.status == 500);
  CHECK(contains(r.error, "and body " + std::string(20, 'x') + "***"));
  CHECK_FALSE(contains(r.error, "k3y"));
}

// ---- item 10: configuration ---------------------------------------------------

TEST_CASE("config: a 1 MB unknown key is refused quickly with a short message", "[config]") {
  const std::string key(1 << 20, 'q');
  const std::string json = "{\"http_endpoint\":\"http://127.0.0.1:9/\",\"" + key + "\":1}";
  const auto t0 = std::chrono::steady_clock::now();
  std::string what, field;
  try {
    batchq::parse_http_log_config(json);
  } catch (const batchq::options_error& e) {
    what = e.what();
    field = e.field();
  }
  const auto ms = batchq::test::elapsed_ms(t0);
  CHECK(ms < 2000);  // generous: it took 3.2 s before, ~1 ms now
  CHECK(contains(what, "unknown key"));
  CHECK(contains(what, "(1048576 bytes)"));
  CHECK(what.size() < 300);
  CHECK(field.size() < 100);
  // A near miss still gets its suggestion.
  try {
    batchq::parse_http_log_config(R"({"http_endpoint":"http://127.0.0.1:9/","split_on_4x":true})");
    FAIL("accepted an unknown key");
  } catch (const batchq::options_error& e) {
    CHECK(std::string(e.what()) == "split_on_4x: unknown key (did you mean split_on_4xx?)");
  }
}

TEST_CASE("config: a URL password with a raw '#' is refused without printing it; percent-encoded it works",
          "[config][secrets]") {
  receiver rx;
  const std::string port = std::to_string(rx.port());
  // libcurl would take "admin:8080" as host and port and send there.
  for (const std::string& url : {"http://admin:8080#s3cret@127.0.0.1:" + port + "/",
                                "http://admin:pa#ss@127.0.0.1:" + port + "/x",
                                "http://admin:pa?ss@127.0.0.1:" + port + "/", "http://admin:pa/ss@127.0.0.1:" + port}) {
    INFO(url);
    batchq::http_log_options o;
    o.http.http_endpoint = url;
    std::string what, field;
    try {
      batchq::http_log log(o);
    } catch (const batchq::options_error& e) {
      what = e.what();
      field = e.field();
    }
    CHECK(field == "http_endpoint");
    CHECK(contains(what, "percent-encode"));
    CHECK(contains(what, "%23"));
    CHECK_FALSE(contains(what, "s3cret"));
    CHECK_FALSE(contains(what, "8080"));
    for (const char* part : {"a#ss", "a?ss", "a/ss", "admin"}) CHECK_FALSE(contains(what, part));
  }
  // '@' in a path or query after a '/' is not user info: accepted.
  batchq::http_sender_options ok;
  ok.http_endpoint = "http://127.0.0.1:" + port + "/ingest?mail=a@b";
  CHECK(batchq::validate(ok).empty());
  ok.http_endpoint = "http://127.0.0.1:" + port + "/users/a@b";
  CHECK(batchq::validate(ok).empty());

  // Percent-encoded, it reaches the right host with the right credentials,
  // and a failure's text does not hold the password in either spelling.
  rx.set_default(reply::with_status(503, "down"));
  batchq::http_sender_options o;
  o.http_endpoint = "http://admin:8080%23s3cret@127.0.0.1:" + port + "/in";
  batchq::http_sender s(o);
  const auto r = s.send("{}");
  REQUIRE(rx.count() == 1);
  CHECK(rx.requests()[0].header("Authorization") == "Basic YWRtaW46ODA4MCNzM2NyZXQ=");  // admin:8080#s3cret
  CHECK(contains(r.error, "request to 127.0.0.1:" + port + " returned status code 503"));
  CHECK_FALSE(contains(r.error, "s3cret"));
}
