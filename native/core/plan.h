// plan.h: the flat, fully resolved description of one container start.
//
// The parent builds a Plan on the JS thread (allocation is fine there), then clones. The child only
// reads it: every string, array and number it needs is already here, so the code between clone3 and
// execve makes raw system calls and nothing else. Nothing in this header may pull in napi.h.
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "steps.h"

namespace nsbox {

// One filesystem operation, run in order before pivot_root. Paths are absolute host paths inside the
// staging directory (the future root), already joined by the parent.
enum OpKind : uint32_t {
  OP_MOUNT = 1,    // mount(src, dst, fstype, flags, data)
  OP_REMOUNT = 2,  // remount dst with flags | the lock-relevant flags it already has (statfs)
  OP_MKDIR = 3,    // mkdir(dst, mode); an existing directory is fine
  OP_TOUCH = 4,    // create an empty regular file dst (mode) if missing: a bind target for a file
  OP_SYMLINK = 5,  // symlink(src, dst)
  OP_MKNOD = 6,    // mknod(dst, mode, dev)
};

// Op.where: which paths are inside the future root. Those are resolved from the root's fd without
// leaving it (openat2 RESOLVE_IN_ROOT, or a per-component walk), because the image controls them: a
// symlink planted at /proc or at a mount target must not send a mount out of the container's root.
enum OpWhere : uint32_t {
  WHERE_DST_IN_ROOT = 1,  // dst is a container path ("/dev/pts")
  WHERE_SRC_IN_ROOT = 2,  // src is a container path (a bind of /dev/null or /proc/sys)
  WHERE_OPEN_ROOT = 4,    // after this op, open the staging directory as the root fd
  // A bind whose src is a host directory and whose data is a relative path resolved beneath it
  // (RESOLVE_IN_ROOT): a bind source inside another bind's source or inside the rootfs, which a
  // container may have written (a component swapped for a symlink to "/" must not lead the host
  // out of that directory). data is not passed to mount(2) then.
  WHERE_SRC_BENEATH = 8,
  // A mount or remount of a container path that may be missing from the image: ENOENT resolving
  // dst in the root skips the op (its remount is skipped the same way) instead of failing the
  // start. Used for the generated /etc/hosts, /etc/hostname and /etc/resolv.conf, whose mount
  // points are never created in a user's rootfs (lib/etc.ts).
  WHERE_OPTIONAL = 16,
  // A bind of a host node that the parent has checked through an O_PATH fd (a device of the
  // `devices` option, lib/devices.ts): src is the node's host path, dev that fd (the child has it at
  // the same number). Binding the parent's fd itself would fail in a mount namespace of the child's
  // own (its mount is the old namespace's), so the child opens src (O_PATH | O_NOFOLLOW) and binds
  // that, only if it is the very inode of the fd (ESTALE otherwise): a name swapped for a link to
  // another file after the parent's check never gets bound.
  WHERE_SRC_FD = 32,
  // dst is resolved in the root with no symlink on its way (openat2 RESOLVE_NO_SYMLINKS, or the walk
  // refusing one): ELOOP, and with WHERE_OPTIONAL skipped like a missing point. The generated /etc
  // files: an image's /etc/resolv.conf -> /dev/urandom (or -> ../run/systemd/...) must not get the
  // file bound over what it points to (nsbox's own /dev nodes, /proc files).
  WHERE_DST_NOFOLLOW = 64,
  // A mount point made in the root's overlay (a mkdir or touch of a container path, lib/fsops.ts
  // finishRoot): its parent must be on the root's own mount, else EXDEV. An image's link to a
  // caller's mount point (mnt -> data) would otherwise lead the mkdir into the caller's host
  // directory, making there what the container itself may not.
  WHERE_DST_ROOT_MNT = 128,
  // The root op (with WHERE_OPEN_ROOT): the source is a detached mount the addon holds, its fd in
  // dev (an image's read-only overlay prepared once, lib/fsops-cache.ts fsOpsFor): each container gets a
  // clone of it (open_tree OPEN_TREE_CLONE). Mount template only (mnt_template.cc); elsewhere EINVAL.
  WHERE_SRC_DETACHED = 256,
};

struct Op {
  uint32_t kind;
  uint32_t where;
  uint32_t mode;
  uint64_t dev;
  unsigned long flags;
  const char* src;
  const char* dst;
  const char* fstype;
  const char* data;
};

// The mount namespace template (mnt_template.cc, mount_in_template): at most this many host binds, and a
// root that is a host bind or a new filesystem with only these flags and data shorter than this.
constexpr size_t kMaxTemplateTrees = 256;
constexpr unsigned long kTemplatePlainFlags = 0x1 | 0x2 | 0x4 | 0x8;  // MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
constexpr size_t kMaxTemplateData = 512;
// An image's overlay root in template mode: its mount options (a page, as mount(2) takes).
constexpr size_t kMaxOverlayData = 4096;

// A bind whose source is a host path (the rootfs, a host directory of the default rootfs, a user's
// bind): in template mode it is captured with open_tree before the child leaves Node's namespace.
constexpr unsigned long kMsBind = 4096;  // MS_BIND (plan.h includes no mount header)
inline bool is_host_bind(const Op& op) {
  return op.kind == OP_MOUNT && (op.flags & kMsBind) && !(op.where & WHERE_SRC_IN_ROOT) && op.src;
}

// The steps of a start and the calls each record index names: steps.h.

// The name (comm) of a process that has not exec'd the container's command yet: the child from
// its first instruction, the exec trampoline and the pool's waiting init (native/init/init.c sets
// the same string). End-of-file on the error pipe is the command's execve, or death: a process
// that has already exited then, still with this name, died before its exec (STEP_DIED).
constexpr char kPreExecComm[] = "nsbox-starting";

// What the child writes to the error pipe before _exit. Fixed size: one write, no formatting.
// plan.stdio[i]: /dev/null as the container sees it, never the host's: an fd of the host's
// /dev/null would let root in the container change that inode (its mode, owner, times) through
// /proc/self/fd/N with the CAP_FOWNER/CAP_CHOWN it keeps.
constexpr int kStdioDevNull = -2;

struct ErrorRecord {
  int32_t step;
  int32_t err;
  int32_t index;
  int32_t magic;  // kErrorMagic: guards against reading something that is not a record
};
constexpr int32_t kErrorMagic = 0x6e73627a;  // "nsbz"

// One rtnetlink request of the bridged network set-up, built by the parent (netlink.cc). The child
// copies it to its stack, patches the fd of its own netns and the peer's ifindex where the offsets
// say (0: nothing to patch), sends it and reads the ack.
struct NetMsg {
  const uint8_t* data;
  uint32_t len;
  uint32_t on_host;      // 1: send on plan->net_host_sock (Node's netns); 0: on the child's own
  uint32_t nsfd_off;     // offset of a u32 that receives the fd of the child's netns
  uint32_t ifindex_off;  // offset of a u32 that receives the ifindex of plan->net_peer
  uint32_t nft_acks;     // not 0: an nf_tables batch for the child's own NETLINK_NETFILTER socket,
                         // answered by this many acknowledgements (nothing is patched in)
};

struct Rlimit {
  int32_t resource;
  uint64_t soft;
  uint64_t hard;
};

struct Plan {
  // clone
  uint64_t clone_flags;  // CLONE_NEW* only; the spawner adds CLONE_PIDFD / CLONE_INTO_CGROUP
  int cgroup_fd;         // O_DIRECTORY fd of the container's cgroup, or -1
  bool cgroup_into;      // use CLONE_INTO_CGROUP (kernel >= 5.7); otherwise the child joins itself
  // The device allow-list program (devices.h), attached to cgroup_fd by the parent before the
  // clone (not when entering a machine: its cgroup has it). -1: none.
  int device_prog_fd = -1;

  // filesystem
  const char* staging;  // the directory that becomes / (already exists on the host)
  const Op* ops;
  size_t n_ops;
  bool walk_only;  // resolve container paths by the per-component walk even where openat2 exists (tests)
  // Clone fork-style (a copy of the address space) instead of vfork-style: the plan's forkClone,
  // which lib/env.ts fills from NSBOX_FORK_CLONE (the addon reads no environment variable).
  bool fork_clone = false;
  // The mount namespace template (see mnt_template.cc, mount_in_template): the child joins a private copy
  // of it instead of copying the host's mount table with CLONE_NEWNS (then not in clone_flags).
  // -1: CLONE_NEWNS and pivot_root, as always.
  int mnt_template_fd = -1;

  // identity and environment
  const char* hostname;  // nullptr: leave as is
  bool net_lo_up;
  // A network namespace made ahead with lo up (netns reserve, see spawn.h): joined with setns
  // instead of CLONE_NEWNET in the clone. -1: none.
  int net_fd = -1;
  // An IPC namespace made ahead (IPC namespace reserve): joined with setns instead of CLONE_NEWIPC
  // in the clone. -1: none.
  int ipc_fd = -1;
  const char* cwd;

  const Rlimit* rlimits;
  size_t n_rlimits;

  bool new_keyring;
  int cap_last;           // /proc/sys/kernel/cap_last_cap
  uint64_t caps_keep;     // bounding = permitted = effective (for uid 0) = this mask
  bool set_creds;
  uint32_t uid;
  uint32_t gid;
  const uint32_t* groups;
  size_t n_groups;
  bool no_new_privs;
  bool pdeathsig;

  // fds: stdio[i] is dup'ed onto fd i (-1: leave fd i as inherited; kStdioDevNull: the container's
  // own /dev/null, opened once its root is in place). status_fd goes to fd 3.
  int stdio[3];
  int status_fd;
  int err_fd;  // write end of the error pipe (O_CLOEXEC)

  // exec: try candidates in order (PATH lookup without allocating). With init_fd >= 0 the found
  // candidate is written into init_argv[init_slot] and the init is run with execveat(init_fd).
  const char* const* candidates;
  size_t n_candidates;
  char* const* argv;
  char* const* envp;
  int init_fd;
  char** init_argv;
  size_t init_slot;  // SIZE_MAX: the init runs without a command (machine mode)

  // Without an init the command is still exec'd through the init binary's exec mode (tramp_fd,
  // the same sealed memfd) so that /proc/self/exe at the command's execve is never Node's binary.
  // tramp_argv = {"nsbox-init", "--exec", ERRFD, INDEX, "--", PATH, argv...}: the child formats
  // ERRFD and INDEX into their (writable, 11-digit) slots and puts the found PATH in its slot.
  int tramp_fd;  // -1: exec directly
  char** tramp_argv;

  // A classic BPF seccomp program (struct sock_filter[], 8 bytes each) compiled by lib/seccomp.ts,
  // installed right before exec; nullptr: none.
  const void* seccomp;
  size_t seccomp_len;  // number of instructions

  // Warm pool: with cmd_fd >= 0 the child does all of the setup, then execs the init binary in pool
  // mode, which reports STEP_READY on the error pipe, reads its command from cmd_fd (NUL-separated
  // argv, ended by an empty string) and execs it. Needs tramp_fd.
  int cmd_fd;
  const char* path_dirs_joined;
  // "dir:dir:..." for the lookup in the init's pool mode

  // Entering a running machine (exec): setns through its PID 1's pidfd, then clone3(CLONE_PARENT)
  // so that the process that execs is inside the machine's pid namespace and a child of Node.
  int enter_pidfd;        // -1: not entering
  uint64_t enter_flags;   // CLONE_NEW* to join
  const char* enter_root; // "/proc/<pid>/root" of the machine's PID 1: its root after setns
  // How the entering helper tells the spawner the new process's pid. Never over the error pipe: once
  // the process exists, things of the machine can write there (it is ptraceable before its execve
  // with the machine's CAP_SYS_PTRACE, and the trampoline is dumpable after its own), so a record
  // read from it names no process. The helper is not visible in the machine (it stays in Node's pid
  // namespace) and exits right after the clone; the new process closes enter_report_fd first.
  volatile int32_t* enter_pid_out;  // vfork-style helper (it shares the spawner's memory): store the pid here
  int enter_report_fd;              // otherwise: write the pid (4 bytes) to this pipe; -1: none
  int pty_sock;           // >= 0: open a pty in the machine's devpts, send the master over this socket
  uint16_t pty_cols;      // its initial size, set before the command starts (0: leave 0x0)
  uint16_t pty_rows;

  // User namespace (CLONE_NEWUSER in clone_flags). Either the parent writes the id maps while the
  // child waits (userns_sync_fd >= 0: the child reads one byte from it before anything else; the
  // clone is then fork-style, since a vfork-style parent could not run), or the child writes a
  // one-id map of its own creator itself (self_uid_map / self_gid_map, after "deny" to setgroups).
  int userns_sync_fd;          // -1: no wait
  int userns_sync_wfd;         // the parent's write end: closed in the child so a parent that dies wakes it
  const char* self_uid_map;    // nullptr: none
  const char* self_gid_map;
  bool setgroups_denied;       // setgroups(2) is refused in this user namespace: skip it

  // Bridged network (network: 'bridge'), run right after lo is up. n_net_msgs == 0: none.
  int net_host_sock;     // NETLINK_ROUTE socket the parent opened in its own netns, or -1
  const NetMsg* net_msgs;
  size_t n_net_msgs;
  const char* net_peer;  // the container's interface ("eth0"): its ifindex is patched in

  // Test only (NSBOX_TEST_FAULT, lib/env.ts): the call of (fault_step, fault_index) is not made and
  // fails with fault_errno instead, wherever the child, the spawner or spawnAsync's worker would
  // report it. fault_step -1: none (every real plan).
  int fault_step = -1;
  int fault_index = 0;
  // fault_errno < 0: the kill mode (NSBOX_TEST_FAULT=<step>:<index>:SIGKILL, docs/testing.md): the
  // Node process dies by SIGKILL at that point. In Node itself (the spawner, spawnAsync's worker)
  // it kills itself there; in the child, which cannot signal Node from its own pid namespace, the
  // child waits there (fault_kill) until Node is gone, then makes the call and goes on, as a
  // child whose Node died at that moment would.
  int fault_errno = 0;
  int fault_node_pid = 0;   // the Node process (filled by the glue in the kill mode)
  int fault_err_rfd = -1;   // the error pipe's read end: closed in the child in the kill mode
};

// The marker of a child waiting at a kill fault point: the fifth argument of its ppoll(2), which the
// kernel ignores without a signal mask and /proc/<pid>/syscall shows ("kill", test/kill-faults.js).
constexpr unsigned long kFaultKillMagic = 0x6b696c6cUL;

// The kill mode at a fault point (see Plan::fault_errno). Raw system calls only.
inline void fault_kill(const Plan* p) {
  if (syscall(SYS_getpid) == p->fault_node_pid) {
    syscall(SYS_kill, p->fault_node_pid, SIGKILL);
    for (;;) syscall(SYS_ppoll, nullptr, 0, nullptr, nullptr, 0);  // pause(2): aarch64 has no SYS_pause
  }
  // The child: the write end of the error pipe reports POLLERR once no reader is left, i.e. once
  // Node (the only other holder of the read end) is gone. Then the call is made after all.
  struct pollfd pfd = {p->err_fd, 0, 0};
  while (syscall(SYS_ppoll, &pfd, 1, nullptr, nullptr, kFaultKillMagic) < 0 && errno == EINTR) {
  }
}

// A fault point (see Plan::fault_step), right before the call that (step, index) names: true, with
// errno set, when the plan asks for that call to fail. One compare on the fast path. Raw: usable in
// the child path (no allocation, no locks).
inline bool fault_at(const Plan* p, int32_t step, int32_t index) {
  if (__builtin_expect(p->fault_step != step, 1) || p->fault_index != index) return false;
  if (p->fault_errno < 0) {
    fault_kill(p);
    return false;
  }
  errno = p->fault_errno;
  return true;
}

}  // namespace nsbox
