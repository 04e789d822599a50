// The counter table (batchq/detail/counters.hpp) drives the stats JSON and
// the Prometheus text: every row is in both, with its own value, and neither
// has anything the table lacks (label: unit). batchq_stats_t is checked
// against the table when capi/batchq.cpp compiles (static_assert), the Lua
// view by tests/lua/test_cdef.lua.
#include <rapidjson/document.h>

#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "batchq/http_log.hpp"
#include "support/catch.hpp"

using batchq::buffer_figures;
using batchq::queue_stats;
using batchq::spool_figures;

namespace {

// A snapshot in which every counter has a value of its own (1, 2, 3, ...),
// so a renderer that writes one counter under another's name is caught.
struct numbered {
  queue_stats s;
  spool_figures sp;
  buffer_figures b;
  std::uint64_t next = 1;
  numbered() {
#define BQ_SET_queue(m) s.m = next++;
#define BQ_SET_buffer(m) b.m = next++;
#define BQ_SET_spool(m) sp.m = next++;
#define BQ_SET_total(m)
#define BQ_SET_reason(m) \
  for (auto& v : s.m) v = next++;
#define BQ_SET_result(m) \
  for (std::size_t r = 1; r < s.m.size(); ++r) s.m[r] = next++;
#define BQ_SET(g, m, c, p, t, h) BQ_SET_##g(m)
    BATCHQ_COUNTERS(BQ_SET)
  }
};

struct row {
  std::string group, member, c_field, prom, type;
};

std::vector<row> table() {
  std::vector<row> rows;
#define BQ_ROW(g, m, c, p, t, h) rows.push_back(row{#g, #m, #c, p, #t});
  BATCHQ_COUNTERS(BQ_ROW)
  return rows;
}

std::uint64_t value_of(const numbered& n, const row& r) {
#define BQ_VALUE_queue(m) \
  if (r.member == #m) return n.s.m;
#define BQ_VALUE_buffer(m) \
  if (r.member == #m) return n.b.m;
#define BQ_VALUE_spool(m) \
  if (r.member == #m) return n.sp.m;
#define BQ_VALUE_total(m) \
  if (r.member == #m) return n.s.m();
#define BQ_VALUE_reason(m)
#define BQ_VALUE_result(m)
#define BQ_VALUE(g, m, c, p, t, h) \
  if (r.group == #g) {             \
    BQ_VALUE_##g(m)                \
  }
  BATCHQ_COUNTERS(BQ_VALUE)
  FAIL("no value for " << r.member);
  return 0;
}

// Prometheus text -> {"name{labels}" -> value}, and {name -> type}.
struct prom_text {
  std::map<std::string, std::uint64_t> samples;
  std::map<std::string, std::string> types;
};
prom_text parse_prometheus(const std::string& text) {
  prom_text out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      const auto sp = line.find(' ', 7);
      out.types[line.substr(7, sp - 7)] = line.substr(sp + 1);
    } else if (!line.empty() && line[0] != '#') {
      const auto sp = line.rfind(' ');
      out.samples[line.substr(0, sp)] = std::stoull(line.substr(sp + 1));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("every counter of the table is in the stats JSON, with its value, and nothing else is", "[counters]") {
  const numbered n;
  rapidjson::Document d;
  d.Parse(batchq::stats_to_json(n.s, n.sp, n.b, "q").c_str());
  REQUIRE(d.IsObject());
  std::set<std::string> seen{"name", "balanced", "spool"};
  std::set<std::string> seen_spool;
  for (const row& r : table()) {
    INFO("row " << r.c_field);
    if (r.group == "spool") {
      REQUIRE(d["spool"].HasMember(r.member.c_str()));
      CHECK(d["spool"][r.member.c_str()].GetUint64() == value_of(n, r));
      seen_spool.insert(r.member);
    } else if (r.group == "reason") {
      const auto& o = d[r.c_field.c_str()];
      REQUIRE(o.IsObject());
      for (std::size_t i = 0; i < batchq::drop_reason_count; ++i) {
        const char* name = batchq::to_string(static_cast<batchq::drop_reason>(i));
        REQUIRE(o.HasMember(name));
        CHECK(o[name].GetUint64() == n.s.dropped[i]);
      }
      CHECK(o.MemberCount() == batchq::drop_reason_count);
      seen.insert(r.c_field);
    } else if (r.group == "result") {
      const auto& o = d[r.c_field.c_str()];
      REQUIRE(o.IsObject());
      for (std::size_t i = 1; i < n.s.refused.size(); ++i) {
        const char* name = batchq::to_string(static_cast<batchq::enqueue_result>(i));
        REQUIRE(o.HasMember(name));
        CHECK(o[name].GetUint64() == n.s.refused[i]);
      }
      CHECK(o.MemberCount() == n.s.refused.size() - 1);
      seen.insert(r.c_field);
    } else {
      REQUIRE(d.HasMember(r.c_field.c_str()));
      CHECK(d[r.c_field.c_str()].GetUint64() == value_of(n, r));
      seen.insert(r.c_field);
    }
  }
  for (const auto& m : d.GetObject()) CHECK(seen.count(m.name.GetString()) == 1);
  for (const auto& m : d["spool"].GetObject()) CHECK(seen_spool.count(m.name.GetString()) == 1);
  // The family total is the sum of its samples.
  CHECK(d["dropped"].GetUint64() == n.s.dropped_total());
}

TEST_CASE("every counter of the table is a Prometheus metric, with its value and type, and nothing else is",
          "[counters]") {
  const numbered n;
  const prom_text p = parse_prometheus(batchq::stats_to_prometheus(n.s, n.sp, n.b, "q"));
  const std::string q = "{queue=\"q\"";
  std::set<std::string> metrics;
  std::size_t samples = 0;
  for (const row& r : table()) {
    INFO("row " << r.c_field);
    if (r.prom.empty()) {
      CHECK(r.group == "total");  // only a family's sum may go without a metric of its own
      continue;
    }
    const std::string name = "batchq_" + r.prom;
    CHECK(metrics.insert(name).second);  // one row per metric
    REQUIRE(p.types.count(name) == 1);
    CHECK(p.types.at(name) == r.type);
    if (r.group == "reason") {
      for (std::size_t i = 0; i < batchq::drop_reason_count; ++i) {
        const std::string key =
            name + q + ",reason=\"" + batchq::to_string(static_cast<batchq::drop_reason>(i)) + "\"}";
        REQUIRE(p.samples.count(key) == 1);
        CHECK(p.samples.at(key) == n.s.dropped[i]);
        ++samples;
      }
    } else if (r.group == "result") {
      for (std::size_t i = 1; i < n.s.refused.size(); ++i) {
        const std::string key =
            name + q + ",result=\"" + batchq::to_string(static_cast<batchq::enqueue_result>(i)) + "\"}";
        REQUIRE(p.samples.count(key) == 1);
        CHECK(p.samples.at(key) == n.s.refused[i]);
        ++samples;
      }
    } else {
      const std::string key = name + q + "}";
      REQUIRE(p.samples.count(key) == 1);
      CHECK(p.samples.at(key) == value_of(n, r));
      ++samples;
    }
  }
  CHECK(p.types.size() == metrics.size());
  CHECK(p.samples.size() == samples);
}

TEST_CASE("the counter table names each C field and each metric once", "[counters]") {
  std::set<std::string> c_fields, members;
  for (const row& r : table()) {
    INFO("row " << r.c_field);
    CHECK(c_fields.insert(r.c_field).second);
    CHECK(members.insert(r.group + "." + r.member).second);  // one row per field of each struct
    CHECK((r.type == "counter" || r.type == "gauge"));
    // Prometheus: counters end in _total, gauges do not.
    if (!r.prom.empty())
      CHECK((r.type == "counter") == (r.prom.size() > 6 && r.prom.substr(r.prom.size() - 6) == "_total"));
  }
}
