// Token files (csrc/common/token.h over private_files.h): a token directory or
// token file another user planted, a symlink, or a token others can read is an
// error naming the path and the fix, never read or written through; a planted
// temporary name does not redirect the write; racing creators agree on one token.
//
// The tests of another uid's file chown to 65534 (nobody), which needs root:
// as another user they pass with a warning that says they were skipped.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "acb_catch.hpp"
#include "common/private_files.h"
#include "common/token.h"

using acb::auth::load_or_create_token;
using acb::auth::read_token;
using acb::auth::TokenError;
using acb::auth::TokenKind;
using acb_test::has_substring;
namespace fs = std::filesystem;

namespace {

constexpr uid_t kOtherUid = 65534;

// A fresh 0700 directory under /tmp with ACB_TOKEN_DIR pointing at <it>/tokens
// (not created), and no token in the environment; removed at the end.
class TokenDirFixture {
 public:
  TokenDirFixture() {
    char pattern[] = "/tmp/acb-test-token-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    base_ = pattern;
    dir_ = base_ + "/tokens";
    ::setenv("ACB_TOKEN_DIR", dir_.c_str(), 1);
    ::unsetenv("ACB_TOKEN");
    ::unsetenv("ACB_ADMIN_TOKEN");
  }
  ~TokenDirFixture() {
    ::unsetenv("ACB_TOKEN_DIR");
    std::error_code ignored;
    fs::remove_all(base_, ignored);
  }
  const std::string& base() const { return base_; }
  const std::string& dir() const { return dir_; }
  std::string token_file() const { return dir_ + "/token"; }

 private:
  std::string base_;
  std::string dir_;
};

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream(path) << text;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::string file_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The message of the TokenError that `f` throws ("" when it throws none).
template <typename F>
std::string token_error(F&& f) {
  try {
    f();
  } catch (const TokenError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the broker creates a 0700 directory and a 0600 token file, and clients read it") {
  TokenDirFixture fx;
  const std::string token = load_or_create_token(TokenKind::client);
  CHECK(token.size() == 64);
  struct stat st {};
  REQUIRE(::lstat(fx.dir().c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  REQUIRE(::lstat(fx.token_file().c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(read_token(TokenKind::client) == token);
  CHECK(load_or_create_token(TokenKind::client) == token);
}

TEST_CASE("a token directory that is a symlink is refused, not followed") {
  TokenDirFixture fx;
  const std::string target = fx.base() + "/elsewhere";
  REQUIRE(::mkdir(target.c_str(), 0700) == 0);
  REQUIRE(::symlink(target.c_str(), fx.dir().c_str()) == 0);
  for (auto message : {token_error([] { load_or_create_token(TokenKind::admin); }),
                       token_error([] { read_token(TokenKind::admin); })}) {
    CHECK_THAT(message, has_substring(fx.dir() + " is a symlink"));
    CHECK_THAT(message, has_substring("set ACB_TOKEN_DIR to a private directory"));
  }
  CHECK(fs::is_empty(target));
}

TEST_CASE("a token directory that group or others can access is refused") {
  for (mode_t mode : {mode_t{0755}, mode_t{0777}}) {
    TokenDirFixture fx;
    REQUIRE(::mkdir(fx.dir().c_str(), 0700) == 0);
    REQUIRE(::chmod(fx.dir().c_str(), mode) == 0);
    const std::string expected = fx.dir() + " has mode 0" + (mode == 0755 ? "755" : "777");
    CHECK_THAT(token_error([] { load_or_create_token(TokenKind::client); }), has_substring(expected));
    CHECK_THAT(token_error([] { read_token(TokenKind::client); }), has_substring(expected));
    CHECK(fs::is_empty(fx.dir()));
  }
}

TEST_CASE("a token directory owned by another uid is refused") {
  if (::geteuid() != 0) {
    WARN("not root: skipped (chown to uid 65534 needs root)");
    return;
  }
  TokenDirFixture fx;
  REQUIRE(::mkdir(fx.dir().c_str(), 0700) == 0);
  write_file(fx.token_file(), "planted\n", 0600);
  REQUIRE(::chown(fx.dir().c_str(), kOtherUid, kOtherUid) == 0);
  const std::string expected = fx.dir() + " is owned by uid 65534";
  CHECK_THAT(token_error([] { load_or_create_token(TokenKind::client); }), has_substring(expected));
  CHECK_THAT(token_error([] { read_token(TokenKind::client); }), has_substring(expected));
}

TEST_CASE("a token file that is a symlink is neither read nor written through") {
  TokenDirFixture fx;
  REQUIRE(::mkdir(fx.dir().c_str(), 0700) == 0);
  const std::string victim = fx.base() + "/victim";
  write_file(victim, "chosen-by-another-user\n", 0600);
  REQUIRE(::symlink(victim.c_str(), fx.token_file().c_str()) == 0);
  for (auto message : {token_error([] { load_or_create_token(TokenKind::client); }),
                       token_error([] { read_token(TokenKind::client); })}) {
    CHECK_THAT(message, has_substring("token file " + fx.token_file() + " is a symlink"));
    CHECK_THAT(message, has_substring("remove it"));
  }
  CHECK(file_text(victim) == "chosen-by-another-user\n");
}

TEST_CASE("a token file that others can read is an error naming the path and the fix") {
  TokenDirFixture fx;
  REQUIRE(::mkdir(fx.dir().c_str(), 0700) == 0);
  write_file(fx.token_file(), "readable\n", 0644);
  for (auto message : {token_error([] { load_or_create_token(TokenKind::client); }),
                       token_error([] { read_token(TokenKind::client); })}) {
    CHECK_THAT(message, has_substring("token file " + fx.token_file() + " has mode 0644"));
    CHECK_THAT(message, has_substring("remove it (the broker makes a new one at its next start)"));
  }
}

TEST_CASE("a token file owned by another uid is refused") {
  if (::geteuid() != 0) {
    WARN("not root: skipped (chown to uid 65534 needs root)");
    return;
  }
  TokenDirFixture fx;
  REQUIRE(::mkdir(fx.dir().c_str(), 0700) == 0);
  write_file(fx.token_file(), "planted\n", 0600);
  REQUIRE(::chown(fx.token_file().c_str(), kOtherUid, kOtherUid) == 0);
  CHECK_THAT(token_error([] { read_token(TokenKind::client); }),
             has_substring(fx.token_file() + " is owned by uid 65534"));
  CHECK_THAT(token_error([] { load_or_create_token(TokenKind::client); }), has_substring("uid 65534"));
}

TEST_CASE("a planted temporary name does not redirect the token write") {
  TokenDirFixture fx;
  REQUIRE(::mkdir(fx.dir().c_str(), 0700) == 0);
  const std::string victim = fx.base() + "/victim";
  write_file(victim, "precious\n", 0600);
  // The name a predictable writer would use: <token>.tmp.<pid>.
  const std::string planted = fx.token_file() + ".tmp." + std::to_string(::getpid());
  REQUIRE(::symlink(victim.c_str(), planted.c_str()) == 0);
  const std::string token = load_or_create_token(TokenKind::client);
  CHECK(file_text(victim) == "precious\n");
  CHECK(file_text(fx.token_file()) == token + "\n");
  // Only the token and the planted link remain: no temporary is left behind.
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(fx.dir())) names.push_back(entry.path().filename().string());
  CHECK(names.size() == 2);
}

TEST_CASE("concurrent creators agree on one token") {
  TokenDirFixture fx;
  constexpr int kCreators = 8;
  std::vector<std::string> tokens(kCreators);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCreators; ++i) {
    threads.emplace_back([&tokens, i] {
      try {
        tokens[i] = load_or_create_token(TokenKind::admin);
      } catch (const std::exception& e) {
        tokens[i] = std::string("error: ") + e.what();  // reported by the CHECK below
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK_THAT(tokens.front(), !has_substring("error"));
  for (const auto& token : tokens) CHECK(token == tokens.front());
  CHECK(read_token(TokenKind::admin) == tokens.front());
}

TEST_CASE("a token in the environment skips the files") {
  TokenDirFixture fx;
  REQUIRE(::mkdir(fx.dir().c_str(), 0777) == 0);
  REQUIRE(::chmod(fx.dir().c_str(), 0777) == 0);
  ::setenv("ACB_TOKEN", "from-the-environment", 1);
  CHECK(load_or_create_token(TokenKind::client) == "from-the-environment");
  CHECK(read_token(TokenKind::client) == "from-the-environment");
  ::unsetenv("ACB_TOKEN");
}

TEST_CASE("publish_file replaces a planted symlink instead of writing through it") {
  TokenDirFixture fx;
  REQUIRE(::mkdir(fx.dir().c_str(), 0700) == 0);
  const std::string victim = fx.base() + "/victim";
  write_file(victim, "precious\n", 0600);
  const std::string port_file = fx.dir() + "/broker.port";
  REQUIRE(::symlink(victim.c_str(), port_file.c_str()) == 0);
  using namespace acb::files;
  CHECK(publish_file(port_file, "{}\n", Access::world_read, Publish::replace, {"port file", "choose another"}));
  CHECK(file_text(victim) == "precious\n");
  struct stat st {};
  REQUIRE(::lstat(port_file.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK((st.st_mode & 07777) == 0644);
  CHECK(read_private_file(port_file, Access::world_read, {"port file", ""}) == std::string("{}\n"));
}

TEST_CASE("a private directory in a parent others may write to without the sticky bit is refused") {
  TokenDirFixture fx;
  REQUIRE(::chmod(fx.base().c_str(), 0777) == 0);
  CHECK_THAT(token_error([] { load_or_create_token(TokenKind::client); }),
             has_substring("which has mode 0777: others may write to it and it is not sticky"));
  REQUIRE(::chmod(fx.base().c_str(), 01777) == 0);  // as /tmp: fine
  CHECK(load_or_create_token(TokenKind::client).size() == 64);
}
