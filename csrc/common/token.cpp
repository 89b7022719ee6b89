#include "token.h"

#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <random>

#include "private_files.h"

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

// The fixes named in errors: the directory is the user's to remove or replace,
// a bad file is remade by the broker's next start.
constexpr files::Purpose kDirPurpose{"token directory",
                                     "remove it, or set ACB_TOKEN_DIR to a private directory (mode 0700, yours)"};
constexpr files::Purpose kFilePurpose{"token file",
                                      "remove it (the broker makes a new one at its next start), or set ACB_TOKEN / "
                                      "ACB_ADMIN_TOKEN"};

std::string missing_token(TokenKind kind, const std::string& path) {
  return "cannot read the acb " + std::string(kind == TokenKind::admin ? "admin " : "") + "token from " + path +
         " (set " + env_name(kind) + " or start the broker once to create it)";
}

// The token in its file, checked to be private; std::nullopt when there is none.
std::optional<std::string> token_from_file(TokenKind kind) {
  const std::string path = token_path(kind);
  std::optional<std::string> content;
  try {
    if (!files::check_private_dir(token_dir(), kDirPurpose)) return std::nullopt;
    content = files::read_private_file(path, files::Access::owner_only, kFilePurpose);
  } catch (const files::PrivateFileError& e) {
    throw TokenError(e.what());
  }
  if (!content) return std::nullopt;
  auto token = trim(*content);
  if (token.empty()) throw TokenError("token file " + path + " is empty: " + std::string(kFilePurpose.fix));
  return token;
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
  if (auto token = token_from_file(kind)) return *token;
  throw TokenError(missing_token(kind, token_path(kind)));
}

std::string load_or_create_token(TokenKind kind) {
  if (auto env = from_env(kind); !env.empty()) return env;
  try {
    files::ensure_private_dir(token_dir(), kDirPurpose);
  } catch (const files::PrivateFileError& e) {
    throw TokenError(e.what());
  }
  if (auto token = token_from_file(kind)) return *token;
  // Linked into place: when another broker won the race, its token is the one.
  const std::string token = random_hex(32);
  bool created = false;
  try {
    created = files::publish_file(token_path(kind), token + "\n", files::Access::owner_only,
                                  files::Publish::keep_existing, kFilePurpose);
  } catch (const files::PrivateFileError& e) {
    throw TokenError(e.what());
  }
  return created ? token : read_token(kind);
}

bool tokens_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = a.size() < b.size() ? a.size() : b.size();
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace acb::auth
