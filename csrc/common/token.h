// Authentication tokens of the broker (docs/protocol.md, "Authentication").
//
// Two tokens: the client token and the admin token. Each comes from its
// environment variable (ACB_TOKEN, ACB_ADMIN_TOKEN) or from a file in the
// token directory: $ACB_TOKEN_DIR, else $XDG_RUNTIME_DIR/acb, else
// /tmp/acb-<uid> (this rule is here and in python/acb/_wire.py token_dir,
// nowhere else). The broker creates missing files (mode 0600, directory
// 0700) with 32 random bytes in hex; clients only read them. Both sides
// check the directory and the files with csrc/common/private_files.h, so a
// directory or file another user planted, a symlink or a token others can
// read is an error naming the path and the fix, never used.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace acb::auth {

enum class TokenKind { client, admin };

class TokenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The directory the token files live in (not created).
std::string token_dir();
/// The file of one token kind inside token_dir().
std::string token_path(TokenKind kind);

/// The token from the environment, else from its file. Throws TokenError
/// naming the file when neither exists, or the directory or the file is not
/// private (private_files.h).
std::string read_token(TokenKind kind);

/// The broker's side: the token from the environment, else from its file,
/// creating the file (0600, in a 0700 directory) with a fresh random token.
/// Of two brokers that create it at once, both return the one that was linked
/// into place first.
std::string load_or_create_token(TokenKind kind);

/// Constant-time comparison, so that the time to reject says nothing about the prefix.
bool tokens_equal(std::string_view a, std::string_view b);

}  // namespace acb::auth
