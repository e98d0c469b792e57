// fsops.h: the plan's filesystem operations (Plan::ops) and path resolution beneath a root, for the
// child path (child.cc, mnt_template.cc). Stack buffers and raw system calls only.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "plan.h"
#include "steps.h"

namespace nsbox {

// Resolve container paths by the per-component walk even where openat2 exists (Plan::walk_only),
// set by the child before it runs the ops.
extern bool g_walk_only;

size_t str_len(const char* s);

// An O_PATH fd for a container path, resolved without leaving the root (openat2 RESOLVE_IN_ROOT,
// or the walk). -1 with errno; call (if not null): which of the two ran (OPCALL_RESOLVE, OPCALL_WALK).
// no_symlinks: a symlink anywhere on the path is ELOOP (WHERE_DST_NOFOLLOW).
int open_in_root(int root, const char* path, int* call = nullptr, bool no_symlinks = false);

// The O_PATH fd of a mount op's container path (op.dst), as its where flags say (WHERE_DST_NOFOLLOW);
// -1 with errno, and *skip true where the op is to be skipped instead (WHERE_OPTIONAL: missing, or
// a symlink on the way with WHERE_DST_NOFOLLOW).
int open_dst_in_root(int root, const Op& op, int* call, bool* skip);

// "/proc/self/fd/N" (rel: "N") in buf (at least 32 bytes): mount(2) takes paths, and this one
// names exactly the resolved object.
const char* fd_path(char* buf, int fd, bool rel);

// The source of a WHERE_SRC_BENEATH bind: op.data resolved beneath the host directory op.src, as an
// O_PATH fd; -1 with errno, and in *call the call that failed (NSBOX_OP_CALLS).
int open_src_beneath(const Op& op, int* call);

// The source of a WHERE_SRC_FD bind: op.src opened O_PATH | O_NOFOLLOW, if it is the inode of the
// fd op.dev (ESTALE otherwise); -1 with errno, and in *call the call that failed.
int open_src_fd(const Op& op, int* call);

// The parent directory of the last create op (mkdir, touch, symlink, mknod), kept open for the
// next one with the same parent: /dev's nodes and links are a dozen ops in one directory. Any mount
// drops it (a mount on that directory or above would hide what the fd still names).
struct DirCache {
  int fd = -1;
  const char* path = nullptr;  // the op's dst (plan memory): its first len bytes are the parent
  size_t len = 0;
  void drop() {
    if (fd >= 0) close(fd);
    fd = -1;
    path = nullptr;
    len = 0;
  }
};

// Runs one op; root >= 0: container paths (Op::where) are resolved beneath it. rel_proc: mount(2)
// paths as "N" (the working directory is the host's /proc/self/fd). -1 with errno, and in *call
// which call of the op failed (steps.h, NSBOX_OP_CALLS); *skipped (if not null): true where a
// WHERE_OPTIONAL op was skipped (its target missing, or behind a symlink with WHERE_DST_NOFOLLOW).
int run_op(const Op& op, int root, DirCache* cache, bool rel_proc, int* call, bool* skipped = nullptr);

// An overlay's layers (a lowerdir= list, ':'-separated, '\\'-escaped as fsops.ts overlayPath writes
// it, top-most first) given to fsconfig one "lowerdir+" at a time: fsconfig takes string values of
// at most 256 bytes, which a list of a few store paths exceeds (EINVAL). Each entry is unescaped into
// buf (n bytes). Raw system calls only (the child path). 0, or -1 with errno.
int fsconfig_lowerdirs(int fs, const char* list, char* buf, size_t n);

// Whether `op` is the remount of the optional mount `mnt` (the op before it, same target, both
// WHERE_OPTIONAL): the child then skips it exactly when it skipped the mount (*skipped of run_op).
bool optional_remount_of(const Op& mnt, const Op& op);

// open(2) of a path inside the process's root that neither leaves it nor follows a magic link.
int open_beneath_root(const char* path, uint64_t flags);

}  // namespace nsbox
