// Private files: directories and files that no other local user can plant,
// read or redirect (docs/operations.md, "Tokens").
//
// The broker keeps its tokens, and the embedded broker its lock, log and port
// file, in a directory that may be a predictable path in /tmp. Another user
// can create that path first, or plant a symlink or a file in it, to choose
// the admin token or to make us write through a link. So:
//  - a private directory is checked with lstat: a directory, not a symlink,
//    owned by this uid, with no group or other permission bits; its parent
//    must exist and be owned by this uid or root, and be sticky when others
//    may write to it (as /tmp is), so nobody can rename the directory away;
//  - a file is opened with O_NOFOLLOW (and O_NONBLOCK, so a planted FIFO
//    cannot block us) and checked with fstat on the open descriptor: a
//    regular file, owned by this uid, without the permission bits its access
//    forbids;
//  - a file is written to a new file with an unpredictable name beside it
//    (mkstemp: O_CREAT|O_EXCL, so neither a planted name nor a symlink
//    redirects the write), then linked or renamed into place, so a reader
//    never sees half of it.
// Every failure throws PrivateFileError naming the path, what is wrong and
// the fix. The checks themselves (unsafe_*) are pure, for tests.
//
// Thread-safe: no state; concurrent publishers of one path are resolved by
// link() (Publish::keep_existing) or rename() (Publish::replace).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace acb::files {

class PrivateFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What a path is for, in errors: `what` names it ("token directory"),
/// `fix` says what the user can do ("remove it, or set ACB_TOKEN_DIR ...").
struct Purpose {
  std::string_view what;
  std::string_view fix;
};

/// Who may read a file besides its owner. Nobody may write it.
enum class Access {
  owner_only,   ///< secrets (tokens): no group/other bits at all (0600)
  world_read,   ///< not secret (port file, log): no group/other write bits (0644)
};

/// The largest file read_private_file reads: tokens and port files are a line.
inline constexpr std::size_t kMaxPrivateFileBytes = 64 * 1024;

/// Why a directory with this lstat result is not private to `uid`, or "" when it is.
std::string unsafe_dir(const struct stat& st, uid_t uid);
/// Why the parent of a private directory (stat result) lets others replace it, or "".
std::string unsafe_parent(const struct stat& st, uid_t uid);
/// Why a file with this fstat result is not ours with `access`, or "" when it is.
std::string unsafe_file(const struct stat& st, uid_t uid, Access access);

/// Checks that `dir` and its parent are private (see above). Returns false when
/// `dir` does not exist; throws PrivateFileError when it is not private.
bool check_private_dir(const std::string& dir, const Purpose& purpose);

/// Creates `dir` (mode 0700; the leaf only, its parent must exist) unless it
/// exists, then checks it as check_private_dir does.
void ensure_private_dir(const std::string& dir, const Purpose& purpose);

/// The content of an existing file, opened without following a symlink and
/// checked on its descriptor. std::nullopt when it does not exist; throws
/// PrivateFileError when it is not ours with `access`, or is over
/// kMaxPrivateFileBytes.
std::optional<std::string> read_private_file(const std::string& path, Access access, const Purpose& purpose);

/// How publish_file puts the new file at its path.
enum class Publish {
  keep_existing,  ///< link(): an existing file wins (another broker wrote it first)
  replace,        ///< rename(): replaces what is there, never writing through it
};

/// Writes `content` to a new file beside `path` (unpredictable name, mode 0600,
/// then 0644 for Access::world_read) and puts it at `path`. Returns false when
/// Publish::keep_existing found a file there (the new one is removed), true
/// when `path` now holds `content`. Throws PrivateFileError on any failure.
bool publish_file(const std::string& path, std::string_view content, Access access, Publish how,
                  const Purpose& purpose);

}  // namespace acb::files
