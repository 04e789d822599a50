// Runs a program built by this project (batchq-replay, helpers) as a child
// process and collects its exit status, stdout and stderr. Header-only;
// Catch2 is not used here (callers assert on the result).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace batchq::test {

struct tool_result {
  int code = -1;    ///< exit status, or 128 + signal number
  std::string out;  ///< everything written to stdout
  std::string err;  ///< everything written to stderr
};

inline int wait_for_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Starts `args[0]` with `args`; stdout and stderr go to the given files
/// (opened with O_TRUNC; "" = inherited). Returns the pid; throws on failure.
inline pid_t spawn_tool(const std::vector<std::string>& args, const std::string& out_file,
                        const std::string& err_file) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!out_file.empty())
    posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!err_file.empty())
    posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(&a[0]);
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn " + args[0] + " failed: " + std::to_string(rc));
  return pid;
}

/// Runs the program to completion. `scratch` is a writable directory for the
/// output files.
inline tool_result run_tool(const std::vector<std::string>& args, const std::string& scratch) {
  const std::string out_file = scratch + "/tool.stdout";
  const std::string err_file = scratch + "/tool.stderr";
  tool_result r;
  r.code = wait_for_exit(spawn_tool(args, out_file, err_file));
  r.out = slurp(out_file);
  r.err = slurp(err_file);
  ::unlink(out_file.c_str());
  ::unlink(err_file.c_str());
  return r;
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> v;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    v.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return v;
}

}  // namespace batchq::test
