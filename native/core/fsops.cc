// fsops.cc: the plan's filesystem operations and the path resolution beneath a root that they use.
//
// Part of the child path (see child.cc): between clone3 and execve, so raw system calls over the
// plan and stack buffers only; no allocation, locks, exceptions, stdio or N-API.
#include "fsops.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "syscalls.h"

namespace nsbox {

namespace {

unsigned long lock_flags_of(int fd) {
  // Flags that an unprivileged remount may not clear must be repeated in MS_REMOUNT; carrying the
  // current ones over is always correct for a remount that only adds restrictions.
  struct statfs st;
  if (fstatfs(fd, &st) != 0) return 0;
  unsigned long out = 0;
  if (st.f_flags & ST_NOSUID) out |= MS_NOSUID;
  if (st.f_flags & ST_NODEV) out |= MS_NODEV;
  if (st.f_flags & ST_NOEXEC) out |= MS_NOEXEC;
  if (st.f_flags & ST_RDONLY) out |= MS_RDONLY;
  if (st.f_flags & ST_NOATIME) out |= MS_NOATIME;
  if (st.f_flags & ST_NODIRATIME) out |= MS_NODIRATIME;
  if (st.f_flags & ST_RELATIME) out |= MS_RELATIME;
  return out;
}

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
struct OpenHow {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};
constexpr uint64_t kResolveNoMagiclinks = 0x02;
constexpr uint64_t kResolveNoSymlinks = 0x04;
constexpr uint64_t kResolveInRoot = 0x10;

}  // namespace

size_t str_len(const char* s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

namespace {

// Per-component resolution of `path` below `root` for kernels without openat2 (or a filter that
// hides it): symlinks are followed by hand and ".." never climbs above root, as RESOLVE_IN_ROOT
// does. Returns an O_PATH fd or -1. Stack buffers only.
int walk_in_root(int root, const char* path, bool no_symlinks) {
  char rest[4096];   // what is left to walk
  char link[4096];
  int stack[64];     // fds of the directories walked so far; stack[0] is a dup of root
  int depth = 0;
  int links = 0;
  size_t n = str_len(path);
  if (n >= sizeof(rest)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (size_t i = 0; i <= n; i++) rest[i] = path[i];
  stack[0] = fcntl(root, F_DUPFD_CLOEXEC, 3);
  if (stack[0] < 0) return -1;
  size_t pos = 0;
  for (;;) {
    while (rest[pos] == '/') pos++;
    if (!rest[pos]) break;
    size_t end = pos;
    while (rest[end] && rest[end] != '/') end++;
    char saved = rest[end];
    rest[end] = 0;
    const char* comp = rest + pos;
    if (comp[0] == '.' && comp[1] == 0) {
      // nothing
    } else if (comp[0] == '.' && comp[1] == '.' && comp[2] == 0) {
      if (depth > 0) close(stack[depth--]);
    } else {
      int fd = openat(stack[depth], comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        int e = errno;
        for (int i = 0; i <= depth; i++) close(stack[i]);
        errno = e;
        return -1;
      }
      struct stat st;
      if (fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
        if (no_symlinks) {
          close(fd);
          for (int i = 0; i <= depth; i++) close(stack[i]);
          errno = ELOOP;
          return -1;
        }
        ssize_t ln = readlinkat(fd, "", link, sizeof(link) - 1);
        close(fd);
        if (ln < 0 || ++links > 40) {
          for (int i = 0; i <= depth; i++) close(stack[i]);
          errno = ln < 0 ? errno : ELOOP;
          return -1;
        }
        link[ln] = 0;
        // rest := link + "/" + what followed this component
        rest[end] = saved;
        const char* tail = rest + end;
        size_t tl = str_len(tail);
        if (static_cast<size_t>(ln) + tl + 1 >= sizeof(rest)) {
          for (int i = 0; i <= depth; i++) close(stack[i]);
          errno = ENAMETOOLONG;
          return -1;
        }
        char tmp[4096];
        for (size_t i = 0; i <= tl; i++) tmp[i] = tail[i];
        for (ssize_t i = 0; i < ln; i++) rest[i] = link[i];
        for (size_t i = 0; i <= tl; i++) rest[ln + static_cast<ssize_t>(i)] = tmp[i];
        pos = 0;
        if (link[0] == '/') {
          while (depth > 0) close(stack[depth--]);
        }
        continue;
      }
      if (depth + 1 >= 64) {
        close(fd);
        for (int i = 0; i <= depth; i++) close(stack[i]);
        errno = ELOOP;
        return -1;
      }
      stack[++depth] = fd;
    }
    rest[end] = saved;
    pos = end;
  }
  for (int i = 0; i < depth; i++) close(stack[i]);
  return stack[depth];
}

}  // namespace

bool g_walk_only = false;

namespace {

// openat2 with RESOLVE_IN_ROOT fails with EAGAIN when a ".." on the path raced with a rename or a
// mount anywhere on the host (the kernel cannot tell it stayed inside): retried a few times, then
// left to the walk (ENOSYS's path), which handles ".." by hand. Renames elsewhere, a container's
// own included, must never fail a start.
constexpr int kOpenat2Tries = 8;

long openat2_in_root(int root, const char* rel, OpenHow* how) {
  long fd = -1;
  for (int i = 0; i < kOpenat2Tries; i++) {
    fd = syscall(SYS_openat2, root, rel, how, sizeof(*how));
    if (fd >= 0 || errno != EAGAIN) return fd;
  }
  return fd;
}

}  // namespace

int open_in_root(int root, const char* path, int* call, bool no_symlinks) {
  OpenHow how = {O_PATH | O_CLOEXEC, 0, kResolveInRoot | kResolveNoMagiclinks | (no_symlinks ? kResolveNoSymlinks : 0)};
  const char* rel = path;
  while (*rel == '/') rel++;
  if (call) *call = OPCALL_RESOLVE;
  if (!*rel) return fcntl(root, F_DUPFD_CLOEXEC, 3);
  if (!g_walk_only) {
    long fd = openat2_in_root(root, rel, &how);
    if (fd >= 0 || (errno != ENOSYS && errno != EAGAIN)) return static_cast<int>(fd);
  }
  if (call) *call = OPCALL_WALK;
  return walk_in_root(root, rel, no_symlinks);
}

int open_dst_in_root(int root, const Op& op, int* call, bool* skip) {
  const bool nofollow = op.where & WHERE_DST_NOFOLLOW;
  int fd = open_in_root(root, op.dst, call, nofollow);
  *skip = fd < 0 && (op.where & WHERE_OPTIONAL) && (errno == ENOENT || (nofollow && errno == ELOOP));
  return fd;
}

// "/proc/self/fd/N" in buf: mount(2) takes paths, and this one names exactly the resolved object.
// rel: "N", for a child whose working directory is its own fd directory in the host's /proc
// (mount_in_template): one component to resolve instead of "self" (a link to the pid's directory),
// "fd" and "N" for every mount.
const char* fd_path(char* buf, int fd, bool rel) {
  const char* pre = rel ? "" : "/proc/self/fd/";
  int i = 0;
  while (pre[i]) {
    buf[i] = pre[i];
    i++;
  }
  char d[12];
  int n = 0;
  do {
    d[n++] = static_cast<char>('0' + fd % 10);
    fd /= 10;
  } while (fd);
  while (n) buf[i++] = d[--n];
  buf[i] = 0;
  return buf;
}

// The source of a WHERE_SRC_BENEATH bind: op.data resolved beneath the host directory op.src, as an
// O_PATH fd; -1 with errno.
int open_src_beneath(const Op& op, int* call) {
  *call = OPCALL_OPEN;
  int outer = open(op.src, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (outer < 0) return -1;
  int fd = open_in_root(outer, op.data, call);
  *call = src_call(*call);
  int e = errno;
  close(outer);
  errno = e;
  return fd;
}

int open_src_fd(const Op& op, int* call) {
  *call = OPCALL_OPEN;
  int fd = open(op.src, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat a, b;
  if (fstat(fd, &a) != 0 || fstat(static_cast<int>(op.dev), &b) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  if (a.st_dev != b.st_dev || a.st_ino != b.st_ino || (a.st_mode & S_IFMT) != (b.st_mode & S_IFMT)) {
    close(fd);
    errno = ESTALE;
    return -1;
  }
  return fd;
}

namespace {

// Splits a container path into the fd of its parent directory (resolved in root) and its last name.
int open_parent_in_root(int root, const char* path, const char** name, int* call) {
  *call = OPCALL_RESOLVE;
  char parent[4096];
  size_t n = str_len(path);
  if (n >= sizeof(parent)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  while (n > 1 && path[n - 1] == '/') n--;
  size_t slash = n;
  while (slash > 0 && path[slash - 1] != '/') slash--;
  *name = path + slash;
  for (size_t i = 0; i < slash; i++) parent[i] = path[i];
  parent[slash] = 0;
  return open_in_root(root, parent, call);
}

}  // namespace

int parent_in_root_cached(int root, const char* path, const char** name, DirCache* c, int* call) {
  size_t n = str_len(path);
  while (n > 1 && path[n - 1] == '/') n--;
  size_t slash = n;
  while (slash > 0 && path[slash - 1] != '/') slash--;
  if (c->fd >= 0 && c->len == slash) {
    bool same = true;
    for (size_t i = 0; i < slash && same; i++) same = c->path[i] == path[i];
    if (same) {
      *name = path + slash;
      return c->fd;
    }
  }
  c->drop();
  int fd = open_parent_in_root(root, path, name, call);
  if (fd < 0) return -1;
  c->fd = fd;
  c->path = path;
  c->len = slash;
  return fd;
}

bool optional_remount_of(const Op& mnt, const Op& op) {
  if (mnt.kind != OP_MOUNT || op.kind != OP_REMOUNT || !(mnt.where & WHERE_OPTIONAL) || !(op.where & WHERE_OPTIONAL)) return false;
  const char* a = mnt.dst;
  const char* b = op.dst;
  if (!a || !b) return false;
  while (*a && *a == *b) {
    a++;
    b++;
  }
  return *a == *b;
}

int run_op(const Op& op, int root, DirCache* cache, bool rel_proc, int* call, bool* skipped) {
  *call = OPCALL_OWN;
  if (skipped) *skipped = false;
  if (op.where & WHERE_SRC_DETACHED) {
    // (The mount template's alone: mnt_template.cc. The addon plans no other way for it.)
    errno = EINVAL;
    return -1;
  }
  const bool dst_in = (op.where & WHERE_DST_IN_ROOT) && root >= 0;
  const bool src_in = (op.where & WHERE_SRC_IN_ROOT) && root >= 0;
  char dbuf[32], sbuf[32];
  int dfd = -1, sfd = -1, rc = -1;
  switch (op.kind) {
    case OP_MOUNT:
    case OP_REMOUNT: {
      cache->drop();
      const char* dst = op.dst;
      const char* src = op.src;
      if (dst_in) {
        bool skip;
        if ((dfd = open_dst_in_root(root, op, call, &skip)) < 0) {
          if (skip && skipped) *skipped = true;
          return skip ? 0 : -1;
        }
        dst = fd_path(dbuf, dfd, rel_proc);
      }
      if (src_in) {
        if (!op.src) {
          if (dfd >= 0) close(dfd);
          errno = EINVAL;
          return -1;
        }
        if ((sfd = open_in_root(root, op.src, call)) < 0) {
          *call = src_call(*call);
          int e = errno;
          if (dfd >= 0) close(dfd);
          errno = e;
          return -1;
        }
        src = fd_path(sbuf, sfd, rel_proc);
      }
      const char* data = op.data;
      if (op.kind == OP_MOUNT && (op.where & WHERE_SRC_FD)) {
        if ((sfd = open_src_fd(op, call)) < 0) {
          int e = errno;
          if (dfd >= 0) close(dfd);
          errno = e;
          return -1;
        }
        src = fd_path(sbuf, sfd, rel_proc);
      }
      if (op.kind == OP_MOUNT && (op.where & WHERE_SRC_BENEATH)) {
        if ((sfd = open_src_beneath(op, call)) < 0) {
          int e = errno;
          if (dfd >= 0) close(dfd);
          errno = e;
          return -1;
        }
        src = fd_path(sbuf, sfd, rel_proc);
        data = nullptr;
      }
      *call = OPCALL_OWN;
      if (op.kind == OP_MOUNT) {
        rc = mount(src, dst, op.fstype, op.flags, data);
      } else {
        int ffd = dfd >= 0 ? dfd : open(dst, O_PATH | O_CLOEXEC);
        unsigned long keep = ffd >= 0 ? lock_flags_of(ffd) : 0;
        if (ffd >= 0 && ffd != dfd) close(ffd);
        rc = mount(nullptr, dst, nullptr, MS_REMOUNT | op.flags | keep, nullptr);
      }
      break;
    }
    case OP_MKDIR:
    case OP_TOUCH:
    case OP_SYMLINK:
    case OP_MKNOD: {
      const char* name = op.dst;
      int dir = AT_FDCWD;
      if (dst_in) {
        // The cache owns the fd: it is not closed below.
        if ((dir = parent_in_root_cached(root, op.dst, &name, cache, call)) < 0) return -1;
        *call = OPCALL_OWN;
        if (op.where & WHERE_DST_ROOT_MNT) {
          // Directories of an overlay all have its st_dev; a caller's bind, /dev or /proc another.
          struct stat ps, rs;
          if (fstat(dir, &ps) != 0 || fstat(root, &rs) != 0) return -1;
          if (ps.st_dev != rs.st_dev) {
            errno = EXDEV;
            return -1;
          }
        }
      }
      if (op.kind == OP_MKDIR) {
        rc = mkdirat(dir, name, op.mode);
        // A host path (nsbox's own scratch: an overlay's upper layer, whose directories give the
        // merged ones their modes) gets the mode as planned, not as Node's umask left it (1777).
        if (rc == 0 && !dst_in) {
          *call = OPCALL_FCHMODAT;
          rc = fchmodat(dir, name, op.mode & 07777, 0);
        }
        if (rc != 0 && errno == EEXIST) {
          struct stat st;
          // A directory, or a symlink to one (mounts on it are resolved in root later). The link
          // is followed inside the root, as the mount will follow it: fstatat would follow it from
          // the child's own root, the host's before pivot_root, and whether the start failed
          // (ENOTDIR) told the image whether a host path of its choosing is a directory.
          bool is_dir = fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
          if (!is_dir && dst_in) {
            int t = open_in_root(root, op.dst);
            is_dir = t >= 0 && fstat(t, &st) == 0 && S_ISDIR(st.st_mode);
            if (t >= 0) close(t);
          }
          if (is_dir) {
            rc = 0;
          } else {
            errno = ENOTDIR;
          }
        }
      } else if (op.kind == OP_TOUCH) {
        // Read-only: on an overlay root, opening an existing file for writing copies it up whole
        // into the upper layer (memory, on its tmpfs); O_RDONLY | O_CREAT makes a missing one all
        // the same.
        int fd = openat(dir, name, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, op.mode);
        if (fd >= 0) {
          close(fd);
          rc = 0;
        } else {
          int err = errno;
          struct stat st;
          // An existing non-writable file is a fine bind target too. Otherwise the open's own
          // errno is the error (EMFILE, say), not the ENOENT of the look that followed it.
          if (err != ELOOP && fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
            rc = 0;
          else
            errno = err;
        }
      } else if (op.kind == OP_SYMLINK) {
        if (op.src) {
          rc = symlinkat(op.src, dir, name);
        } else {
          errno = EINVAL;  // a link needs a target (only a malformed plan has none)
        }
      } else {
        rc = mknodat(dir, name, op.mode, static_cast<dev_t>(op.dev));
        // The mode as planned (0666), not as Node's umask left it.
        if (rc == 0) {
          *call = OPCALL_FCHMODAT;
          rc = fchmodat(dir, name, op.mode & 07777, 0);
        }
      }
      break;
    }
    default:
      errno = EINVAL;
      return -1;
  }
  int e = errno;
  if (dfd >= 0) close(dfd);
  if (sfd >= 0) close(sfd);
  errno = e;
  return rc;
}

// open(2) of a path inside the process's root (the container's, once it is in place) that
// neither leaves the root through ".." or an absolute symlink nor follows a magic link
// (/proc/self/fd/N, /proc/<pid>/cwd): openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS from "/".
// Where openat2 is missing (kernel < 5.6, or a filter hiding it) the per-component walk, which
// follows symlinks as strings and so never through a magic link, gives an O_PATH fd: flags other
// than O_PATH then reopen that through /proc/self/fd (its target is the walked object itself).
int open_beneath_root(const char* path, uint64_t flags) {
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return -1;
  const char* rel = path;
  while (*rel == '/') rel++;
  long fd;
  if (!*rel) {
    fd = (flags & O_PATH) ? fcntl(root, F_DUPFD_CLOEXEC, 3) : openat(root, ".", static_cast<int>(flags));
  } else {
    OpenHow how = {flags | O_CLOEXEC, 0, kResolveInRoot | kResolveNoMagiclinks};
    fd = g_walk_only ? -1 : openat2_in_root(root, rel, &how);
    if (g_walk_only || (fd < 0 && (errno == ENOSYS || errno == EAGAIN))) {
      int p = walk_in_root(root, rel, false);
      if (p < 0 || (flags & O_PATH)) {
        fd = p;
      } else {
        char buf[32];
        // (The walk followed the last link already; O_NOFOLLOW here would refuse the fd link.)
        fd = open(fd_path(buf, p, false), static_cast<int>((flags & ~static_cast<uint64_t>(O_NOFOLLOW)) | O_CLOEXEC));
        int e = errno;
        close(p);
        errno = e;
      }
    }
  }
  int e = errno;
  close(root);
  errno = e;
  return static_cast<int>(fd);
}

}  // namespace nsbox
