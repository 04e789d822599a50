// LuaJIT string.buffer encodings -> cjson's JSON. See batchq/lua_json.hpp for
// the rules; this file says why it is built the way it is.
//
// Two passes. parse() reads the bytes once into a flat tree (nodes_, with
// each table's key/value pairs in pairs_) and decides, bottom-up as each
// table ends, what cjson would make of it: array (with its slots) or object,
// or the reason cjson would refuse it. emit() then writes the JSON from the
// tree. A one-pass writer cannot work: whether a table is an array depends
// on all of its keys, and an array's elements come out in index order, not
// in the order they were encoded. The check at enqueue is parse() alone.
// Nothing in the tree copies the input: strings are offsets into it.
#include "batchq/lua_json.hpp"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "text/text.hpp"

namespace batchq {

namespace {

// Tags of the format (lj_serialize.c, SER_TAG_*).
enum : std::uint32_t {
  tag_nil = 0x00,
  tag_false = 0x01,
  tag_true = 0x02,
  tag_null = 0x03,
  tag_lightud32 = 0x04,
  tag_lightud64 = 0x05,
  tag_int = 0x06,
  tag_num = 0x07,
  tag_tab = 0x08,  // 0x08..0x0d: +1 hash part, +2 array part from 0, +4 array part from 1
  tag_dict_mt = 0x0e,
  tag_dict_str = 0x0f,
  tag_int64 = 0x10,
  tag_uint64 = 0x11,
  tag_complex = 0x12,
  tag_str = 0x20,  // 0x20 + length
};

enum class kind : std::uint8_t { nil, false_, true_, null, number, string, array, object };

// Why cjson.encode() would refuse a value (none: it would not).
enum class refusal : std::uint8_t { none, nan_inf, cdata, lightud, sparse, key_type, depth };

const char* text_of(refusal r) {
  switch (r) {
    case refusal::none: break;
    case refusal::nan_inf: return "a number must not be NaN or Inf";
    case refusal::cdata: return "FFI cdata (int64_t/uint64_t/complex) is not supported by cjson; convert with tonumber()";
    case refusal::lightud: return "lightuserdata other than NULL (ngx.null) is not supported by cjson";
    case refusal::sparse: return "excessively sparse array (largest index > 2 x element count and > 10)";
    case refusal::key_type: return "a table key must be a number or string";
    case refusal::depth: return "excessive nesting (tables more than 1000 deep)";
  }
  return "";
}

constexpr std::uint32_t none = UINT32_MAX;

struct node {
  kind k = kind::nil;
  refusal why = refusal::none;  // for a table: the first refusal inside it
  std::uint32_t why_at = 0;     // input offset of the value refused
  std::uint32_t a = 0;          // string: offset; array: first slot; object: first pair
  std::uint32_t b = 0;          // string: length; array: length; object: pair count
  double num = 0;
};

// A table entry: key node and value node; key == none means the array part,
// whose index is `index`.
struct pair {
  std::uint32_t key;
  std::uint32_t val;
  std::uint32_t index;
};

std::uint32_t load_u32(const unsigned char* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24;
}

// string.buffer's prefix-encoded 32-bit number (.U) at p, advancing p; false
// if the input ends first.
bool read_prefixed_u32(const unsigned char*& p, const unsigned char* end, std::uint32_t& v) {
  if (p >= end) return false;
  v = *p++;
  if (v < 0xe0) return true;
  if (v != 0xff) {
    if (p >= end) return false;
    v = ((v & 0x1f) << 8) + *p++ + 0xe0;
    return true;
  }
  if (end - p < 4) return false;
  v = load_u32(p);
  p += 4;
  return true;
}
std::uint64_t load_u64(const unsigned char* p) { return load_u32(p) | std::uint64_t{load_u32(p + 4)} << 32; }

// cjson's `if (k > max) max = k;` with `int max` and `double k`: a key of
// 2^31 or more converts to INT_MIN on x86-64 (cvttsd2si's "integer
// indefinite"), which a later, smaller key then replaces. Reproduced so that
// the same tables come out as arrays.
int cjson_int(double k) { return k < 2147483648.0 ? static_cast<int>(k) : INT_MIN; }

void put_string(const unsigned char* s, std::size_t n, std::string& out) {
  out += '"';
  text::json_escape_append(out, std::string_view(reinterpret_cast<const char*>(s), n), text::escape_style::cjson);
  out += '"';
}

// validate_json must take whatever this encoder writes.
static_assert(lua_json_max_depth <= text::json_max_depth, "the JSON validator refuses depths lua_to_json writes");

// printf("%.14g") without the locale (std::to_chars is specified as printf
// in the "C" locale). Integers below 1e14 print the same with fewer steps.
void put_number(double d, std::string& out) {
  char buf[40];
  std::to_chars_result r;
  if (d == 0) {
    out += std::signbit(d) ? "-0" : "0";
    return;
  }
  if (d == std::floor(d) && std::fabs(d) < 1e14) {
    r = std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(d));
  } else {
    r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::general, 14);
  }
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

// Where the fast path writes: raw bytes in a buffer the thread reuses, with
// room checked once per token (not per byte, as std::string's appends do),
// appended to the caller's string in one copy at the end. The appends were
// most of the decoder's time.
class raw_buf {
 public:
  void start(std::size_t hint) {
    if (hint > cap_) grow(hint);
    w_ = 0;
  }
  // Room for n more bytes: write them at the pointer returned, then wrote(n).
  char* room(std::size_t n) {
    if (cap_ - w_ < n || !buf_) grow(std::max({cap_ * 2, w_ + n, std::size_t{256}}));
    return buf_.get() + w_;
  }
  void wrote(std::size_t n) { w_ += n; }
  void put(char c) {
    *room(1) = c;
    ++w_;
  }
  void put(const char* s, std::size_t n) {
    std::memcpy(room(n), s, n);
    w_ += n;
  }
  std::size_t size() const { return w_; }
  void cut(std::size_t n) { w_ = n; }
  const char* data() const { return buf_.get(); }
  // Keeps a thread's buffer from holding on to one huge entry.
  void trim() {
    if (cap_ > (std::size_t{1} << 20)) {
      buf_.reset();
      cap_ = w_ = 0;
    }
  }

 private:
  void grow(std::size_t cap) {
    std::unique_ptr<char[]> nb(new char[cap]);
    if (w_) std::memcpy(nb.get(), buf_.get(), w_);
    buf_ = std::move(nb);
    cap_ = cap;
  }
  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0;
  std::size_t w_ = 0;
};

// put_string() into a raw_buf: the same bytes (the toolbox's cjson style),
// written through a pointer into room reserved once.
void put_string(const unsigned char* s, std::size_t n, raw_buf& out) {
  char* const w0 = out.room(text::json_escape_max(n) + 2);
  char* w = w0;
  // room() returns memory from new[] (never null); the analyzer loses track
  // of it through unique_ptr's move assignment in grow().
  *w++ = '"';  // NOLINT(clang-analyzer-core.NullDereference)
  w = text::json_escape_raw(w, std::string_view(reinterpret_cast<const char*>(s), n), text::escape_style::cjson);
  *w++ = '"';
  out.wrote(static_cast<std::size_t>(w - w0));
}

// put_number() into a raw_buf (quoted: as an object key).
void put_number(double d, raw_buf& out, bool quoted) {
  char* const w0 = out.room(48);
  char* w = w0;
  if (quoted) *w++ = '"';
  if (d == 0) {
    if (std::signbit(d)) *w++ = '-';
    *w++ = '0';
  } else if (d == std::floor(d) && std::fabs(d) < 1e14) {
    w = std::to_chars(w, w0 + 46, static_cast<std::int64_t>(d)).ptr;
  } else {
    w = std::to_chars(w, w0 + 46, d, std::chars_format::general, 14).ptr;
  }
  if (quoted) *w++ = '"';
  out.wrote(static_cast<std::size_t>(w - w0));
}

class decoder {
 public:
  // Parses and classifies `enc`; false with *error on a malformed encoding
  // or a value cjson refuses.
  bool parse_all(std::string_view enc, std::string* error) {
    nodes_.clear();
    pairs_.clear();
    scratch_.clear();
    slots_.clear();
    bad_ = nullptr;
    if (enc.size() >= UINT32_MAX) return fail_with(error, "encoding larger than 4 GiB", 0);
    begin_ = reinterpret_cast<const unsigned char*>(enc.data());
    p_ = begin_;
    end_ = begin_ + enc.size();
    root_ = parse(0);
    if (bad_ == text_of(refusal::depth)) {
      if (error) *error = std::string("cannot become JSON (cjson.encode refuses it): ") + bad_ + " (table at offset " +
                          std::to_string(bad_at_) + ")";
      return false;
    }
    if (bad_) return fail_with(error, bad_, bad_at_);
    if (p_ != end_) return fail_with(error, "trailing bytes after the encoded value", pos());
    const node& r = nodes_[root_];
    if (r.why != refusal::none) {
      if (error)
        *error = std::string("cannot become JSON (cjson.encode refuses it): ") + text_of(r.why) + " (value at offset " +
                 std::to_string(r.why_at) + ")";
      return false;
    }
    return true;
  }

  void emit(std::string& out) const { emit(root_, out); }

  // Keeps a thread's scratch space from holding on to one huge entry.
  void trim() {
    constexpr std::size_t keep = std::size_t{1} << 16;
    if (nodes_.capacity() > keep) std::vector<node>().swap(nodes_);
    if (pairs_.capacity() > keep) std::vector<pair>().swap(pairs_);
    if (scratch_.capacity() > keep) std::vector<pair>().swap(scratch_);
    if (slots_.capacity() > keep) std::vector<std::uint32_t>().swap(slots_);
  }

 private:
  std::uint32_t pos() const { return static_cast<std::uint32_t>(p_ - begin_); }

  static bool fail_with(std::string* error, const char* what, std::uint32_t at) {
    if (error)
      *error = std::string("not a LuaJIT string.buffer encoding: ") + what + " (at offset " + std::to_string(at) + ")";
    return false;
  }

  std::uint32_t fail(const char* what, std::uint32_t at) {
    if (!bad_) {
      bad_ = what;
      bad_at_ = at;
    }
    return none;
  }

  // The prefix-encoded 32-bit number (.U); false if the input ends first.
  bool read_u124(std::uint32_t& v) { return read_prefixed_u32(p_, end_, v); }

  bool have(std::size_t n) const { return static_cast<std::size_t>(end_ - p_) >= n; }

  std::uint32_t add(kind k, std::uint32_t at, refusal why = refusal::none) {
    node n;
    n.k = k;
    n.why = why;
    n.why_at = at;
    nodes_.push_back(n);
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }

  std::uint32_t add_number(double d, std::uint32_t at) {
    const std::uint32_t i = add(kind::number, at, std::isfinite(d) ? refusal::none : refusal::nan_inf);
    nodes_[i].num = d;
    return i;
  }

  // One value; `depth` = tables around it.
  std::uint32_t parse(std::size_t depth) {
    const std::uint32_t at = pos();
    std::uint32_t tp;
    if (!read_u124(tp)) return fail("truncated (a value was expected)", at);
    if (tp >= tag_str) {
      const std::uint32_t len = tp - tag_str;
      if (!have(len)) return fail("truncated string", at);
      const std::uint32_t i = add(kind::string, at);
      nodes_[i].a = pos();
      nodes_[i].b = len;
      p_ += len;
      return i;
    }
    switch (tp) {
      case tag_nil: return add(kind::nil, at);
      case tag_false: return add(kind::false_, at);
      case tag_true: return add(kind::true_, at);
      case tag_null: return add(kind::null, at);
      case tag_lightud32:
      case tag_lightud64: {
        const std::size_t n = tp == tag_lightud32 ? 4 : 8;
        if (!have(n)) return fail("truncated lightuserdata", at);
        p_ += n;
        return add(kind::null, at, refusal::lightud);
      }
      case tag_int: {
        if (!have(4)) return fail("truncated integer", at);
        const auto v = static_cast<std::int32_t>(load_u32(p_));
        p_ += 4;
        return add_number(v, at);
      }
      case tag_num: {
        if (!have(8)) return fail("truncated number", at);
        const std::uint64_t bits = load_u64(p_);
        p_ += 8;
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return add_number(d, at);
      }
      case tag_int64:
      case tag_uint64:
      case tag_complex: {
        const std::size_t n = tp == tag_complex ? 16 : 8;
        if (!have(n)) return fail("truncated cdata", at);
        p_ += n;
        return add(kind::null, at, refusal::cdata);
      }
      case tag_dict_mt:
        return fail("a metatable dictionary reference (buffer.new{metatable=...}); encode with a plain buffer", at);
      case tag_dict_str:
        return fail("a string dictionary reference (buffer.new{dict=...}); encode with a plain buffer", at);
      default:
        if (tp >= tag_tab && tp < tag_dict_mt) return parse_table(tp, depth, at);
        return fail("unknown tag", at);
    }
  }

  std::uint32_t parse_table(std::uint32_t tp, std::size_t depth, std::uint32_t at) {
    std::uint32_t narray = 0, nhash = 0;
    if (tp >= tag_tab + 2 && !read_u124(narray)) return fail("truncated table header", at);
    if ((tp & 1) && !read_u124(nhash)) return fail("truncated table header", at);
    // cjson counts the outermost table as depth 1 and refuses depth 1001.
    if (depth + 1 > lua_json_max_depth) return fail(text_of(refusal::depth), at);
    const std::size_t mark = scratch_.size();
    for (std::uint32_t i = tp >= tag_tab + 4 ? 1 : 0; i < narray; ++i) {
      const std::uint32_t v = parse(depth + 1);
      if (v == none) return none;
      if (nodes_[v].k != kind::nil) scratch_.push_back(pair{none, v, i});
    }
    const std::size_t hmark = scratch_.size();
    for (std::uint32_t j = 0; j < nhash; ++j) {
      const std::uint32_t key_at = pos();
      const std::uint32_t k = parse(depth + 1);
      if (k == none) return none;
      if (nodes_[k].k == kind::nil) return fail("a table key is nil", key_at);
      if (nodes_[k].k == kind::number && std::isnan(nodes_[k].num)) return fail("a table key is NaN", key_at);
      const std::uint32_t v = parse(depth + 1);
      if (v == none) return none;
      if (nodes_[v].k != kind::nil) scratch_.push_back(pair{k, v, 0});
    }
    // lua_next() order, which is cjson's: array part, then the hash part
    // in the reverse of its encoded order.
    const auto first = static_cast<std::uint32_t>(pairs_.size());
    pairs_.insert(pairs_.end(), scratch_.begin() + static_cast<std::ptrdiff_t>(mark),
                  scratch_.begin() + static_cast<std::ptrdiff_t>(hmark));
    pairs_.insert(pairs_.end(), scratch_.rbegin(), scratch_.rbegin() + static_cast<std::ptrdiff_t>(scratch_.size() - hmark));
    scratch_.resize(mark);
    const auto count = static_cast<std::uint32_t>(pairs_.size() - first);
    return classify(first, count, at);
  }

  double key_number(const pair& p, bool& is_number) const {
    if (p.key == none) {
      is_number = true;
      return p.index;
    }
    const node& k = nodes_[p.key];
    is_number = k.k == kind::number;
    return k.num;
  }

  // cjson's lua_array_length() and the choice json_append_data() makes.
  std::uint32_t classify(std::uint32_t first, std::uint32_t count, std::uint32_t at) {
    int max = 0;
    long long items = 0;
    bool array = true;
    for (std::uint32_t i = first; i < first + count; ++i) {
      bool is_number = false;
      const double k = key_number(pairs_[i], is_number);
      if (is_number && k != 0 && std::floor(k) == k && k >= 1) {
        if (k > max) max = cjson_int(k);
        ++items;
        continue;
      }
      array = false;
      break;
    }
    const std::uint32_t t = add(kind::object, at);
    auto refuse = [&](refusal why, std::uint32_t why_at) {
      if (nodes_[t].why == refusal::none) {
        nodes_[t].why = why;
        nodes_[t].why_at = why_at;
      }
    };
    if (array && max > items * 2 && max > 10) {
      refuse(refusal::sparse, at);
      return t;
    }
    if (array && max > 0) {
      // Bounded: max <= 2 * items or max <= 10.
      node& n = nodes_[t];
      n.k = kind::array;
      n.a = static_cast<std::uint32_t>(slots_.size());
      n.b = static_cast<std::uint32_t>(max);
      slots_.resize(slots_.size() + static_cast<std::size_t>(max), none);
      for (std::uint32_t i = first; i < first + count; ++i) {
        bool is_number = false;
        const double k = key_number(pairs_[i], is_number);
        if (k > max) continue;  // cjson does not encode it (see cjson_int)
        std::uint32_t& slot = slots_[nodes_[t].a + static_cast<std::uint32_t>(k) - 1];
        if (slot != none) return fail("a table key appears twice", at);
        slot = pairs_[i].val;
      }
      for (std::uint32_t s = 0; s < nodes_[t].b; ++s) {
        const std::uint32_t v = slots_[nodes_[t].a + s];
        if (v != none && nodes_[v].why != refusal::none) refuse(nodes_[v].why, nodes_[v].why_at);
      }
      return t;
    }
    nodes_[t].a = first;
    nodes_[t].b = count;
    for (std::uint32_t i = first; i < first + count; ++i) {
      const pair& p = pairs_[i];
      if (p.key != none) {
        const node& k = nodes_[p.key];
        if (k.k != kind::number && k.k != kind::string) refuse(refusal::key_type, k.why_at);
        if (k.why != refusal::none) refuse(k.why, k.why_at);
      }
      const node& v = nodes_[p.val];
      if (v.why != refusal::none) refuse(v.why, v.why_at);
    }
    return t;
  }

  void emit(std::uint32_t i, std::string& out) const {
    const node& n = nodes_[i];
    switch (n.k) {
      case kind::nil:
      case kind::null: out += "null"; return;
      case kind::false_: out += "false"; return;
      case kind::true_: out += "true"; return;
      case kind::number: put_number(n.num, out); return;
      case kind::string: put_string(begin_ + n.a, n.b, out); return;
      case kind::array:
        out += '[';
        for (std::uint32_t s = 0; s < n.b; ++s) {
          if (s) out += ',';
          const std::uint32_t v = slots_[n.a + s];
          if (v == none)
            out += "null";
          else
            emit(v, out);
        }
        out += ']';
        return;
      case kind::object:
        out += '{';
        for (std::uint32_t j = n.a; j < n.a + n.b; ++j) {
          if (j != n.a) out += ',';
          const pair& p = pairs_[j];
          if (p.key == none) {
            out += '"';
            put_number(p.index, out);
            out += '"';
          } else if (nodes_[p.key].k == kind::string) {
            put_string(begin_ + nodes_[p.key].a, nodes_[p.key].b, out);
          } else {
            out += '"';
            put_number(nodes_[p.key].num, out);
            out += '"';
          }
          out += ':';
          emit(p.val, out);
        }
        out += '}';
        return;
    }
  }

  const unsigned char* begin_ = nullptr;
  const unsigned char* p_ = nullptr;
  const unsigned char* end_ = nullptr;
  std::uint32_t root_ = 0;
  const char* bad_ = nullptr;  // the first malformation found
  std::uint32_t bad_at_ = 0;
  std::vector<node> nodes_;
  std::vector<pair> pairs_;           // every table's entries, table by table
  std::vector<pair> scratch_;         // entries of the tables being read
  std::vector<std::uint32_t> slots_;  // arrays' elements by index (none: null)
};

// The fast path: one pass that writes the JSON as it reads (out == nullptr:
// only checks). It takes the tables a log entry is made of - string-keyed
// hash tables (objects), array-only tables (arrays, holes as null, or {}
// when empty, cjson's sparse rule checked at the end), tables with t[0]
// (objects) - and hands everything else (a hash table whose first key is
// not a string, a table with both parts) to the decoder above, which reads
// the whole entry again. Objects come out in the encoded order, which is the
// reverse of cjson's: JSON objects are unordered, and decoded they are equal.
class streamer {
 public:
  enum class result { ok, slow, refused, malformed };

  result run(std::string_view enc, raw_buf* out) {
    begin_ = reinterpret_cast<const unsigned char*>(enc.data());
    p_ = begin_;
    end_ = begin_ + enc.size();
    out_ = out;
    what_ = nullptr;
    what_at_ = 0;
    res_ = result::ok;
    if (enc.size() >= UINT32_MAX) return stop(result::malformed, "encoding larger than 4 GiB", 0);
    if (!value(0)) return res_;
    if (p_ != end_) return stop(result::malformed, "trailing bytes after the encoded value", pos());
    return result::ok;
  }

  std::string message() const {
    if (res_ == result::refused)
      return std::string("cannot become JSON (cjson.encode refuses it): ") + what_ + " (value at offset " +
             std::to_string(what_at_) + ")";
    return std::string("not a LuaJIT string.buffer encoding: ") + what_ + " (at offset " + std::to_string(what_at_) +
           ")";
  }

 private:
  std::uint32_t pos() const { return static_cast<std::uint32_t>(p_ - begin_); }
  result stop(result r, const char* what, std::uint32_t at) {
    res_ = r;
    what_ = what;
    what_at_ = at;
    return r;
  }
  bool fail(result r, const char* what, std::uint32_t at) {
    stop(r, what, at);
    return false;
  }
  bool refuse(refusal why, std::uint32_t at) { return fail(result::refused, text_of(why), at); }
  bool slow() { return fail(result::slow, "", 0); }
  bool have(std::size_t n) const { return static_cast<std::size_t>(end_ - p_) >= n; }
  void put(char c) {
    if (out_) out_->put(c);
  }
  void put(const char* s, std::size_t n) {
    if (out_) out_->put(s, n);
  }

  bool read_u124(std::uint32_t& v) { return read_prefixed_u32(p_, end_, v); }

  // A number value (tag already read); false on a refusal or truncation.
  bool number(std::uint32_t tp, std::uint32_t at, bool as_key) {
    double d;
    if (tp == tag_int) {
      if (!have(4)) return fail(result::malformed, "truncated integer", at);
      d = static_cast<std::int32_t>(load_u32(p_));
      p_ += 4;
    } else {
      if (!have(8)) return fail(result::malformed, "truncated number", at);
      const std::uint64_t bits = load_u64(p_);
      p_ += 8;
      std::memcpy(&d, &bits, sizeof d);
    }
    if (as_key && std::isnan(d)) return fail(result::malformed, "a table key is NaN", at);
    if (!std::isfinite(d)) return refuse(refusal::nan_inf, at);
    if (out_) put_number(d, *out_, as_key);
    return true;
  }

  bool string(std::uint32_t tp, std::uint32_t at) {
    const std::uint32_t len = tp - tag_str;
    if (!have(len)) return fail(result::malformed, "truncated string", at);
    if (out_) put_string(p_, len, *out_);
    p_ += len;
    return true;
  }

  bool value(std::size_t depth) {
    const std::uint32_t at = pos();
    std::uint32_t tp;
    if (!read_u124(tp)) return fail(result::malformed, "truncated (a value was expected)", at);
    if (tp >= tag_str) return string(tp, at);
    switch (tp) {
      case tag_nil:
      case tag_null: put("null", 4); return true;
      case tag_false: put("false", 5); return true;
      case tag_true: put("true", 4); return true;
      case tag_int:
      case tag_num: return number(tp, at, false);
      case tag_lightud32:
      case tag_lightud64:
        if (!have(tp == tag_lightud32 ? 4 : 8)) return fail(result::malformed, "truncated lightuserdata", at);
        return refuse(refusal::lightud, at);
      case tag_int64:
      case tag_uint64:
      case tag_complex:
        if (!have(tp == tag_complex ? 16 : 8)) return fail(result::malformed, "truncated cdata", at);
        return refuse(refusal::cdata, at);
      case tag_dict_mt:
        return fail(result::malformed,
                    "a metatable dictionary reference (buffer.new{metatable=...}); encode with a plain buffer", at);
      case tag_dict_str:
        return fail(result::malformed,
                    "a string dictionary reference (buffer.new{dict=...}); encode with a plain buffer", at);
      default:
        if (tp >= tag_tab && tp < tag_dict_mt) return table(tp, depth, at);
        return fail(result::malformed, "unknown tag", at);
    }
  }

  bool table(std::uint32_t tp, std::size_t depth, std::uint32_t at) {
    std::uint32_t narray = 0, nhash = 0;
    if (tp >= tag_tab + 2 && !read_u124(narray)) return fail(result::malformed, "truncated table header", at);
    if ((tp & 1) && !read_u124(nhash)) return fail(result::malformed, "truncated table header", at);
    if (depth + 1 > lua_json_max_depth) return refuse(refusal::depth, at);
    switch (tp - tag_tab) {
      case 0: put("{}", 2); return true;
      case 1: return object(nhash, depth, at);
      case 4: return array(narray, depth, at);
      case 2: return zero_based(narray, depth);
      default: return slow();  // both parts
    }
  }

  // Hash part only: an object if the first key is a string.
  bool object(std::uint32_t nhash, std::size_t depth, std::uint32_t at) {
    if (p_ >= end_ || *p_ < tag_str) return p_ >= end_ ? fail(result::malformed, "truncated table", at) : slow();
    put('{');
    bool first = true;
    for (std::uint32_t j = 0; j < nhash; ++j) {
      const std::size_t mark = out_ ? out_->size() : 0;
      if (!first) put(',');
      const std::uint32_t key_at = pos();
      std::uint32_t tp;
      if (!read_u124(tp)) return fail(result::malformed, "truncated (a key was expected)", key_at);
      if (tp >= tag_str) {
        if (!string(tp, key_at)) return false;
      } else if (tp == tag_int || tp == tag_num) {
        if (!number(tp, key_at, true)) return false;
      } else if (tp == tag_nil) {
        return fail(result::malformed, "a table key is nil", key_at);
      } else {
        return refuse(refusal::key_type, key_at);
      }
      put(':');
      if (p_ < end_ && *p_ == tag_nil) {  // never written by LuaJIT: a nil value is no entry
        ++p_;
        if (out_) out_->cut(mark);
        continue;
      }
      if (!value(depth + 1)) return false;
      first = false;
    }
    put('}');
    return true;
  }

  // Array part from index 1 only: cjson's array, holes as null.
  bool array(std::uint32_t narray, std::size_t depth, std::uint32_t at) {
    if (narray > 0x7fffffffu) return slow();  // cjson's int length (see cjson_int)
    const std::size_t mark = out_ ? out_->size() : 0;
    std::uint32_t written = 0, items = 0;  // slots written; non-nil elements
    for (std::uint32_t i = 1; i < narray; ++i) {
      if (p_ >= end_) return fail(result::malformed, "truncated (a value was expected)", pos());
      if (*p_ == tag_nil) {
        ++p_;
        continue;
      }
      put(written ? ',' : '[');
      for (; written + 1 < i; ++written) put("null,", 5);
      if (!value(depth + 1)) return false;
      written = i;
      ++items;
    }
    if (items == 0) {  // no element: cjson's empty table
      if (out_) out_->cut(mark);
      put("{}", 2);
      return true;
    }
    if (written > 2ull * items && written > 10) return refuse(refusal::sparse, at);
    put(']');
    return true;
  }

  // Array part from index 0 (t[0] set): an object with keys "0", "1", ...
  bool zero_based(std::uint32_t narray, std::size_t depth) {
    if (p_ >= end_ || *p_ == tag_nil) return slow();  // t[0] missing: the decoder decides
    put('{');
    bool first = true;
    char key[16];
    for (std::uint32_t i = 0; i < narray; ++i) {
      if (p_ >= end_) return fail(result::malformed, "truncated (a value was expected)", pos());
      if (*p_ == tag_nil) {
        ++p_;
        continue;
      }
      if (out_) {
        if (!first) out_->put(',');
        out_->put('"');
        const auto r = std::to_chars(key, key + sizeof key, i);
        out_->put(key, static_cast<std::size_t>(r.ptr - key));
        out_->put("\":", 2);
      }
      if (!value(depth + 1)) return false;
      first = false;
    }
    put('}');
    return true;
  }

  const unsigned char* begin_ = nullptr;
  const unsigned char* p_ = nullptr;
  const unsigned char* end_ = nullptr;
  raw_buf* out_ = nullptr;
  result res_ = result::ok;
  const char* what_ = nullptr;
  std::uint32_t what_at_ = 0;
};

decoder& local_decoder() {
  thread_local decoder d;
  return d;
}

// The fast path, then the decoder when the fast path cannot decide.
bool convert(std::string_view enc, std::string* out, std::string* error) {
  streamer st;
  thread_local raw_buf raw;
  if (out) raw.start(enc.size() + enc.size() / 2 + 64);
  const streamer::result r = st.run(enc, out ? &raw : nullptr);
  if (r == streamer::result::ok) {
    if (out) out->append(raw.data(), raw.size());
    raw.trim();
    return true;
  }
  raw.trim();
  if (r != streamer::result::slow) {
    if (error) *error = st.message();
    return false;
  }
  decoder& d = local_decoder();
  const bool ok = d.parse_all(enc, error);
  if (ok && out) d.emit(*out);
  d.trim();
  return ok;
}

}  // namespace

bool lua_json_check(std::string_view enc, std::string* error) { return convert(enc, nullptr, error); }

bool lua_to_json(std::string_view enc, std::string& out, std::string* error) { return convert(enc, &out, error); }

}  // namespace batchq
