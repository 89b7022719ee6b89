#include "private_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace acb::files {
namespace {

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string owner_problem(const struct stat& st, uid_t uid) {
  return "is owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " + std::to_string(uid) + ")";
}

[[noreturn]] void fail(const Purpose& purpose, const std::string& path, const std::string& problem) {
  throw PrivateFileError(std::string(purpose.what) + " " + path + " " + problem + ": " + std::string(purpose.fix));
}

[[noreturn]] void fail_errno(const Purpose& purpose, const std::string& call, const std::string& path, int error) {
  throw PrivateFileError("cannot " + call + " " + std::string(purpose.what) + " " + path + ": " +
                         std::strerror(error) + " (" + std::string(purpose.fix) + ")");
}

// "/a/b/" -> "/a/b"; the root and "" stay as they are.
std::string without_trailing_slash(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string parent_of(const std::string& path) {
  const std::string p = without_trailing_slash(path);
  const auto slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

mode_t forbidden_bits(Access access) { return access == Access::owner_only ? 077 : 022; }

// Closes a descriptor, and removes a temporary file unless it was put in place.
struct TempFile {
  int fd = -1;
  std::string path;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

std::string unsafe_dir(const struct stat& st, uid_t uid) {
  if (S_ISLNK(st.st_mode)) return "is a symlink";
  if (!S_ISDIR(st.st_mode)) return "is not a directory";
  if (st.st_uid != uid) return owner_problem(st, uid);
  if ((st.st_mode & 077) != 0) {
    return "has mode " + octal_mode(st.st_mode) +
           ", so other users can see or change it (it must be 0700: chmod 700 it)";
  }
  return "";
}

std::string unsafe_parent(const struct stat& st, uid_t uid) {
  if (!S_ISDIR(st.st_mode)) return "is not a directory";
  if (st.st_uid != uid && st.st_uid != 0) return owner_problem(st, uid) + " or root";
  if ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0) {
    return "has mode " + octal_mode(st.st_mode) + ": others may write to it and it is not sticky, so they could " +
           "replace what is in it";
  }
  return "";
}

std::string unsafe_file(const struct stat& st, uid_t uid, Access access) {
  if (!S_ISREG(st.st_mode)) return "is not a regular file";
  if (st.st_uid != uid) return owner_problem(st, uid);
  if ((st.st_mode & forbidden_bits(access)) != 0) {
    return access == Access::owner_only
               ? "has mode " + octal_mode(st.st_mode) + ", so other users can read or change it (it must be 0600)"
               : "has mode " + octal_mode(st.st_mode) + ", so other users can change it";
  }
  return "";
}

bool check_private_dir(const std::string& dir, const Purpose& purpose) {
  const std::string parent = parent_of(dir);
  struct stat parent_st {};
  // The parent's check follows symlinks: only the leaf is ours to insist on.
  if (::stat(parent.c_str(), &parent_st) != 0) {
    if (errno == ENOENT) return false;
    fail_errno(purpose, "inspect the parent of", dir, errno);
  }
  if (auto problem = unsafe_parent(parent_st, ::getuid()); !problem.empty()) {
    fail(purpose, dir, "is in " + parent + ", which " + problem);
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    fail_errno(purpose, "inspect", dir, errno);
  }
  if (auto problem = unsafe_dir(st, ::getuid()); !problem.empty()) fail(purpose, dir, problem);
  return true;
}

void ensure_private_dir(const std::string& dir, const Purpose& purpose) {
  if (check_private_dir(dir, purpose)) return;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) fail_errno(purpose, "create", dir, errno);
  // Checked again: the parent, and whatever now exists there (ours, or one planted in the race).
  if (!check_private_dir(dir, purpose)) fail_errno(purpose, "create", dir, ENOENT);
}

std::optional<std::string> read_private_file(const std::string& path, Access access, const Purpose& purpose) {
  TempFile file;  // only to close the descriptor: path stays empty
  file.fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (file.fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    if (errno == ELOOP) fail(purpose, path, "is a symlink");
    fail_errno(purpose, "open", path, errno);
  }
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) fail_errno(purpose, "inspect", path, errno);
  if (auto problem = unsafe_file(st, ::getuid(), access); !problem.empty()) fail(purpose, path, problem);
  if (static_cast<std::size_t>(st.st_size) > kMaxPrivateFileBytes) {
    fail(purpose, path, "is " + std::to_string(st.st_size) + " bytes, over the " +
                            std::to_string(kMaxPrivateFileBytes) + " a private file may hold");
  }
  std::string content;
  std::vector<char> buffer(4096);
  for (;;) {
    const ssize_t n = ::read(file.fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(purpose, "read", path, errno);
    if (n == 0) break;
    content.append(buffer.data(), static_cast<std::size_t>(n));
    if (content.size() > kMaxPrivateFileBytes) fail(purpose, path, "grew while it was read");
  }
  return content;
}

bool publish_file(const std::string& path, std::string_view content, Access access, Publish how,
                  const Purpose& purpose) {
  const std::string name = without_trailing_slash(path);
  std::string pattern = parent_of(name) + "/." + name.substr(name.rfind('/') + 1) + ".XXXXXX";
  TempFile tmp;
  // mkostemp: a random name opened with O_CREAT|O_EXCL and mode 0600, so a
  // name or symlink planted beside `path` cannot redirect the write.
  tmp.fd = ::mkostemp(pattern.data(), O_CLOEXEC);
  if (tmp.fd < 0) fail_errno(purpose, "create a temporary file beside", path, errno);
  tmp.path = pattern;
  if (access == Access::world_read && ::fchmod(tmp.fd, 0644) != 0) fail_errno(purpose, "chmod", tmp.path, errno);
  for (std::size_t done = 0; done < content.size();) {
    const ssize_t n = ::write(tmp.fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(purpose, "write", tmp.path, errno);
    done += static_cast<std::size_t>(n);
  }
  if (::close(tmp.fd) != 0) {
    tmp.fd = -1;
    fail_errno(purpose, "write", tmp.path, errno);
  }
  tmp.fd = -1;
  if (how == Publish::replace) {
    if (::rename(tmp.path.c_str(), path.c_str()) != 0) fail_errno(purpose, "write", path, errno);
    tmp.path.clear();  // renamed: nothing left to remove
    return true;
  }
  // link() fails with EEXIST when another writer won; either way the temporary goes.
  if (::link(tmp.path.c_str(), path.c_str()) == 0) return true;
  if (errno == EEXIST) return false;
  fail_errno(purpose, "create", path, errno);
}

}  // namespace acb::files
