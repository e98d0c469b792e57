// mnt_template.cc: the mount namespace template (made once per process) and a container's start in
// a copy of it instead of CLONE_NEWNS (mount_in_template).
//
// Part of the child path (see child.cc): between clone3 and execve, so raw system calls over the
// plan and stack buffers only; no allocation, locks, exceptions, stdio or N-API.
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "fsops.h"
#include "syscalls.h"

namespace nsbox {

namespace {

// The mount namespace from the template (Plan::mnt_template_fd, made once per process by
// mnt_template_child below) instead of CLONE_NEWNS. CLONE_NEWNS copies every mount of the host
// into the child, and pivot_root then detaches all of them again: work that grows with the host's
// mount table (1 to 3 µs per host mount per container here: bench/host-mounts.js) and an RCU
// grace period for the detach. Here the child
//   1. captures every host path it binds as a detached, private copy (open_tree OPEN_TREE_CLONE,
//      mount_setattr MS_PRIVATE: nothing propagates between it and the host), still in Node's
//      namespace, with the restrictions of the remount that follows the bind in the plan set in the
//      same call (recursively);
//   2. joins the template (an empty read-only tmpfs) and unshares its own copy of it: one mount to
//      copy, whatever the host has;
//   3. runs the plan's ops with the root stacked on the copy's "/" (the host bind ops attach their
//      captured copy with move_mount; mount(2)'s paths are "N" from /proc/self/fd of the host's /proc as
//      working directory);
//   4. chroots into that root. Under it there is nothing but the empty template: no host mount was
//      ever in this namespace, so there is no old root to detach; and ".." from the root of a
//      stacked mount comes straight back up into it, so a chroot escape (with CAP_SYS_CHROOT) ends
//      in the container's root, as after pivot_root.
// Steps: STEP_OP with the op's index for the ops (capture included); STEP_MNT_TEMPLATE with the
// TPL_* indexes of steps.h for the rest (TPL_BAD_PLAN and TPL_TOO_MANY: the parent never plans
// that).

// A new filesystem of op (tmpfs for the default rootfs) as a detached mount: fsopen, one fsconfig
// per "key[=value]" of op.data, fsmount. -1 with errno (EINVAL where op has flags or data this
// cannot express: the parent plans template mode only for roots that it can, UseMountTemplate in
// native/glue/addon.cc).
// -1 with errno, and in *call the call that failed (NSBOX_OP_CALLS).
int detached_fs(const Op& op, int* call) {
  *call = OPCALL_FSOPEN;
  char data[kMaxTemplateData];
  size_t n = op.data ? str_len(op.data) : 0;
  if (!op.fstype || op.src == nullptr || (op.flags & ~kTemplatePlainFlags) || n >= sizeof(data)) {
    errno = EINVAL;
    return -1;
  }
  for (size_t i = 0; i < n; i++) data[i] = op.data[i];
  data[n] = 0;
  int fs = sys::fsopen(op.fstype, sys::kFsopenCloexec);
  if (fs < 0) return -1;
  *call = OPCALL_FSCONFIG;
  if (sys::fsconfig(fs, sys::kFsconfigSetString, "source", op.src, 0) != 0) {
    int e = errno;
    close(fs);
    errno = e;
    return -1;
  }
  for (size_t k = 0; k < n;) {
    size_t end = k;
    while (end < n && data[end] != ',') end++;
    data[end] = 0;
    char* key = data + k;
    char* val = nullptr;
    for (char* c = key; *c; c++) {
      if (*c == '=') {
        *c = 0;
        val = c + 1;
        break;
      }
    }
    if (*key && sys::fsconfig(fs, val ? sys::kFsconfigSetString : sys::kFsconfigSetFlag, key, val, 0) != 0) {
      int e = errno;
      close(fs);
      errno = e;
      return -1;
    }
    k = end + 1;
  }
  if (sys::fsconfig(fs, sys::kFsconfigCmdCreate, nullptr, nullptr, 0) != 0) {
    int e = errno;
    close(fs);
    errno = e;
    return -1;
  }
  uint64_t attrs = ((op.flags & MS_RDONLY) ? sys::kMountAttrRdonly : 0) | ((op.flags & MS_NOSUID) ? sys::kMountAttrNosuid : 0) |
                   ((op.flags & MS_NODEV) ? sys::kMountAttrNodev : 0) | ((op.flags & MS_NOEXEC) ? sys::kMountAttrNoexec : 0);
  *call = OPCALL_FSMOUNT;
  int m = sys::fsmount(fs, sys::kFsmountCloexec, static_cast<unsigned>(attrs));
  int e = errno;
  close(fs);
  errno = e;
  return m;
}

bool same_str(const char* a, const char* b) {
  if (!a || !b) return false;
  while (*a && *a == *b) {
    a++;
    b++;
  }
  return *a == *b;
}

// A host bind's op followed by the remount of the same target that only adds restrictions (the
// default rootfs's directories and files, the user's binds): both are done at once on the detached
// copy, so the restrictions hold for the bind's submounts too.
bool merges_remount(const Plan* plan, size_t i) {
  if (i + 1 >= plan->n_ops) return false;
  const Op& op = plan->ops[i];
  const Op& next = plan->ops[i + 1];
  // The root's bind and its nodev (OpList.rootBind) too; not the read-only remount of "/" at the
  // end of the plan, which is not recursive.
  const bool root = op.where & WHERE_OPEN_ROOT;
  return next.kind == OP_REMOUNT && (next.where & WHERE_DST_IN_ROOT) &&
         (root ? same_str(next.dst, "/") && !(next.flags & MS_RDONLY) : same_str(next.dst, op.dst)) &&
         !(next.flags & ~(MS_BIND | kTemplatePlainFlags));
}

// "/proc/self/fd/N" followed by `rest` (NUL-terminated) in buf of n bytes; false if it does not fit.
bool fd_rest_path(char* buf, size_t n, int fd, const char* rest) {
  const char* pre = "/proc/self/fd/";
  size_t i = 0;
  for (; *pre; pre++) {
    if (i + 1 >= n) return false;
    buf[i++] = *pre;
  }
  char digits[12];
  int k = 0;
  unsigned v = static_cast<unsigned>(fd);
  do {
    digits[k++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (k) {
    if (i + 1 >= n) return false;
    buf[i++] = digits[--k];
  }
  for (; *rest; rest++) {
    if (i + 1 >= n) return false;
    buf[i++] = *rest;
  }
  buf[i] = 0;
  return true;
}

// `s` with the prefix `dir` followed by '/' or its end: the rest (from that '/'), or nullptr.
const char* under(const char* s, const char* dir) {
  if (!s || !dir) return nullptr;
  while (*dir && *s == *dir) {
    s++;
    dir++;
  }
  if (*dir) return nullptr;
  return (*s == '/' || *s == 0) ? s : nullptr;
}

// An image's overlay root (fsops.ts finishRoot) as a detached mount: the ops before it are the
// tmpfs of its upper layer on a host directory (ops[0], where 0) and the directories and files made
// in that layer (where 0, under the same directory). In template mode nothing is mounted on that
// host path: the tmpfs is a detached mount (fsmount), the upper layer's entries are made relative to
// its fd, and the overlay takes "/proc/self/fd/N/..." for its upperdir and workdir (a kernel that
// mounts an overlay over a detached upper: make_mnt_template's probe). The lowerdir (the image's
// layers, host paths) is resolved as before, in Node's mount namespace, which the child still
// shares at this point; nothing is attached to it. Returns the overlay's detached mount, or fails
// the start with the op's index and call. *first: the index of the root op (the overlay's).
int detached_overlay_root(const Plan* plan, int err_fd, size_t* first) {
  const Op& scaffold = plan->ops[0];
  fault(plan, err_fd, STEP_OP, 0);
  int call;
  int up = detached_fs(scaffold, &call);
  if (up < 0) fail(err_fd, STEP_OP, op_record(0, call), errno);
  size_t i = 1;
  for (; i < plan->n_ops && plan->ops[i].where == 0; i++) {
    const Op& op = plan->ops[i];
    fault(plan, err_fd, STEP_OP, static_cast<int32_t>(i));
    const char* rest = under(op.dst, scaffold.dst);
    // (The parent plans nothing else here: UseMountTemplate.)
    if (!rest || !rest[0] || !rest[1]) fail(err_fd, STEP_OP, op_record(i, OPCALL_OWN), EINVAL);
    const char* rel = rest + 1;
    int rc;
    call = OPCALL_OWN;
    if (op.kind == OP_MKDIR) {
      // The mode as planned, not as the umask left it (as run_op does for a host directory).
      rc = mkdirat(up, rel, op.mode);
      if (rc == 0) {
        call = OPCALL_FCHMODAT;
        rc = fchmodat(up, rel, op.mode & 07777, 0);
      }
    } else if (op.kind == OP_TOUCH) {
      int fd = openat(up, rel, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, op.mode);
      rc = fd < 0 ? -1 : 0;
      if (fd >= 0) close(fd);
    } else {
      errno = EINVAL;
      rc = -1;
    }
    if (rc != 0) fail(err_fd, STEP_OP, op_record(i, call), errno);
  }
  if (i >= plan->n_ops) fail(err_fd, STEP_MNT_TEMPLATE, TPL_BAD_PLAN, EINVAL);
  const Op& op = plan->ops[i];
  fault(plan, err_fd, STEP_OP, static_cast<int32_t>(i));
  char data[kMaxOverlayData];
  char val[kMaxOverlayData];
  size_t n = op.data ? str_len(op.data) : 0;
  if (!(op.where & WHERE_OPEN_ROOT) || !op.fstype || !op.src || (op.flags & ~kTemplatePlainFlags) || n >= sizeof(data))
    fail(err_fd, STEP_OP, op_record(i, OPCALL_OWN), EINVAL);
  for (size_t k = 0; k < n; k++) data[k] = op.data[k];
  data[n] = 0;
  call = OPCALL_FSOPEN;
  int fs = sys::fsopen(op.fstype, sys::kFsopenCloexec);
  if (fs < 0) fail(err_fd, STEP_OP, op_record(i, call), errno);
  call = OPCALL_FSCONFIG;
  int rc = sys::fsconfig(fs, sys::kFsconfigSetString, "source", op.src, 0);
  // Options split on the ',' that overlayPath (fsops.ts) did not escape; values kept as written
  // (overlay's own parser unescapes the lowerdir list).
  for (size_t k = 0; rc == 0 && k < n;) {
    size_t end = k;
    while (end < n && data[end] != ',') end += (data[end] == '\\' && end + 1 < n) ? 2 : 1;
    data[end] = 0;
    char* key = data + k;
    char* v = nullptr;
    for (char* c = key; *c; c++) {
      if (*c == '=') {
        *c = 0;
        v = c + 1;
        break;
      }
    }
    k = end + 1;
    if (!*key) continue;
    const bool layer_dir = v && (same_str(key, "upperdir") || same_str(key, "workdir"));
    if (layer_dir) {
      // The upper layer's directories: on the detached tmpfs, by its fd.
      const char* r = under(v, scaffold.dst);
      if (!r || !fd_rest_path(val, sizeof(val), up, r)) {
        rc = -1;
        errno = EINVAL;
        break;
      }
      v = val;
    }
    if (v && same_str(key, "lowerdir"))
      rc = fsconfig_lowerdirs(fs, v, val, sizeof(val));
    else
      rc = sys::fsconfig(fs, v ? sys::kFsconfigSetString : sys::kFsconfigSetFlag, key, v, 0);
  }
  if (rc == 0) rc = sys::fsconfig(fs, sys::kFsconfigCmdCreate, nullptr, nullptr, 0);
  if (rc != 0) fail(err_fd, STEP_OP, op_record(i, call), errno);
  uint64_t attrs = ((op.flags & MS_RDONLY) ? sys::kMountAttrRdonly : 0) | ((op.flags & MS_NOSUID) ? sys::kMountAttrNosuid : 0) |
                   ((op.flags & MS_NODEV) ? sys::kMountAttrNodev : 0) | ((op.flags & MS_NOEXEC) ? sys::kMountAttrNoexec : 0);
  int m = sys::fsmount(fs, sys::kFsmountCloexec, static_cast<unsigned>(attrs));
  if (m < 0) fail(err_fd, STEP_OP, op_record(i, OPCALL_FSMOUNT), errno);
  close(fs);
  // The overlay holds its own reference to the upper layer's mount.
  close(up);
  *first = i;
  return m;
}

}  // namespace

int fsconfig_lowerdirs(int fs, const char* list, char* buf, size_t n) {
  const char* c = list;
  while (*c) {
    size_t k = 0;
    for (; *c && *c != ':'; c++) {
      if (*c == '\\' && c[1]) c++;
      if (k + 1 >= n) {
        errno = ENAMETOOLONG;
        return -1;
      }
      buf[k++] = *c;
    }
    buf[k] = 0;
    if (*c == ':') c++;
    if (k == 0) continue;
    if (sys::fsconfig(fs, sys::kFsconfigSetString, "lowerdir+", buf, 0) != 0) return -1;
  }
  return 0;
}

void mount_in_template(const Plan* plan, int err_fd) {
  int trees[kMaxTemplateTrees];
  size_t n_trees = 0;
  // A new filesystem for the root is made first (so that it comes first in the container's
  // mountinfo, as with pivot_root), then the host binds are captured in their order.
  int root_fs = -1;
  // The ops before the root's (an image's overlay: its upper layer's tmpfs and entries), done by
  // detached_overlay_root.
  size_t first = 0;
  if (plan->n_ops && !(plan->ops[0].where & WHERE_OPEN_ROOT)) {
    root_fs = detached_overlay_root(plan, err_fd, &first);
  } else if (plan->n_ops && !is_host_bind(plan->ops[0])) {
    fault(plan, err_fd, STEP_OP, 0);
    int call;
    root_fs = detached_fs(plan->ops[0], &call);
    if (root_fs < 0) fail(err_fd, STEP_OP, op_record(0, call), errno);
  }
  for (size_t i = 0; i < plan->n_ops; i++) {
    const Op& op = plan->ops[i];
    if (!is_host_bind(op)) continue;
    fault(plan, err_fd, STEP_MNT_TEMPLATE, TPL_TOO_MANY);
    if (n_trees == kMaxTemplateTrees) fail(err_fd, STEP_MNT_TEMPLATE, TPL_TOO_MANY, E2BIG);
    fault(plan, err_fd, STEP_OP, static_cast<int32_t>(i));
    unsigned fl = sys::kOpenTreeClone | O_CLOEXEC | ((op.flags & MS_REC) ? sys::kAtRecursive : 0);
    int t;
    int call = OPCALL_OPEN_TREE;
    if (op.where & WHERE_SRC_DETACHED) {
      // A prepared image root: a clone of the detached mount the addon holds (its fd in dev).
      t = sys::open_tree(static_cast<int>(op.dev), "", fl | AT_EMPTY_PATH);
    } else if (op.where & (WHERE_SRC_BENEATH | WHERE_SRC_FD)) {
      int s = (op.where & WHERE_SRC_FD) ? open_src_fd(op, &call) : open_src_beneath(op, &call);
      if (s >= 0) call = OPCALL_OPEN_TREE;
      t = s < 0 ? -1 : sys::open_tree(s, "", fl | AT_EMPTY_PATH);
      int e = errno;
      if (s >= 0) close(s);
      errno = e;
    } else {
      t = sys::open_tree(AT_FDCWD, op.src, fl);
    }
    if (t < 0) fail(err_fd, STEP_OP, op_record(i, call), errno);
    sys::MountAttr attr = {0, 0, MS_PRIVATE, 0};
    if (merges_remount(plan, i)) {
      unsigned long f = plan->ops[i + 1].flags;
      attr.attr_set = ((f & MS_RDONLY) ? sys::kMountAttrRdonly : 0) | ((f & MS_NOSUID) ? sys::kMountAttrNosuid : 0) |
                      ((f & MS_NODEV) ? sys::kMountAttrNodev : 0) | ((f & MS_NOEXEC) ? sys::kMountAttrNoexec : 0);
    }
    if (sys::mount_setattr(t, "", AT_EMPTY_PATH | sys::kAtRecursive, &attr) != 0)
      fail(err_fd, STEP_OP, op_record(i, OPCALL_MOUNT_SETATTR), errno);
    trees[n_trees++] = t;
  }
  // Our own fd directory in the host's /proc, opened while /proc is still the host's: mount(2)'s
  // paths are then just "N".
  fault(plan, err_fd, STEP_MNT_TEMPLATE, TPL_OPEN_PROC);
  int host_proc = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (host_proc < 0) fail(err_fd, STEP_MNT_TEMPLATE, TPL_OPEN_PROC, errno);
  fault(plan, err_fd, STEP_MNT_TEMPLATE, TPL_JOIN);
  if (setns(plan->mnt_template_fd, CLONE_NEWNS) != 0) fail(err_fd, STEP_MNT_TEMPLATE, TPL_JOIN, errno);
  fault(plan, err_fd, STEP_MNT_TEMPLATE, TPL_UNSHARE);
  if (unshare(CLONE_NEWNS) != 0) fail(err_fd, STEP_MNT_TEMPLATE, TPL_UNSHARE, errno);
  fault(plan, err_fd, STEP_MNT_TEMPLATE, TPL_FCHDIR_PROC);
  if (fchdir(host_proc) != 0) fail(err_fd, STEP_MNT_TEMPLATE, TPL_FCHDIR_PROC, errno);

  // The root is stacked on the template's "/" (so that setns into this namespace, nsenter's
  // included, lands on it), and its fd (the detached mount's, now attached) is the root fd.
  int root = -1;
  size_t next_tree = 0;
  DirCache dirs;
  g_walk_only = plan->walk_only;
  for (size_t i = first; i < plan->n_ops; i++) {
    const Op& op = plan->ops[i];
    const int32_t idx = static_cast<int32_t>(i);
    int rc;
    int call = OPCALL_OWN;
    if (op.where & WHERE_OPEN_ROOT) {
      if (root >= 0) fail(err_fd, STEP_OP, idx, EINVAL);
      fault(plan, err_fd, STEP_OP, idx);
      root = is_host_bind(op) ? trees[next_tree++] : root_fs;
      if (sys::move_mount(root, "", AT_FDCWD, "/", sys::kMoveMountFEmptyPath) != 0)
        fail(err_fd, STEP_OP, op_record(i, OPCALL_MOVE_MOUNT), errno);
      if (is_host_bind(op) && merges_remount(plan, i)) i++;  // its remount is done (mount_setattr above)
      continue;
    }
    // Every other op is on a container path (the parent plans template mode only then).
    fault(plan, err_fd, STEP_MNT_TEMPLATE, TPL_BAD_PLAN);
    if (root < 0 || !(op.where & WHERE_DST_IN_ROOT)) fail(err_fd, STEP_MNT_TEMPLATE, TPL_BAD_PLAN, EINVAL);
    fault(plan, err_fd, STEP_OP, idx);
    if (is_host_bind(op)) {
      dirs.drop();
      int t = trees[next_tree++];
      bool skip;
      int dfd = open_dst_in_root(root, op, &call, &skip);
      if (skip) {
        // A mount point the image lacks (or has behind a symlink: WHERE_DST_NOFOLLOW), for a mount
        // that is only made where it has one.
        close(t);
        if (merges_remount(plan, i)) i++;
        continue;
      }
      if (dfd < 0) fail(err_fd, STEP_OP, op_record(i, call), errno);
      call = OPCALL_MOVE_MOUNT;
      rc = sys::move_mount(t, "", dfd, "", sys::kMoveMountFEmptyPath | sys::kMoveMountTEmptyPath);
      int e = errno;
      close(dfd);
      close(t);
      errno = e;
      if (rc == 0 && merges_remount(plan, i)) i++;  // its remount is done (mount_setattr above)
    } else {
      rc = run_op(op, root, &dirs, true, &call);
    }
    if (rc != 0) fail(err_fd, STEP_OP, op_record(i, call), errno);
  }
  dirs.drop();
  if (root < 0) fail(err_fd, STEP_MNT_TEMPLATE, TPL_BAD_PLAN, EINVAL);
  fault(plan, err_fd, STEP_MNT_TEMPLATE, TPL_FCHDIR_ROOT);
  if (fchdir(root) != 0) fail(err_fd, STEP_MNT_TEMPLATE, TPL_FCHDIR_ROOT, errno);
  close(root);
  close(host_proc);
  fault(plan, err_fd, STEP_MNT_TEMPLATE, TPL_CHROOT);
  if (chroot(".") != 0) fail(err_fd, STEP_MNT_TEMPLATE, TPL_CHROOT, errno);
  fault(plan, err_fd, STEP_MNT_TEMPLATE, TPL_CHDIR);
  if (chdir("/") != 0) fail(err_fd, STEP_MNT_TEMPLATE, TPL_CHDIR, errno);
}

// Whether this kernel mounts an overlay whose layers are detached mounts (an fsmount'd tmpfs,
// reached as /proc/self/fd/N/...): overlayfs takes a private clone of each layer's mount, which
// older kernels (before 6.15) allow for mounts of the caller's namespace only. Detached mounts
// only: nothing is attached anywhere, and all of it is gone with the fds.
static bool overlay_takes_detached() {
  bool ok = false;
  int fs = -1, t = -1, o = -1, m = -1;
  char lower[64], upper[64], work[64];
  if ((fs = sys::fsopen("tmpfs", sys::kFsopenCloexec)) < 0) goto out;
  if (sys::fsconfig(fs, sys::kFsconfigSetString, "size", "64k", 0) != 0) goto out;
  if (sys::fsconfig(fs, sys::kFsconfigCmdCreate, nullptr, nullptr, 0) != 0) goto out;
  if ((t = sys::fsmount(fs, sys::kFsmountCloexec, static_cast<unsigned>(sys::kMountAttrNosuid | sys::kMountAttrNodev))) < 0) goto out;
  if (mkdirat(t, "l", 0755) != 0 || mkdirat(t, "u", 0755) != 0 || mkdirat(t, "w", 0700) != 0) goto out;
  if (!fd_rest_path(lower, sizeof(lower), t, "/l") || !fd_rest_path(upper, sizeof(upper), t, "/u") || !fd_rest_path(work, sizeof(work), t, "/w")) goto out;
  if ((o = sys::fsopen("overlay", sys::kFsopenCloexec)) < 0) goto out;
  if (sys::fsconfig(o, sys::kFsconfigSetString, "source", "overlay", 0) != 0) goto out;
  if (sys::fsconfig(o, sys::kFsconfigSetString, "lowerdir", lower, 0) != 0) goto out;
  if (sys::fsconfig(o, sys::kFsconfigSetString, "upperdir", upper, 0) != 0) goto out;
  if (sys::fsconfig(o, sys::kFsconfigSetString, "workdir", work, 0) != 0) goto out;
  if (sys::fsconfig(o, sys::kFsconfigCmdCreate, nullptr, nullptr, 0) != 0) goto out;
  if ((m = sys::fsmount(o, sys::kFsmountCloexec, static_cast<unsigned>(sys::kMountAttrNodev))) < 0) goto out;
  ok = true;
out:
  if (m >= 0) close(m);
  if (o >= 0) close(o);
  if (t >= 0) close(t);
  if (fs >= 0) close(fs);
  return ok;
}

// The template itself, in a vfork-style child with a mount namespace of its own (CLONE_NEWNS) that
// shares the caller's fd table: the namespace's fd goes into that table, then the child replaces the
// copy of the host's mounts with one empty read-only tmpfs and exits. No thread of Node enters it.
[[noreturn]] void mnt_template_child(NsFdJob* job) {
  int fd = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
  int fs = -1, m = -1;
  sys::MountAttr ro = {sys::kMountAttrRdonly, 0, 0, 0};
  if (fd < 0) goto out;
  // (First, while the host's /proc is still this namespace's: the probe names its layers through it.)
  job->overlay_detached = overlay_takes_detached() ? 1 : 0;
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) goto out;
  if ((fs = sys::fsopen("tmpfs", sys::kFsopenCloexec)) < 0) goto out;
  if (sys::fsconfig(fs, sys::kFsconfigSetString, "mode", "0755", 0) != 0) goto out;
  if (sys::fsconfig(fs, sys::kFsconfigSetString, "size", "4k", 0) != 0) goto out;
  if (sys::fsconfig(fs, sys::kFsconfigCmdCreate, nullptr, nullptr, 0) != 0) goto out;
  m = sys::fsmount(fs, sys::kFsmountCloexec,
                   static_cast<unsigned>(sys::kMountAttrNosuid | sys::kMountAttrNodev | sys::kMountAttrNoexec));
  if (m < 0) goto out;
  if (sys::mount_setattr(m, "", AT_EMPTY_PATH, &ro) != 0) goto out;
  if (sys::move_mount(m, "", AT_FDCWD, "/", sys::kMoveMountFEmptyPath) != 0) goto out;
  if (fchdir(m) != 0) goto out;
  if (sys::pivot_root(".", ".") != 0) goto out;
  if (umount2(".", MNT_DETACH) != 0) goto out;
  close(m);
  close(fs);
  job->fd = fd;
  _exit(0);
out:
  job->err = errno;
  if (m >= 0) close(m);
  if (fs >= 0) close(fs);
  if (fd >= 0) close(fd);
  _exit(1);
}

}  // namespace nsbox
