// A consumer of batchq: header-only core plus the compiled library.
#include <batchq/batch_queue.hpp>
#include <batchq/version.hpp>

#include <cstdio>
#include <cstring>
#include <string>

int main() {
  if (std::strcmp(batchq::version(), BATCHQ_VERSION_STRING) != 0) {
    std::fprintf(stderr, "header %s, library %s\n", BATCHQ_VERSION_STRING, batchq::version());
    return 1;
  }
  std::size_t delivered = 0;
  batchq::batch_queue_options o;
  o.batch_max_size = 10;
  o.process_delay = batchq::milliseconds(0);
  batchq::batch_queue_callbacks<std::string> cb;
  cb.process = [&](batchq::span<const std::string> b, const batchq::attempt_context&) {
    delivered += b.size();
    return batchq::process_result::success();
  };
  {
    batchq::batch_queue<std::string> q(o, cb);
    for (int i = 0; i < 100; ++i)
      if (q.enqueue("entry " + std::to_string(i)) != batchq::enqueue_result::accepted) return 2;
    if (!q.flush(batchq::milliseconds(10000))) return 3;
  }
  std::printf("consumer delivered %zu entries with batchq %s\n", delivered, batchq::version());
  return delivered == 100 ? 0 : 4;
}
