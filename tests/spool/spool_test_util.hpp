// Helpers shared by the spool tests: opening spools and file surgery
// (scratch directories are support/test_util.hpp's temp_dir).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "batchq/spool.hpp"
#include "support/test_util.hpp"

namespace batchq::test {

namespace fs = std::filesystem;

inline batchq::spool_options small_options(const std::string& dir) {
  batchq::spool_options o;
  o.dir = dir;
  o.segment_bytes = 4096;
  o.max_bytes = 0;
  o.fsync = batchq::fsync_policy::never;
  return o;
}

inline std::unique_ptr<batchq::spool> must_open(const batchq::spool_options& o) {
  batchq::spool_error e;
  auto s = batchq::spool::open(o, &e);
  if (!s) throw std::runtime_error("spool::open failed: " + e.message);
  return s;
}

/// Segment file names in the directory, sorted (= by first seq).
inline std::vector<std::string> segment_files(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("spool-", 0) == 0 && n.size() == 30) v.push_back(n);
  }
  std::sort(v.begin(), v.end());
  return v;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline std::vector<std::uint64_t> seqs_of(const std::vector<batchq::spool_entry>& v) {
  std::vector<std::uint64_t> s;
  for (const auto& e : v) s.push_back(e.seq);
  return s;
}

inline std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = first; i <= last; ++i) v.push_back(i);
  return v;
}

/// Payload of the i-th test record: varied length, every byte value.
inline std::string payload_for(std::uint64_t i, std::size_t base = 40) {
  std::string p;
  const std::size_t n = base + static_cast<std::size_t>(i % 17);
  for (std::size_t k = 0; k < n; ++k) p.push_back(static_cast<char>((i * 31 + k * 7) & 0xFF));
  return p;
}

}  // namespace batchq::test
