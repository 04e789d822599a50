// boxed_text: a std::string behind one pointer, for bytes that are usually
// absent: 8 bytes where std::string takes 32, and no allocation while empty.
// batch_queue keeps one in every closed batch (its last error, empty until
// an attempt fails), and http_log's log_record one for a large entry's bytes
// (a small entry's are in a record_arena block); at batch_max_size 1 a queue
// that cannot send holds one batch and one record per entry, so the 24
// bytes count (bench/results.md, case 5).
#ifndef BATCHQ_DETAIL_BOXED_TEXT_HPP
#define BATCHQ_DETAIL_BOXED_TEXT_HPP

#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace batchq::detail {

class boxed_text {
 public:
  boxed_text() noexcept = default;
  boxed_text(const boxed_text& o) : p_(o.p_ ? std::make_unique<std::string>(*o.p_) : nullptr) {}
  boxed_text(boxed_text&&) noexcept = default;
  boxed_text& operator=(const boxed_text& o) {
    if (this != &o) p_ = o.p_ ? std::make_unique<std::string>(*o.p_) : nullptr;
    return *this;
  }
  boxed_text& operator=(boxed_text&&) noexcept = default;
  boxed_text& operator=(std::string s) {
    if (s.empty()) {
      p_.reset();
    } else if (p_) {
      *p_ = std::move(s);
    } else {
      p_ = std::make_unique<std::string>(std::move(s));
    }
    return *this;
  }
  ~boxed_text() = default;

  bool empty() const noexcept { return !p_ || p_->empty(); }
  const std::string& str() const noexcept {
    static const std::string none;
    return p_ ? *p_ : none;
  }
  std::string_view view() const noexcept { return p_ ? std::string_view(*p_) : std::string_view(); }
  // Moves the text out; empty afterwards.
  std::string take() {
    std::string s = p_ ? std::move(*p_) : std::string();
    p_.reset();
    return s;
  }
  operator const std::string&() const noexcept { return str(); }  // NOLINT(google-explicit-constructor): a text

  friend std::string operator+(std::string a, const boxed_text& b) { return a += b.str(); }
  friend std::string operator+(const char* a, const boxed_text& b) { return std::string(a) + b.str(); }

 private:
  std::unique_ptr<std::string> p_;
};

}  // namespace batchq::detail

#endif  // BATCHQ_DETAIL_BOXED_TEXT_HPP
