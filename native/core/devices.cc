// devices.cc: the cgroup device allow-list (see devices.h).
#include "devices.h"

#include <errno.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace nsbox {

// What a container may mknod, read or write: the nodes nsbox itself puts in /dev (null, zero, full,
// random, urandom, tty, ptmx and its ptys) and /dev/net/tun (its devices live in the container's
// network namespace). No block device, no other character device: not /dev/mem, /dev/kmsg, a host
// disk or a loop device, and not 5:1, the host's console (a machine's /dev/console is a bind of its
// own /dev/null).
const AllowedDevice kAllowedDevices[] = {
    {1, 3, "null"}, {1, 5, "zero"}, {1, 7, "full"},  {1, 8, "random"},  {1, 9, "urandom"},
    {5, 0, "tty"},  {5, 2, "ptmx"}, {136, -1, "pts"}, {10, 200, "net/tun"},
};
const int kNumAllowedDevices = static_cast<int>(sizeof(kAllowedDevices) / sizeof(kAllowedDevices[0]));

namespace {

constexpr int kMaxInsns = 512;

struct Prog {
  bpf_insn insn[kMaxInsns];
  int n = 0;
  void add(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    bpf_insn& i = insn[n++];
    memset(&i, 0, sizeof(i));
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.src_reg = src & 0xf;
    i.off = off;
    i.imm = imm;
  }
};

// struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }.
// r2 = type, r3 = access, r4 = major, r5 = minor. First the container's own devices (`extra`, each
// "type, major, minor match: allow if no access is outside its mask, else deny" in 7 instructions:
// a rule's answer is final, so a device of the fixed list given with fewer permissions, a host pty
// passed with 'r', is not writable through the fixed list's rwm), then the fixed list: a type check, and for each allowed device "if major != M skip; if minor == m allow"
// as two jumps to the fixed exits at the end. The jump offsets are counted from the next
// instruction, so each rule's are known when it is emitted: the exits' positions are known too,
// since every rule has the same length.
void build(Prog* p, const ExtraDevice* extra, int n_extra) {
  constexpr uint8_t kLdxW = BPF_LDX | BPF_MEM | BPF_W;
  constexpr uint8_t kAndK = BPF_ALU64 | BPF_AND | BPF_K;
  constexpr uint8_t kRshK = BPF_ALU64 | BPF_RSH | BPF_K;
  constexpr uint8_t kMovX = BPF_ALU64 | BPF_MOV | BPF_X;
  constexpr uint8_t kJneK = BPF_JMP | BPF_JNE | BPF_K;
  constexpr uint8_t kJeqK = BPF_JMP | BPF_JEQ | BPF_K;
  constexpr uint8_t kJa = BPF_JMP | BPF_JA;
  constexpr uint8_t kMovK = BPF_ALU64 | BPF_MOV | BPF_K;
  constexpr uint8_t kExit = BPF_JMP | BPF_EXIT;
  p->add(kLdxW, 2, 1, 0, 0);
  p->add(kAndK, 2, 0, 0, 0xffff);
  p->add(kLdxW, 3, 1, 0, 0);
  p->add(kRshK, 3, 0, 0, 16);
  p->add(kLdxW, 4, 1, 4, 0);
  p->add(kLdxW, 5, 1, 8, 0);
  // Layout: 6 loads, 7 insns per extra rule, 1 type check, then 2 insns per fixed rule, then
  // "ja deny", deny (2), allow (2).
  const int extra_at = 6;
  const int rules_at = extra_at + 7 * n_extra + 1;
  const int deny_at = rules_at + 2 * kNumAllowedDevices + 1;
  const int allow_at = deny_at + 2;
  for (int k = 0; k < n_extra; k++) {
    const ExtraDevice& d = extra[k];
    int self = p->n;
    p->add(kJneK, 2, 0, 6, d.block ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR);
    p->add(kJneK, 4, 0, 5, static_cast<int32_t>(d.major));
    p->add(kJneK, 5, 0, 4, static_cast<int32_t>(d.minor));
    p->add(kMovX, 6, 3, 0, 0);
    p->add(kAndK, 6, 0, 0, static_cast<int32_t>(~d.access & 7u));
    p->add(kJeqK, 6, 0, static_cast<int16_t>(allow_at - (self + 6)), 0);
    p->add(kJa, 0, 0, static_cast<int16_t>(deny_at - (self + 7)), 0);
  }
  p->add(kJneK, 2, 0, static_cast<int16_t>(deny_at - (p->n + 1)), BPF_DEVCG_DEV_CHAR);
  for (int k = 0; k < kNumAllowedDevices; k++) {
    const AllowedDevice& d = kAllowedDevices[k];
    int self = p->n;
    if (d.minor < 0) {
      // Any minor: "if major == M allow", padded to the rule length with a jump that goes nowhere.
      p->add(kJeqK, 4, 0, static_cast<int16_t>(allow_at - (self + 1)), d.major);
      p->add(kJa, 0, 0, 0, 0);
    } else {
      p->add(kJneK, 4, 0, 1, d.major);  // not this major: skip the minor check
      p->add(kJeqK, 5, 0, static_cast<int16_t>(allow_at - (self + 2)), d.minor);
    }
  }
  p->add(kJa, 0, 0, static_cast<int16_t>(deny_at - (p->n + 1)), 0);
  p->add(kMovK, 0, 0, 0, 0);
  p->add(kExit, 0, 0, 0, 0);
  p->add(kMovK, 0, 0, 0, 1);
  p->add(kExit, 0, 0, 0, 0);
}

int load_prog(const Prog& prog) {
  static const char license[] = "Apache-2.0";
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = reinterpret_cast<uint64_t>(prog.insn);
  attr.insn_cnt = static_cast<uint32_t>(prog.n);
  attr.license = reinterpret_cast<uint64_t>(license);
  memcpy(attr.prog_name, "nsbox_devices", sizeof("nsbox_devices"));
  long fd;
  do {
    fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
  } while (fd < 0 && errno == EAGAIN);
  return static_cast<int>(fd);  // bpf() fds are close-on-exec
}

pthread_once_t g_once = PTHREAD_ONCE_INIT;
int g_fd = -1;
int g_err = 0;

void load() {
  static Prog prog;
  build(&prog, nullptr, 0);
  int fd = load_prog(prog);
  if (fd < 0) {
    g_err = errno;
    return;
  }
  g_fd = fd;
}

}  // namespace

int device_policy_fd() {
  pthread_once(&g_once, load);
  if (g_fd < 0) errno = g_err;
  return g_fd;
}

int device_policy_load(const ExtraDevice* extra, int n_extra) {
  if (n_extra < 0 || n_extra > kMaxExtraDevices) {
    errno = E2BIG;
    return -1;
  }
  static thread_local Prog prog;  // the JS thread only; 4 KiB kept off its stack
  prog.n = 0;
  build(&prog, extra, n_extra);
  return load_prog(prog);
}

int attach_device_policy(int cgroup_fd, int prog_fd) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.target_fd = static_cast<uint32_t>(cgroup_fd);
  attr.attach_bpf_fd = static_cast<uint32_t>(prog_fd);
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  return syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof(attr)) == 0 ? 0 : -1;
}

}  // namespace nsbox
