#include "token.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

namespace acb::auth {
namespace {

const char* env_name(TokenKind kind) { return kind == TokenKind::admin ? "ACB_ADMIN_TOKEN" : "ACB_TOKEN"; }

std::string from_env(TokenKind kind) {
  const char* value = std::getenv(env_name(kind));
  return value ? std::string(value) : std::string();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string random_hex(std::size_t bytes) {
  std::random_device rd;  // /dev/urandom on Linux
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned>(rd()) & 0xffu;
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xf]);
  }
  return out;
}

void ensure_private_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw TokenError("cannot create token directory " + dir + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw TokenError("token directory " + dir + " is not a directory");
  }
  if (st.st_uid != ::getuid()) {
    throw TokenError("token directory " + dir + " belongs to another user");
  }
}

}  // namespace

std::string token_dir() {
  if (const char* dir = std::getenv("ACB_TOKEN_DIR"); dir && *dir) return dir;
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime && *runtime) {
    return std::string(runtime) + "/acb";
  }
  return "/tmp/acb-" + std::to_string(::getuid());
}

std::string token_path(TokenKind kind) {
  return token_dir() + (kind == TokenKind::admin ? "/admin-token" : "/token");
}

std::string read_token(TokenKind kind) {
  if (auto env = from_env(kind); !env.empty()) return env;
  const std::string path = token_path(kind);
  std::ifstream in(path);
  if (!in) {
    throw TokenError("cannot read the acb " + std::string(kind == TokenKind::admin ? "admin " : "") +
                     "token from " + path + " (set " + env_name(kind) +
                     " or start the broker once to create it)");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto token = trim(ss.str());
  if (token.empty()) throw TokenError("token file " + path + " is empty");
  return token;
}

std::string load_or_create_token(TokenKind kind) {
  if (auto env = from_env(kind); !env.empty()) return env;
  ensure_private_dir(token_dir());
  const std::string path = token_path(kind);
  // Write a private temporary file, then link() it into place: link fails with
  // EEXIST when another broker won the race, and a reader never sees a
  // half-written token.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) throw TokenError("cannot create token file " + tmp + ": " + std::strerror(errno));
  const std::string token = random_hex(32);
  const std::string line = token + "\n";
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!written) {
    ::unlink(tmp.c_str());
    throw TokenError("cannot write token file " + tmp + ": " + std::strerror(errno));
  }
  const int linked = ::link(tmp.c_str(), path.c_str());
  const int link_errno = errno;
  ::unlink(tmp.c_str());
  if (linked == 0) return token;
  if (link_errno != EEXIST) {
    throw TokenError("cannot create token file " + path + ": " + std::strerror(link_errno));
  }
  return read_token(kind);
}

bool tokens_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = a.size() < b.size() ? a.size() : b.size();
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace acb::auth
