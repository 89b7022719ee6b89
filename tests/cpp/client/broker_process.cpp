#include "broker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace acb::test {

BrokerProcess::BrokerProcess(const std::string& binary, const std::vector<std::string>& flags) {
  char dir_template[] = "/tmp/acb-client-test-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) throw std::runtime_error("mkdtemp failed");
  token_dir_ = std::string(dir_template) + "/tokens";
  ::setenv("ACB_TOKEN_DIR", token_dir_.c_str(), 1);
  ::unsetenv("ACB_TOKEN");
  ::unsetenv("ACB_ADMIN_TOKEN");

  std::vector<std::string> args{binary, "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // The broker's log goes beside its tokens, out of the test's output.
    const std::string log = std::string(dir_template) + "/broker.log";
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd >= 0) ::dup2(log_fd, STDERR_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  // The first stdout line: "acb-broker listening on 127.0.0.1:PORT metrics ...".
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{out[0], POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buffer[256];
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n <= 0) break;
    line.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  const std::string prefix = "acb-broker listening on 127.0.0.1:";
  if (line.rfind(prefix, 0) != 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    throw std::runtime_error("acb-broker " + binary + " did not start; its first line: '" + line + "'");
  }
  port_ = static_cast<std::uint16_t>(std::stoi(line.substr(prefix.size())));
}

BrokerProcess::~BrokerProcess() {
  ::kill(pid_, SIGTERM);
  ::waitpid(pid_, nullptr, 0);
  std::error_code ignored;
  std::filesystem::remove_all(std::filesystem::path(token_dir_).parent_path(), ignored);
}

}  // namespace acb::test
