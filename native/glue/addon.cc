// addon.cc: the N-API side of nsbox. Marshals the plan that lib/plan.ts resolved into the flat
// nsbox::Plan, calls the core spawner, and watches each container's pidfd on Node's own event loop
// (uv_poll: no thread per child, no SIGCHLD handler, no waitpid(-1)). It makes no decision of its
// own: validation and policy live in TypeScript, system calls in native/core.
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <uv.h>

#include <deque>
#include <memory>
#include <unordered_map>
#include <mutex>
#include <string>
#include <vector>

#include <napi.h>

#include "../core/devices.h"
#include "../core/plan.h"
#include "../core/probe.h"
#include "../core/spawn.h"
#include "../core/syscalls.h"
#include "net.h"
#include "reserve.h"

namespace {

using nsbox::Op;
using nsbox::Plan;

// Owns every byte a Plan points to. Strings live in a deque so their addresses never move.
// Owned copies of the plan's strings; the Plan points into them.
struct Strings {
  std::deque<std::string> strings;
  const char* keep(const std::string& s) {
    strings.push_back(s);
    return strings.back().c_str();
  }
};

// A plan's filesystem ops converted once (compileOps) and shared, read-only, by every spawn that
// passes its id as plan.opsCompiled: lib/plan.ts reuses the same list for the same options. The
// registry owns them until releaseOps (a plain map rather than napi Externals, whose finalizers
// Node does not run at exit: LeakSanitizer would report every list still cached then).
struct CompiledOps : Strings {
  std::vector<Op> ops;
};

struct OpsRegistry {
  std::mutex mu;
  std::unordered_map<uint32_t, std::shared_ptr<const CompiledOps>> lists;
  uint32_t next = 1;
};
OpsRegistry& ops_registry() {
  static OpsRegistry r;
  return r;
}

struct PlanStorage : Strings {
  std::vector<Op> ops;
  std::shared_ptr<const CompiledOps> compiled;  // when the plan came with opsCompiled
  std::vector<nsbox::Rlimit> rlimits;
  std::vector<uint32_t> groups;
  std::vector<const char*> candidates;
  std::vector<char*> argv, envp, init_argv, tramp_argv;
  std::vector<uint8_t> seccomp;

  Plan plan{};
  bool netns_reserve = false;  // may take a namespace from the reserve (plan.netnsReserve)
  bool ipcns_reserve = false;  // may take an IPC namespace from its reserve (plan.ipcnsReserve)
  bool mnt_template = false;   // may use the mount namespace template (plan.mntTemplate)
  // spawnAsync only (plan.cgroupMkdir, plan.cgroupBase): the cgroup directory the worker makes and
  // opens for CLONE_INTO_CGROUP, so that the mkdir (slow while other containers come and go) is
  // not made on the JS thread.
  std::string cgroup_mkdir, cgroup_base;
  nsbox_glue::NetStorage net;  // bridged network messages (net.cc)
};

bool ThrowType(Napi::Env env, const char* what) {
  // A getter or proxy trap of the plan may already have thrown: keep that exception.
  if (!env.IsExceptionPending())
    Napi::TypeError::New(env, std::string("nsbox native plan: ") + what).ThrowAsJavaScriptException();
  return false;
}

// Reads o[key]; false (exception pending) when the read itself threw.
bool Read(Napi::Object o, const char* key, Napi::Value* v) {
  *v = o.Get(key);
  return !o.Env().IsExceptionPending() && !v->IsEmpty();
}

bool ReadIndex(Napi::Array a, uint32_t i, Napi::Value* v) {
  *v = a.Get(i);
  return !a.Env().IsExceptionPending() && !v->IsEmpty();
}

// A finite number in [lo, hi] that is a whole number (casts of anything else are undefined).
bool IsIntIn(Napi::Value v, double lo, double hi, double* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<int64_t>(d))) return false;
  *out = d;
  return true;
}

constexpr uint32_t kMaxList = 65536;  // argv, envp, groups, ops, candidates: far above what lib/ makes

bool GetString(Napi::Object o, const char* key, Strings* st, const char** out, bool nullable) {
  Napi::Value v;
  if (!Read(o, key, &v)) return false;
  if (nullable && (v.IsNull() || v.IsUndefined())) {
    *out = nullptr;
    return true;
  }
  if (!v.IsString()) return ThrowType(o.Env(), key);
  *out = st->keep(v.As<Napi::String>().Utf8Value());
  return true;
}

// A whole number within [lo, hi] (every number field of the plan is one).
bool GetInt(Napi::Object o, const char* key, double lo, double hi, double* out) {
  Napi::Value v;
  if (!Read(o, key, &v)) return false;
  if (!IsIntIn(v, lo, hi, out)) return ThrowType(o.Env(), key);
  return true;
}

bool GetBool(Napi::Object o, const char* key, bool* out) {
  Napi::Value v;
  if (!Read(o, key, &v)) return false;
  if (!v.IsBoolean()) return ThrowType(o.Env(), key);
  *out = v.As<Napi::Boolean>().Value();
  return true;
}

bool GetStringArray(Napi::Object o, const char* key, PlanStorage* st, std::vector<char*>* out) {
  Napi::Value v;
  if (!Read(o, key, &v)) return false;
  if (!v.IsArray()) return ThrowType(o.Env(), key);
  Napi::Array a = v.As<Napi::Array>();
  uint32_t n = a.Length();
  if (n > kMaxList) return ThrowType(o.Env(), key);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value e;
    if (!ReadIndex(a, i, &e)) return false;
    if (!e.IsString()) return ThrowType(o.Env(), key);
    out->push_back(const_cast<char*>(st->keep(e.As<Napi::String>().Utf8Value())));
  }
  out->push_back(nullptr);
  return true;
}

// The plan's ops array (see NativeOp in lib/native.ts) into `out`, its strings kept by `st`.
bool ConvertOps(Napi::Env env, Napi::Value opsv, Strings* st, std::vector<Op>* out) {
  double d;
  if (!opsv.IsArray()) return ThrowType(env, "ops");
  Napi::Array ops = opsv.As<Napi::Array>();
  if (ops.Length() > 4096) return ThrowType(env, "ops");
  out->resize(ops.Length());
  for (uint32_t i = 0; i < ops.Length(); i++) {
    Napi::Value ov;
    if (!ReadIndex(ops, i, &ov)) return false;
    if (!ov.IsObject()) return ThrowType(env, "ops[]");
    Napi::Object o = ov.As<Napi::Object>();
    Op& op = (*out)[i];
    if (!GetInt(o, "kind", 1, 6, &d)) return false;
    op.kind = static_cast<uint32_t>(d);
    if (!GetInt(o, "mode", 0, 0xffffffff, &d)) return false;
    op.mode = static_cast<uint32_t>(d);
    if (!GetInt(o, "where", 0, 15, &d)) return false;
    op.where = static_cast<uint32_t>(d);
    if (!GetInt(o, "dev", 0, 9007199254740991.0, &d)) return false;
    op.dev = static_cast<uint64_t>(d);
    if (!GetInt(o, "flags", 0, 4294967295.0, &d)) return false;
    op.flags = static_cast<unsigned long>(d);
    if (!GetString(o, "src", st, &op.src, true)) return false;
    if (!GetString(o, "dst", st, &op.dst, false)) return false;
    if (!GetString(o, "fstype", st, &op.fstype, true)) return false;
    if (!GetString(o, "data", st, &op.data, true)) return false;
    if ((op.where & nsbox::WHERE_SRC_IN_ROOT) && !op.src) return ThrowType(env, "ops[].src");
    if ((op.where & nsbox::WHERE_SRC_BENEATH) &&
        (!op.src || !op.data || op.kind != nsbox::OP_MOUNT || !(op.flags & nsbox::kMsBind) || (op.where & nsbox::WHERE_SRC_IN_ROOT)))
      return ThrowType(env, "ops[].where (WHERE_SRC_BENEATH: a bind with src and data)");
  }
  return true;
}

// Turns the JS plan (see NativePlan in lib/native.ts) into PlanStorage. Returns false with a JS
// exception pending when the shape is wrong: that is a bug in lib/, never a user error.
bool BuildPlan(Napi::Object js, PlanStorage* st) {
  Plan& p = st->plan;
  double d;
  bool b;
  if (!GetInt(js, "cloneFlags", 0, 9007199254740991.0, &d)) return false;
  p.clone_flags = static_cast<uint64_t>(d);
  if (!GetInt(js, "cgroupFd", -1, 2147483647.0, &d)) return false;
  p.cgroup_fd = static_cast<int>(d);
  if (!GetBool(js, "cgroupInto", &b)) return false;
  p.cgroup_into = b;
  {
    // devicePolicy: attach the device allow-list (lib/ asks only where devicePolicyAvailable()).
    Napi::Value v;
    if (!Read(js, "devicePolicy", &v)) return false;
    if (!v.IsUndefined() && !v.IsBoolean()) return ThrowType(js.Env(), "devicePolicy");
    p.device_prog_fd = -1;
    if (v.IsBoolean() && v.As<Napi::Boolean>().Value()) {
      p.device_prog_fd = nsbox::device_policy_fd();
      if (p.device_prog_fd < 0) return ThrowType(js.Env(), "devicePolicy (not available: check devicePolicyAvailable())");
    }
  }
  {
    const char* mk = nullptr;
    const char* base = nullptr;
    if (!GetString(js, "cgroupMkdir", st, &mk, true) || !GetString(js, "cgroupBase", st, &base, true)) return false;
    if (mk) {
      if (p.cgroup_fd >= 0 || !p.cgroup_into || mk[0] != '/') return ThrowType(js.Env(), "cgroupMkdir");
      st->cgroup_mkdir = mk;
      if (base) st->cgroup_base = base;
    }
  }
  if (!GetString(js, "staging", st, &p.staging, false)) return false;

  Napi::Value cv;
  if (!Read(js, "opsCompiled", &cv)) return false;
  if (!cv.IsUndefined() && !cv.IsNull()) {
    // An id from compileOps: the ops were converted and checked when it was made.
    double id;
    if (!IsIntIn(cv, 1, 4294967295.0, &id)) return ThrowType(js.Env(), "opsCompiled");
    {
      OpsRegistry& reg = ops_registry();
      std::lock_guard<std::mutex> lk(reg.mu);
      auto it = reg.lists.find(static_cast<uint32_t>(id));
      if (it == reg.lists.end()) return ThrowType(js.Env(), "opsCompiled (unknown or released)");
      st->compiled = it->second;
    }
    p.ops = st->compiled->ops.data();
    p.n_ops = st->compiled->ops.size();
  } else {
    Napi::Value opsv;
    if (!Read(js, "ops", &opsv)) return false;
    if (!ConvertOps(js.Env(), opsv, st, &st->ops)) return false;
    p.ops = st->ops.data();
    p.n_ops = st->ops.size();
  }
  // Test support: NSBOX_FORCE_PATH_WALK=1 exercises the resolver used where openat2 is missing.
  const char* walk = getenv("NSBOX_FORCE_PATH_WALK");
  p.walk_only = walk && walk[0] == '1';
  // Test support: NSBOX_FORK_CLONE exercises the fork-style clone (read here, on the JS thread).
  p.fork_clone = getenv("NSBOX_FORK_CLONE") != nullptr;

  if (!GetString(js, "hostname", st, &p.hostname, true)) return false;
  if (!GetBool(js, "netLoUp", &b)) return false;
  p.net_lo_up = b;
  p.net_fd = -1;
  {
    Napi::Value v;
    if (!Read(js, "netnsReserve", &v)) return false;
    if (!v.IsUndefined() && !v.IsBoolean()) return ThrowType(js.Env(), "netnsReserve");
    st->netns_reserve = v.IsBoolean() && v.As<Napi::Boolean>().Value();
    if (!Read(js, "ipcnsReserve", &v)) return false;
    if (!v.IsUndefined() && !v.IsBoolean()) return ThrowType(js.Env(), "ipcnsReserve");
    st->ipcns_reserve = v.IsBoolean() && v.As<Napi::Boolean>().Value();
    if (!Read(js, "mntTemplate", &v)) return false;
    if (!v.IsUndefined() && !v.IsBoolean()) return ThrowType(js.Env(), "mntTemplate");
    st->mnt_template = v.IsBoolean() && v.As<Napi::Boolean>().Value();
  }
  if (!GetString(js, "cwd", st, &p.cwd, true)) return false;

  Napi::Value rlv;
  if (!Read(js, "rlimits", &rlv)) return false;
  if (!rlv.IsArray()) return ThrowType(js.Env(), "rlimits");
  Napi::Array rls = rlv.As<Napi::Array>();
  if (rls.Length() > 16) return ThrowType(js.Env(), "rlimits");
  for (uint32_t i = 0; i < rls.Length(); i++) {
    Napi::Value e;
    if (!ReadIndex(rls, i, &e)) return false;
    if (!e.IsArray() || e.As<Napi::Array>().Length() != 3) return ThrowType(js.Env(), "rlimits[]");
    Napi::Array t = e.As<Napi::Array>();
    Napi::Value e0, e1, e2;
    double res, soft, hard;
    if (!ReadIndex(t, 0, &e0) || !ReadIndex(t, 1, &e1) || !ReadIndex(t, 2, &e2)) return false;
    if (!IsIntIn(e0, 0, 15, &res) || !IsIntIn(e1, -1, 9007199254740991.0, &soft) ||
        !IsIntIn(e2, -1, 9007199254740991.0, &hard))
      return ThrowType(js.Env(), "rlimits[]");
    nsbox::Rlimit r;
    r.resource = static_cast<int32_t>(res);
    r.soft = soft < 0 ? RLIM_INFINITY : static_cast<uint64_t>(soft);
    r.hard = hard < 0 ? RLIM_INFINITY : static_cast<uint64_t>(hard);
    st->rlimits.push_back(r);
  }
  p.rlimits = st->rlimits.data();
  p.n_rlimits = st->rlimits.size();

  if (!GetBool(js, "newKeyring", &b)) return false;
  p.new_keyring = b;
  if (!GetInt(js, "capLast", 0, 63, &d)) return false;
  p.cap_last = static_cast<int>(d);
  // 64-bit mask travels as a decimal string (a JS number cannot hold every bit).
  const char* caps = nullptr;
  if (!GetString(js, "capsKeep", st, &caps, false)) return false;
  p.caps_keep = strtoull(caps, nullptr, 10);
  if (!GetBool(js, "setCreds", &b)) return false;
  p.set_creds = b;
  if (!GetInt(js, "uid", 0, 4294967294.0, &d)) return false;
  p.uid = static_cast<uint32_t>(d);
  if (!GetInt(js, "gid", 0, 4294967294.0, &d)) return false;
  p.gid = static_cast<uint32_t>(d);
  Napi::Value gv;
  if (!Read(js, "groups", &gv)) return false;
  if (!gv.IsArray()) return ThrowType(js.Env(), "groups");
  Napi::Array ga = gv.As<Napi::Array>();
  if (ga.Length() > kMaxList) return ThrowType(js.Env(), "groups");
  for (uint32_t i = 0; i < ga.Length(); i++) {
    Napi::Value g;
    double gd;
    if (!ReadIndex(ga, i, &g)) return false;
    if (!IsIntIn(g, 0, 4294967294.0, &gd)) return ThrowType(js.Env(), "groups[]");
    st->groups.push_back(static_cast<uint32_t>(gd));
  }
  p.groups = st->groups.data();
  p.n_groups = st->groups.size();
  if (!GetBool(js, "noNewPrivs", &b)) return false;
  p.no_new_privs = b;
  if (!GetBool(js, "pdeathsig", &b)) return false;
  p.pdeathsig = b;

  Napi::Value sv;
  if (!Read(js, "stdio", &sv)) return false;
  if (!sv.IsArray() || sv.As<Napi::Array>().Length() != 3) return ThrowType(js.Env(), "stdio");
  for (uint32_t i = 0; i < 3; i++) {
    Napi::Value f;
    double fd;
    if (!ReadIndex(sv.As<Napi::Array>(), i, &f)) return false;
    if (!IsIntIn(f, nsbox::kStdioDevNull, 2147483647.0, &fd)) return ThrowType(js.Env(), "stdio[]");
    p.stdio[i] = static_cast<int>(fd);
  }
  if (!GetInt(js, "statusFd", -1, 2147483647.0, &d)) return false;
  p.status_fd = static_cast<int>(d);
  p.err_fd = -1;

  std::vector<char*> cands;
  if (!GetStringArray(js, "candidates", st, &cands)) return false;
  for (char* c : cands)
    if (c) st->candidates.push_back(c);
  p.candidates = st->candidates.data();
  p.n_candidates = st->candidates.size();
  if (!GetStringArray(js, "argv", st, &st->argv)) return false;
  if (!GetStringArray(js, "envp", st, &st->envp)) return false;
  p.argv = st->argv.data();
  p.envp = st->envp.data();
  if (!GetInt(js, "initFd", -1, 2147483647.0, &d)) return false;
  p.init_fd = static_cast<int>(d);
  if (p.init_fd >= 0) {
    if (!GetStringArray(js, "initArgv", st, &st->init_argv)) return false;
    if (!GetInt(js, "initSlot", -1, 65536, &d)) return false;
    p.init_slot = d < 0 ? SIZE_MAX : static_cast<size_t>(d);
    if (d >= 0 && p.init_slot + 1 >= st->init_argv.size()) return ThrowType(js.Env(), "initSlot");
    p.init_argv = st->init_argv.data();
  } else {
    p.init_argv = nullptr;
    p.init_slot = 0;
  }
  if (!GetInt(js, "trampFd", -1, 2147483647.0, &d)) return false;
  p.tramp_fd = static_cast<int>(d);
  p.tramp_argv = nullptr;
  if (p.tramp_fd >= 0) {
    std::vector<char*> rest;
    if (!GetStringArray(js, "argv", st, &rest)) return false;
    // {"nsbox-init", "--exec", ERRFD, INDEX, "--", PATH, argv..., NULL}; the slots are writable
    // 11-character buffers owned by the storage.
    st->tramp_argv.push_back(const_cast<char*>(st->keep("nsbox-init")));
    st->tramp_argv.push_back(const_cast<char*>(st->keep("--exec")));
    st->tramp_argv.push_back(const_cast<char*>(st->keep("00000000000")));
    st->tramp_argv.push_back(const_cast<char*>(st->keep("00000000000")));
    st->tramp_argv.push_back(const_cast<char*>(st->keep("--")));
    st->tramp_argv.push_back(nullptr);
    for (char* a : rest) st->tramp_argv.push_back(a);  // ends with the NULL terminator
    p.tramp_argv = st->tramp_argv.data();
  }
  Napi::Value sc;
  if (!Read(js, "seccomp", &sc)) return false;
  p.seccomp = nullptr;
  p.seccomp_len = 0;
  if (sc.IsBuffer()) {
    Napi::Buffer<uint8_t> b = sc.As<Napi::Buffer<uint8_t>>();
    if (b.Length() == 0 || b.Length() % 8 != 0 || b.Length() / 8 > 4096) return ThrowType(js.Env(), "seccomp");
    st->seccomp.assign(b.Data(), b.Data() + b.Length());
    p.seccomp = st->seccomp.data();
    p.seccomp_len = b.Length() / 8;
  } else if (!sc.IsNull() && !sc.IsUndefined()) {
    return ThrowType(js.Env(), "seccomp");
  }
  // Warm pool (optional fields).
  p.cmd_fd = -1;
  p.path_dirs_joined = nullptr;
  Napi::Value cf;
  double cfd;
  if (!Read(js, "cmdFd", &cf)) return false;
  if (IsIntIn(cf, 0, 2147483647.0, &cfd)) {
    if (p.tramp_fd < 0 || !p.tramp_argv) return ThrowType(js.Env(), "cmdFd needs trampFd");
    p.cmd_fd = static_cast<int>(cfd);
    if (!GetString(js, "pathDirs", st, &p.path_dirs_joined, false)) return false;
  }
  if (!GetInt(js, "enterPidfd", -1, 2147483647.0, &d)) return false;
  p.enter_pidfd = static_cast<int>(d);
  p.enter_pid_out = nullptr;  // set by the spawner (spawn.cc)
  p.enter_report_fd = -1;
  if (!GetInt(js, "enterFlags", 0, 9007199254740991.0, &d)) return false;
  p.enter_flags = static_cast<uint64_t>(d);
  if (!GetString(js, "enterRoot", st, &p.enter_root, true)) return false;
  if (!GetInt(js, "ptySock", -1, 2147483647.0, &d)) return false;
  p.pty_sock = static_cast<int>(d);
  Napi::Value pc, pr;
  double cols = 0, rows = 0;
  if (!Read(js, "ptyCols", &pc) || !Read(js, "ptyRows", &pr)) return false;
  if (!pc.IsUndefined() && !IsIntIn(pc, 0, 65535, &cols)) return ThrowType(js.Env(), "ptyCols");
  if (!pr.IsUndefined() && !IsIntIn(pr, 0, 65535, &rows)) return ThrowType(js.Env(), "ptyRows");
  p.pty_cols = static_cast<uint16_t>(cols);
  p.pty_rows = static_cast<uint16_t>(rows);
  // User namespace (optional fields): see Plan in native/core/plan.h.
  p.userns_sync_fd = -1;
  p.userns_sync_wfd = -1;
  p.self_uid_map = nullptr;
  p.self_gid_map = nullptr;
  p.setgroups_denied = false;
  Napi::Value us, uw, sg;
  double usd;
  if (!Read(js, "usernsSyncFd", &us) || !Read(js, "usernsSyncWriteFd", &uw)) return false;
  if (!us.IsUndefined()) {
    if (!IsIntIn(us, -1, 2147483647.0, &usd)) return ThrowType(js.Env(), "usernsSyncFd");
    p.userns_sync_fd = static_cast<int>(usd);
  }
  if (!uw.IsUndefined()) {
    if (!IsIntIn(uw, -1, 2147483647.0, &usd)) return ThrowType(js.Env(), "usernsSyncWriteFd");
    p.userns_sync_wfd = static_cast<int>(usd);
  }
  if (!GetString(js, "selfUidMap", st, &p.self_uid_map, true)) return false;
  if (!GetString(js, "selfGidMap", st, &p.self_gid_map, true)) return false;
  if (!Read(js, "setgroupsDenied", &sg)) return false;
  if (!sg.IsUndefined()) {
    if (!sg.IsBoolean()) return ThrowType(js.Env(), "setgroupsDenied");
    p.setgroups_denied = sg.As<Napi::Boolean>().Value();
  }
  if (p.userns_sync_fd >= 0 && p.self_uid_map) return ThrowType(js.Env(), "usernsSyncFd with selfUidMap");
  // Bridged network (optional field).
  return nsbox_glue::BuildNetPlan(js, &st->net, &p);
}

// One live container process: its pidfd, watched with uv_poll until it has exited and been reaped.
class Process : public Napi::ObjectWrap<Process> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Process",
                                   {InstanceMethod("watch", &Process::Watch),
                                    InstanceMethod("signal", &Process::Signal),
                                    InstanceMethod("ref", &Process::DoRef),
                                    InstanceMethod("fd", &Process::Fd),
                                    InstanceMethod("exited", &Process::Exited),
                                    InstanceMethod("reap", &Process::Reap),
                                    InstanceMethod("unref", &Process::DoUnref)});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  explicit Process(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Process>(info) {}
  ~Process() override { CloseFds(); }

  void Adopt(int pidfd, int status_fd) {
    pidfd_ = pidfd;
    status_fd_ = status_fd;
  }

 private:
  // watch(cb): cb(exitCode|null, signal|null, cpuUsageUs, initStatus|null) once, on exit.
  Napi::Value Watch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsFunction() || poll_ || pidfd_ < 0) {
      Napi::TypeError::New(env, "watch(callback) once on a live process").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    int rc = uv_poll_init(loop, poll_, pidfd_);
    if (rc != 0) {
      delete poll_;
      poll_ = nullptr;
      Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    poll_->data = this;
    callback_ = Napi::Persistent(info[0].As<Napi::Function>());
    Ref();  // stay alive until the exit was delivered, whatever JS does with the handle
    // If the environment goes away first (Node exiting with a machine still running), stop
    // watching without calling into JS, which is no longer possible then.
    napi_add_env_cleanup_hook(env, &Process::OnEnvCleanup, this);
    uv_poll_start(poll_, UV_READABLE, &Process::OnReadable);
    return env.Undefined();
  }

  // signal(n): 0 or an errno (ESRCH once the process is gone and reaped).
  Napi::Value Signal(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int sig = info[0].As<Napi::Number>().Int32Value();
    if (pidfd_ < 0) return Napi::Number::New(env, ESRCH);
    int rc = nsbox::sys::pidfd_send_signal(pidfd_, sig);
    return Napi::Number::New(env, rc == 0 ? 0 : errno);
  }

  // fd(): the pidfd while the process has not been reaped, else -1. Valid only synchronously.
  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pidfd_); }

  // exited(): true once the process has exited (its pidfd polls readable), zombie or reaped.
  Napi::Value Exited(const Napi::CallbackInfo& info) {
    if (pidfd_ < 0) return Napi::Boolean::New(info.Env(), true);
    struct pollfd p = {pidfd_, POLLIN, 0};
    int rc = poll(&p, 1, 0);
    return Napi::Boolean::New(info.Env(), rc > 0 && (p.revents & (POLLIN | POLLHUP)));
  }

  // reap(): waits (blocking) for a process that has been killed or has failed before exec, and
  // closes its pidfd. Only for a process nobody watches: the watcher reaps the others.
  Napi::Value Reap(const Napi::CallbackInfo& info) {
    if (pidfd_ >= 0 && !poll_) {
      siginfo_t si;
      nsbox::sys::wait_pidfd(pidfd_, &si, WEXITED);
      CloseFds();
    }
    return info.Env().Undefined();
  }

  Napi::Value DoRef(const Napi::CallbackInfo& info) {
    if (poll_) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }
  Napi::Value DoUnref(const Napi::CallbackInfo& info) {
    if (poll_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  void CloseFds() {
    if (pidfd_ >= 0) close(pidfd_);
    if (status_fd_ >= 0) close(status_fd_);
    pidfd_ = status_fd_ = -1;
  }

  static void OnEnvCleanup(void* arg) {
    Process* self = static_cast<Process*>(arg);
    if (self->poll_) {
      uv_poll_stop(self->poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(self->poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      self->poll_ = nullptr;
    }
    self->CloseFds();
  }

  static void OnReadable(uv_poll_t* handle, int status, int /*events*/) {
    Process* self = static_cast<Process*>(handle->data);
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    if (status < 0) return;  // spurious error: the pidfd stays readable until reaped
    int rc = NSBOX_RETRY(nsbox::sys::waitid_rusage(P_PIDFD, self->pidfd_, &si, WEXITED | WNOHANG, &ru));
    if (rc == 0 && si.si_pid == 0) return;  // not yet exited (should not happen when readable)
    // rc < 0 with ECHILD: not our child (a machine found from another process); its parent or the
    // host's init reaps it, and readable means it has exited. No status is known then.

    int init_status = -1;
    if (self->status_fd_ >= 0) {
      int v;
      ssize_t n = read(self->status_fd_, &v, sizeof(v));
      if (n == static_cast<ssize_t>(sizeof(v))) init_status = v;
    }
    uv_poll_stop(handle);
    uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    self->poll_ = nullptr;
    self->CloseFds();

    napi_env env = self->Env();
    napi_remove_env_cleanup_hook(env, &Process::OnEnvCleanup, self);
    double cpu_us = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                    static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    Napi::FunctionReference cb = std::move(self->callback_);
    self->Unref();
    // The plain C API here: while Node tears an environment down these calls fail, and the
    // exit of a process nobody can hear about any more is simply dropped (node-addon-api would
    // turn the failure into a fatal error).
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value argv[4], global, fn, result;
    bool ok = napi_get_null(env, &argv[0]) == napi_ok && napi_get_null(env, &argv[1]) == napi_ok &&
              napi_get_null(env, &argv[3]) == napi_ok && napi_get_global(env, &global) == napi_ok &&
              napi_create_double(env, cpu_us, &argv[2]) == napi_ok && !cb.IsEmpty() &&
              napi_get_reference_value(env, cb, &fn) == napi_ok && fn != nullptr;
    if (ok && rc == 0) {
      ok = napi_create_int32(env, si.si_status, &argv[si.si_code == CLD_EXITED ? 0 : 1]) == napi_ok;
    }
    if (ok && init_status >= 0) ok = napi_create_int32(env, init_status, &argv[3]) == napi_ok;
    if (ok && napi_make_callback(env, nullptr, global, fn, 4, argv, &result) != napi_ok) {
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
        napi_value e;
        if (napi_get_and_clear_last_exception(env, &e) == napi_ok) napi_fatal_exception(env, e);
      }
    }
    napi_close_handle_scope(env, scope);
  }

  int pidfd_ = -1;
  int status_fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference callback_;
};

Napi::FunctionReference* Process::ctor = nullptr;

// Namespaces made ahead (see reserve.cc), which the caller closes after the clone (-1: none).
struct Reserved {
  int net = -1;
  int ipc = -1;
  void close_all() {
    if (net >= 0) close(net);
    if (ipc >= 0) close(ipc);
    net = ipc = -1;
  }
};

// A network namespace made ahead replaces CLONE_NEWNET where the plan allows it ('loopback'); an
// IPC namespace made ahead replaces CLONE_NEWIPC where the plan allows it (app containers). Never
// with a user namespace: the container's namespaces must belong to it, made by the same clone.
Reserved TakeReserved(PlanStorage* st) {
  Reserved r;
  Plan& p = st->plan;
  if (p.clone_flags & CLONE_NEWUSER) return r;
  const bool net = st->netns_reserve && (p.clone_flags & CLONE_NEWNET);
  const bool ipc = st->ipcns_reserve && (p.clone_flags & CLONE_NEWIPC) && p.enter_pidfd < 0;
  if (!net && !ipc) return r;
  nsbox_glue::reserve_take(net ? &r.net : nullptr, ipc ? &r.ipc : nullptr);
  if (r.net >= 0) {
    p.net_fd = r.net;
    p.clone_flags &= ~static_cast<uint64_t>(CLONE_NEWNET);
    p.net_lo_up = false;
  }
  if (r.ipc >= 0) {
    p.ipc_fd = r.ipc;
    p.clone_flags &= ~static_cast<uint64_t>(CLONE_NEWIPC);
  }
  return r;
}

// The mount namespace template replaces CLONE_NEWNS where the plan allows it (child.cc,
// mount_in_template): a plan that asks for it (app containers without a user namespace), with the
// root as its first op (a host bind or a filesystem fsmount can make), every later op on a
// container path, and at most kMaxTemplateTrees host binds.
void UseMountTemplate(PlanStorage* st) {
  Plan& p = st->plan;
  if (!st->mnt_template || !(p.clone_flags & CLONE_NEWNS) || (p.clone_flags & CLONE_NEWUSER) || p.enter_pidfd >= 0) return;
  if (p.n_ops == 0 || !(p.ops[0].where & nsbox::WHERE_OPEN_ROOT)) return;
  size_t binds = 0;
  for (size_t i = 0; i < p.n_ops; i++) {
    const Op& op = p.ops[i];
    const bool host_bind = nsbox::is_host_bind(op);
    if (i > 0 && !(op.where & nsbox::WHERE_DST_IN_ROOT)) return;
    if (host_bind && ++binds > nsbox::kMaxTemplateTrees) return;
    // The root: a host bind, or a new filesystem that fsopen/fsmount can make (child.cc, detached_fs).
    if (i == 0 && !host_bind &&
        (op.kind != nsbox::OP_MOUNT || !op.fstype || !op.src || (op.flags & ~nsbox::kTemplatePlainFlags) ||
         (op.data && strlen(op.data) >= nsbox::kMaxTemplateData)))
      return;
  }
  int fd = nsbox_glue::mnt_template();
  if (fd < 0) return;
  p.mnt_template_fd = fd;
  p.clone_flags &= ~static_cast<uint64_t>(CLONE_NEWNS);
}

// plan.statusRead: the read end of the init's status pipe, or -1.
int StatusRead(Napi::Object plan) {
  Napi::Value sr = plan.Get("statusRead");
  double srd;
  if (!plan.Env().IsExceptionPending() && IsIntIn(sr, 0, 2147483647.0, &srd)) return static_cast<int>(srd);
  return -1;
}

// The result object of spawn/spawnAsync: a Process for the child, or the failure record.
Napi::Value SpawnResult(Napi::Env env, const nsbox::SpawnOutcome& out, int status_read, bool used_template) {
  Napi::Object res = Napi::Object::New(env);
  res.Set("usedClone3", Napi::Boolean::New(env, out.used_clone3));
  res.Set("usedMntTemplate", Napi::Boolean::New(env, used_template));
  if (out.error.step != nsbox::STEP_NONE) {
    res.Set("step", Napi::Number::New(env, out.error.step));
    res.Set("errno", Napi::Number::New(env, out.error.err));
    res.Set("index", Napi::Number::New(env, out.error.index));
    return res;
  }
  Napi::Object proc = Process::ctor->New({});
  // The read end of the init's status pipe is read by the watcher; dup it so JS can close its copy.
  int status_fd = status_read >= 0 ? fcntl(status_read, F_DUPFD_CLOEXEC, 3) : -1;
  if (status_fd >= 0) fcntl(status_fd, F_SETFL, O_NONBLOCK);
  Process::Unwrap(proc)->Adopt(out.pidfd, status_fd);
  res.Set("pid", Napi::Number::New(env, out.pid));
  res.Set("process", proc);
  if (out.err_fd >= 0) res.Set("errFd", Napi::Number::New(env, out.err_fd));
  if (out.waiting) res.Set("waiting", Napi::Boolean::New(env, true));
  if (out.entering) res.Set("entering", Napi::Boolean::New(env, true));
  return res;
}

// readFiles(dir, names): the contents of dir/name for each name (null where it cannot be read),
// in one call: a container's stats at exit are up to nine small cgroup files, most of them absent
// on a given host, and fs.readFileSync costs an fstat and, for each absent one, an exception.
Napi::Value ReadFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsArray()) {
    Napi::TypeError::New(env, "readFiles(dir, names)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::Array names = info[1].As<Napi::Array>();
  uint32_t n = names.Length();
  Napi::Array out = Napi::Array::New(env, n);
  int dfd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  std::string buf;
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value nv = names.Get(i);
    if (env.IsExceptionPending()) break;
    if (!nv.IsString()) {
      Napi::TypeError::New(env, "readFiles: names[] must be strings").ThrowAsJavaScriptException();
      break;
    }
    std::string name = nv.As<Napi::String>().Utf8Value();
    int fd = dfd >= 0 && name.find('/') == std::string::npos ? openat(dfd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
    if (fd < 0) {
      out.Set(i, env.Null());
      continue;
    }
    buf.clear();
    char chunk[4096];
    bool ok = true;
    for (;;) {
      ssize_t r = NSBOX_RETRY(read(fd, chunk, sizeof(chunk)));
      if (r < 0) ok = false;
      if (r <= 0) break;
      buf.append(chunk, static_cast<size_t>(r));
      if (buf.size() > (1u << 20)) break;  // no cgroup file is this large; stop rather than grow
    }
    close(fd);
    out.Set(i, ok ? Napi::Value(Napi::String::New(env, buf)) : env.Null());
  }
  if (dfd >= 0) close(dfd);
  return out;
}

// compileOps(ops): converts a plan's ops once; the id goes in later plans as opsCompiled.
Napi::Value CompileOps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = std::make_shared<CompiledOps>();
  if (!ConvertOps(env, info[0], c.get(), &c->ops)) return env.Undefined();
  OpsRegistry& reg = ops_registry();
  std::lock_guard<std::mutex> lk(reg.mu);
  uint32_t id = reg.next++;
  if (reg.next == 0) reg.next = 1;
  reg.lists[id] = std::move(c);
  return Napi::Number::New(env, id);
}

// releaseOps(id): forgets a compiled list (spawns in flight keep their own reference to it).
Napi::Value ReleaseOps(const Napi::CallbackInfo& info) {
  double id;
  if (IsIntIn(info[0], 1, 4294967295.0, &id)) {
    OpsRegistry& reg = ops_registry();
    std::lock_guard<std::mutex> lk(reg.mu);
    reg.lists.erase(static_cast<uint32_t>(id));
  }
  return info.Env().Undefined();
}

Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) return (ThrowType(env, "plan"), env.Undefined());
  auto st = std::make_unique<PlanStorage>();
  if (!BuildPlan(info[0].As<Napi::Object>(), st.get())) return env.Undefined();
  if (!st->cgroup_mkdir.empty()) return (ThrowType(env, "cgroupMkdir (spawnAsync only)"), env.Undefined());

  Reserved reserved = TakeReserved(st.get());
  UseMountTemplate(st.get());
  nsbox::SpawnOutcome out;
  nsbox::spawn(st->plan, &out);
  reserved.close_all();
  return SpawnResult(env, out, StatusRead(info[0].As<Napi::Object>()), st->plan.mnt_template_fd >= 0);
}

// spawnAsync(plan, callback): the same as spawn, but the clone and the wait for the exec run on a
// thread of libuv's pool, so the JS thread is free meanwhile; callback(result) on the JS thread.
// The plan's storage (and every fd it names, which JS keeps open until the callback) outlives the
// work. Only for plans whose child needs nothing from this thread (no id maps to write).
class SpawnWorker : public Napi::AsyncWorker {
 public:
  SpawnWorker(Napi::Function cb, std::unique_ptr<PlanStorage> st, int status_read)
      : Napi::AsyncWorker(cb, "nsbox.spawn"), st_(std::move(st)), status_read_(status_read) {
    reserved_ = TakeReserved(st_.get());
    UseMountTemplate(st_.get());
  }
  ~SpawnWorker() override {
    reserved_.close_all();  // never executed (the environment went away first)
  }
  void Execute() override {
    int cg = st_->cgroup_mkdir.empty() ? -1 : MakeCgroup();
    if (st_->cgroup_mkdir.empty() || cg >= 0) {
      if (cg >= 0) st_->plan.cgroup_fd = cg;
      nsbox::spawn(st_->plan, &out_);
    }
    if (cg >= 0) close(cg);
    reserved_.close_all();
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Value res = SpawnResult(env, out_, status_read_, st_->plan.mnt_template_fd >= 0);
    Callback().Call({res});
  }

 private:
  // mkdir + open of plan.cgroupMkdir (the base made again if another process just removed it, as
  // ContainerCgroup.create does); -1 with out_.error set (STEP_CGROUP_MAKE) on failure. Whatever
  // was made is removed by the JS side, which owns the cgroup either way.
  int MakeCgroup() {
    const char* dir = st_->cgroup_mkdir.c_str();
    for (int attempt = 0;; attempt++) {
      if (mkdir(dir, 0755) == 0) break;
      int e = errno;
      if (e == ENOENT && attempt < 3 && !st_->cgroup_base.empty()) {
        if (mkdir(st_->cgroup_base.c_str(), 0755) == 0 || errno == EEXIST) continue;
        out_.error = {nsbox::STEP_CGROUP_MAKE, errno, nsbox::CGROUP_MAKE_BASE, nsbox::kErrorMagic};
        return -1;
      }
      out_.error = {nsbox::STEP_CGROUP_MAKE, e, nsbox::CGROUP_MAKE_DIR, nsbox::kErrorMagic};
      return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) out_.error = {nsbox::STEP_CGROUP_MAKE, errno, nsbox::CGROUP_MAKE_OPEN, nsbox::kErrorMagic};
    return fd;
  }

  std::unique_ptr<PlanStorage> st_;
  int status_read_;
  Reserved reserved_;
  nsbox::SpawnOutcome out_;
};

Napi::Value SpawnAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) return (ThrowType(env, "plan"), env.Undefined());
  if (!info[1].IsFunction()) return (ThrowType(env, "callback"), env.Undefined());
  auto st = std::make_unique<PlanStorage>();
  if (!BuildPlan(info[0].As<Napi::Object>(), st.get())) return env.Undefined();
  if (st->plan.userns_sync_fd >= 0) return (ThrowType(env, "userns (spawnAsync cannot write id maps)"), env.Undefined());
  int status_read = StatusRead(info[0].As<Napi::Object>());
  if (env.IsExceptionPending()) return env.Undefined();
  auto* w = new SpawnWorker(info[1].As<Napi::Function>(), std::move(st), status_read);
  w->Queue();
  return env.Undefined();
}

// The result of finish_spawn as finishSpawn returns it: null (it runs) or the failure record.
Napi::Value FinishResultValue(Napi::Env env, nsbox::FinishResult r, const nsbox::ErrorRecord& rec) {
  if (r == nsbox::FINISH_EXECED) return env.Null();
  Napi::Object res = Napi::Object::New(env);
  if (r == nsbox::FINISH_READY) {
    res.Set("ready", Napi::Boolean::New(env, true));
    return res;
  }
  res.Set("step", Napi::Number::New(env, rec.step));
  res.Set("errno", Napi::Number::New(env, rec.err));
  res.Set("index", Napi::Number::New(env, rec.index));
  return res;
}

// finishSpawnAsync(errFd, callback): finishSpawn without blocking the JS thread: the error pipe is
// watched on the event loop and read without blocking (O_NONBLOCK) as it becomes readable, until a
// whole 16-byte record or end-of-file, then callback(null | record). For a busy process: a pooled
// container given its command may need a while to get a CPU and exec it. For a machine's exec: the
// process runs inside the machine, where anything can write part of a record to the pipe and stop,
// so nothing here may wait for the rest. Returns an id for cancelFinishSpawn.
class FinishWatch {
 public:
  static Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "finishSpawnAsync(errFd, callback)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    auto* w = new FinishWatch();
    w->env_ = env;
    w->fd_ = info[0].As<Napi::Number>().Int32Value();
    w->cb_ = Napi::Persistent(info[1].As<Napi::Function>());
    if (info.Length() > 3 && info[2].IsNumber() && info[3].IsNumber()) {
      w->pidfd_ = info[2].As<Napi::Number>().Int32Value();
      w->pid_ = info[3].As<Napi::Number>().Int32Value();
    }
    int fl = fcntl(w->fd_, F_GETFL);
    if (fl >= 0) fcntl(w->fd_, F_SETFL, fl | O_NONBLOCK);
    int rc = uv_poll_init(loop, &w->poll_, w->fd_);
    if (rc != 0) {
      close(w->fd_);  // as finishSpawn would: the caller has handed the fd over
      delete w;
      Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    w->poll_.data = w;
    w->id_ = next_id()++;
    if (w->id_ == 0) w->id_ = next_id()++;
    live()[w->id_] = w;
    napi_add_env_cleanup_hook(env, &FinishWatch::OnEnvCleanup, w);
    uv_poll_start(&w->poll_, UV_READABLE | UV_DISCONNECT, &FinishWatch::OnReadable);
    return Napi::Number::New(env, w->id_);
  }

  // cancelFinishSpawn(id): stops watching (the fd is closed, the callback never called). For a
  // start given up on (its time limit): something of the machine may hold the pipe open forever.
  // True if it was still watching.
  static Napi::Value Cancel(const Napi::CallbackInfo& info) {
    double id;
    if (!IsIntIn(info[0], 1, 4294967295.0, &id)) return Napi::Boolean::New(info.Env(), false);
    auto it = live().find(static_cast<uint32_t>(id));
    if (it == live().end()) return Napi::Boolean::New(info.Env(), false);
    FinishWatch* w = it->second;
    w->cb_.Reset();
    Close(w);
    return Napi::Boolean::New(info.Env(), true);
  }

 private:
  // Watchers by id; JS thread only.
  static std::unordered_map<uint32_t, FinishWatch*>& live() {
    static std::unordered_map<uint32_t, FinishWatch*> m;
    return m;
  }
  static uint32_t& next_id() {
    static uint32_t n = 1;
    return n;
  }

  static void Close(FinishWatch* w) {
    live().erase(w->id_);
    napi_remove_env_cleanup_hook(w->env_, &FinishWatch::OnEnvCleanup, w);
    uv_poll_stop(&w->poll_);
    if (w->fd_ >= 0) close(w->fd_);
    w->fd_ = -1;
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll_), [](uv_handle_t* h) { delete static_cast<FinishWatch*>(h->data); });
  }

  static void OnEnvCleanup(void* arg) {
    auto* w = static_cast<FinishWatch*>(arg);
    live().erase(w->id_);
    uv_poll_stop(&w->poll_);
    close(w->fd_);
    w->fd_ = -1;
    w->cb_.Reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll_), [](uv_handle_t* h) { delete static_cast<FinishWatch*>(h->data); });
  }

  static void OnReadable(uv_poll_t* h, int status, int /*events*/) {
    auto* w = static_cast<FinishWatch*>(h->data);
    (void)status;  // an error of the poll itself: read anyway (the read says what there is)
    bool eof = false;
    while (w->got_ < sizeof(w->rec_)) {
      ssize_t n = NSBOX_RETRY(read(w->fd_, reinterpret_cast<char*>(&w->rec_) + w->got_, sizeof(w->rec_) - w->got_));
      if (n > 0) {
        w->got_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // the rest later (or never: the caller's time limit)
      eof = true;  // end-of-file, or an error: nothing more will come
      break;
    }
    nsbox::ErrorRecord rec = w->rec_;
    nsbox::FinishResult r;
    if (eof && w->got_ == 0 && !nsbox::died_before_exec(w->pidfd_, w->pid_, &rec)) {
      r = nsbox::FINISH_EXECED;
    } else if (eof && w->got_ == 0) {
      r = nsbox::FINISH_FAILED;  // killed before its exec: rec is the STEP_DIED record
    } else {
      r = nsbox::FINISH_FAILED;
      if (w->got_ != sizeof(rec) || !nsbox::plausible_failure(rec)) nsbox::protocol_error(&rec, w->got_);
    }
    Napi::FunctionReference cb = std::move(w->cb_);
    Napi::Env env = w->env_;
    Close(w);  // closes the fd
    Napi::HandleScope scope(env);
    Napi::Value v = FinishResultValue(env, r, rec);
    cb.MakeCallback(env.Global(), {v});
  }

  napi_env env_ = nullptr;
  int fd_ = -1;
  int pidfd_ = -1;  // the process's pidfd and pid (not owned): a death before exec is told apart
  pid_t pid_ = -1;
  uint32_t id_ = 0;
  size_t got_ = 0;
  nsbox::ErrorRecord rec_ = {0, 0, 0, 0};
  uv_poll_t poll_;
  Napi::FunctionReference cb_;
};

// collectOutput([outFd, errFd], max, callback): reads a run's stdout and stderr pipes to their
// end on the event loop and calls callback(out, err, outDropped, errDropped) once both are done,
// keeping at most `max` bytes of each and counting the rest. It owns the fds (closes them). For
// run() and pool.run(), which hand back the whole output: two net.Sockets and their stream
// machinery cost more of the JS thread than the container's exit itself. An fd of -1 is empty.
class OutputCollector {
 public:
  static Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double mx;
    if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() != 2 || !IsIntIn(info[1], 0, 9007199254740991.0, &mx) ||
        !info[2].IsFunction()) {
      Napi::TypeError::New(env, "collectOutput([outFd, errFd], max, callback)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array fds = info[0].As<Napi::Array>();
    double f[2];
    for (uint32_t i = 0; i < 2; i++) {
      if (!IsIntIn(fds.Get(i), -1, 2147483647.0, &f[i])) {
        Napi::TypeError::New(env, "collectOutput: fds must be integers").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    auto* c = new OutputCollector();
    c->env_ = env;
    c->max_ = static_cast<size_t>(mx);
    c->cb_ = Napi::Persistent(info[2].As<Napi::Function>());
    for (int i = 0; i < 2; i++) {
      Stream& st = c->s_[i];
      st.owner = c;
      st.fd = static_cast<int>(f[i]);
      if (st.fd < 0) continue;
      int fl = fcntl(st.fd, F_GETFL);
      if (fl >= 0) fcntl(st.fd, F_SETFL, fl | O_NONBLOCK);
      if (uv_poll_init(loop, &st.poll, st.fd) != 0) {
        // Not pollable (cannot happen for a pipe): read nothing from it.
        close(st.fd);
        st.fd = -1;
        continue;
      }
      st.poll.data = &st;
      st.polling = true;
      c->open_++;
      uv_poll_start(&st.poll, UV_READABLE | UV_DISCONNECT, &OutputCollector::OnReadable);
    }
    napi_add_env_cleanup_hook(env, &OutputCollector::OnEnvCleanup, c);
    if (c->open_ == 0) c->Finish();
    return env.Undefined();
  }

 private:
  struct Stream {
    OutputCollector* owner = nullptr;
    int fd = -1;
    bool polling = false;  // uv_poll started and not yet closed
    uv_poll_t poll;
    std::string buf;
    double dropped = 0;
    void Close() {
      if (!polling) return;
      polling = false;
      uv_poll_stop(&poll);
      uv_close(reinterpret_cast<uv_handle_t*>(&poll), &OutputCollector::OnClosed);
    }
  };

  static void OnReadable(uv_poll_t* h, int status, int /*events*/) {
    Stream* st = static_cast<Stream*>(h->data);
    OutputCollector* c = st->owner;
    char chunk[65536];
    bool done = status < 0;
    while (!done) {
      ssize_t n = NSBOX_RETRY(read(st->fd, chunk, sizeof(chunk)));
      if (n > 0) {
        size_t room = c->max_ > st->buf.size() ? c->max_ - st->buf.size() : 0;
        size_t keep = static_cast<size_t>(n) < room ? static_cast<size_t>(n) : room;
        st->buf.append(chunk, keep);
        st->dropped += static_cast<double>(static_cast<size_t>(n) - keep);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // more later
      done = true;  // end-of-file, or an error (EIO from a hung-up pty): the stream is over
    }
    st->Close();
  }

  static void OnClosed(uv_handle_t* h) {
    Stream* st = static_cast<Stream*>(h->data);
    OutputCollector* c = st->owner;
    close(st->fd);
    st->fd = -1;
    if (--c->open_ > 0) return;
    if (c->dead_) delete c;  // the environment went away meanwhile: no callback
    else c->Finish();
  }

  void Finish() {
    napi_remove_env_cleanup_hook(env_, &OutputCollector::OnEnvCleanup, this);
    Napi::Env env(env_);
    Napi::FunctionReference cb = std::move(cb_);
    {
      Napi::HandleScope scope(env);
      Napi::Value out = Napi::Buffer<char>::Copy(env, s_[0].buf.data(), s_[0].buf.size());
      Napi::Value err = Napi::Buffer<char>::Copy(env, s_[1].buf.data(), s_[1].buf.size());
      Napi::Value d0 = Napi::Number::New(env, s_[0].dropped);
      Napi::Value d1 = Napi::Number::New(env, s_[1].dropped);
      delete this;
      cb.MakeCallback(env.Global(), {out, err, d0, d1});
    }
  }

  // The environment is going away: no callback; the handles are closed (OnClosed frees the rest).
  static void OnEnvCleanup(void* arg) {
    auto* c = static_cast<OutputCollector*>(arg);
    c->dead_ = true;
    c->cb_.Reset();
    for (Stream& st : c->s_) st.Close();
  }

  napi_env env_ = nullptr;
  bool dead_ = false;
  size_t max_ = 0;
  int open_ = 0;
  Stream s_[2];
  Napi::FunctionReference cb_;
};

// finishSpawn(errFd, allowReady?, pidfd?, pid?): after a pooled container got its command, wait
// for its exec. Returns null (it runs) or the failure record; closes errFd. With the process's
// pidfd and pid, a death before the exec is a failure (STEP_DIED), not a start.
Napi::Value FinishSpawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  nsbox::ErrorRecord rec;
  bool allow_ready = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  int pidfd = info.Length() > 3 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
  pid_t pid = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : -1;
  nsbox::FinishResult r = nsbox::finish_spawn(info[0].As<Napi::Number>().Int32Value(), &rec, allow_ready, pidfd, pid);
  return FinishResultValue(env, r, rec);
}

Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    Napi::Error e = Napi::Error::New(env, std::string("pipe2: ") + strerror(errno));
    e.Set("errno", Napi::Number::New(env, errno));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, fds[0]));
  a.Set(1u, Napi::Number::New(env, fds[1]));
  return a;
}

// sealedMemfd(path): the file's bytes in a new memfd that nobody can write, shrink or grow any more.
// Executing the init from it means /proc/<pid>/exe inside a container never leads to a host file.
// A new one for every start: seals cover the contents, not the inode, and a container's root
// (CAP_FOWNER, CAP_CHOWN) can chmod, chown or set-id the file behind its /proc/1/exe; shared, that
// would reach every later container (chmod 0 stopped them all; u+s would have run them set-uid).
// The bytes are read once per path (on the JS thread, the only caller).
Napi::Value SealedMemfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  auto fail = [&](const char* sc) {
    int err = errno;
    Napi::Error e = Napi::Error::New(env, std::string(sc) + " '" + path + "': " + strerror(err));
    e.Set("errno", Napi::Number::New(env, err));
    e.Set("syscall", Napi::String::New(env, sc));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  };
  static std::string cached_path, cached_bytes;
  if (cached_path != path) {
    int src = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (src < 0) return fail("open");
    std::string bytes;
    char buf[65536];
    for (;;) {
      ssize_t n = NSBOX_RETRY(read(src, buf, sizeof(buf)));
      if (n < 0) {
        close(src);
        return fail("read");
      }
      if (n == 0) break;
      bytes.append(buf, static_cast<size_t>(n));
    }
    close(src);
    cached_bytes.swap(bytes);
    cached_path = path;
  }
  int mfd = memfd_create("nsbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mfd < 0) return fail("memfd_create");
  for (size_t off = 0; off < cached_bytes.size();) {
    ssize_t w = NSBOX_RETRY(write(mfd, cached_bytes.data() + off, cached_bytes.size() - off));
    if (w < 0) {
      close(mfd);
      return fail("write");
    }
    off += static_cast<size_t>(w);
  }
  if (fchmod(mfd, 0555) != 0 ||
      fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    close(mfd);
    return fail("fcntl");
  }
  return Napi::Number::New(env, mfd);
}

// pidfdOpen(pid): a Process for an existing pid (a machine's PID 1 found from its state), or an errno.
Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = nsbox::sys::pidfd_open(info[0].As<Napi::Number>().Int32Value(), 0);
  if (fd < 0) return Napi::Number::New(env, errno);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  Napi::Object proc = Process::ctor->New({});
  Process::Unwrap(proc)->Adopt(fd, -1);
  return proc;
}

// socketpair(): [a, b], AF_UNIX SOCK_STREAM, close-on-exec.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    Napi::Error::New(env, std::string("socketpair: ") + strerror(errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, sv[0]));
  a.Set(1u, Napi::Number::New(env, sv[1]));
  return a;
}

// recvFd(sock, ptyMaster): the fd passed with SCM_RIGHTS (close-on-exec), or -errno. Non-blocking.
// With ptyMaster, anything but a pty master is closed and -EPROTO.
Napi::Value RecvFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock = info[0].As<Napi::Number>().Int32Value();
  char byte;
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof(u.buf);
  ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n <= 0) return Napi::Number::New(env, n == 0 ? -EPIPE : -errno);
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS) return Napi::Number::New(env, -EPROTO);
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(fd));
  // Only a pty master is a pty master: an fd passed by anything else (a machine's exec sends from
  // inside the machine, where its root can send one of its own) is refused. TIOCGPTN answers on a
  // master only.
  unsigned int ptn;
  if (info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value() && ioctl(fd, TIOCGPTN, &ptn) != 0) {
    close(fd);
    return Napi::Number::New(env, -EPROTO);
  }
  return Napi::Number::New(env, fd);
}

// setWinsize(fd, cols, rows): 0 or an errno.
Napi::Value SetWinsize(const Napi::CallbackInfo& info) {
  struct winsize ws = {};
  ws.ws_col = static_cast<unsigned short>(info[1].As<Napi::Number>().Uint32Value());
  ws.ws_row = static_cast<unsigned short>(info[2].As<Napi::Number>().Uint32Value());
  int rc = ioctl(info[0].As<Napi::Number>().Int32Value(), TIOCSWINSZ, &ws);
  return Napi::Number::New(info.Env(), rc == 0 ? 0 : errno);
}

// Test support only: applies a seccomp filter (sock_filter[] bytes) to this whole process (all
// threads, with no_new_privs), e.g. to make openat2 answer ENOSYS and exercise the fallbacks.
// Never called by the library itself: it changes process-wide state for good.
Napi::Value TestFilterProcess(const Napi::CallbackInfo& info) {
  Napi::Buffer<uint8_t> b = info[0].As<Napi::Buffer<uint8_t>>();
  struct sock_fprog prog;
  prog.len = static_cast<unsigned short>(b.Length() / 8);
  prog.filter = reinterpret_cast<struct sock_filter*>(b.Data());
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Napi::Number::New(info.Env(), errno);
  long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
  return Napi::Number::New(info.Env(), rc == 0 ? 0 : (rc > 0 ? ESRCH : errno));
}

// setCloexec(fd, on): for tests that need an fd the way a careless native module leaves it.
Napi::Value SetCloexec(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  bool on = info[1].As<Napi::Boolean>().Value();
  int rc = fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
  return Napi::Number::New(info.Env(), rc == 0 ? 0 : errno);
}

// netnsReserveState() and ipcnsReserveState(): { fds, busy, target, failures } of the network and
// IPC namespace reserves (reserve.cc), for leak checks and tests. busy: the maker thread is making
// one of either kind.
Napi::Value ReserveState(const Napi::CallbackInfo& info, void (*get)(std::vector<int>*, bool*, int*, int*)) {
  Napi::Env env = info.Env();
  std::vector<int> fds;
  bool busy = false;
  int target = 0, failures = 0;
  get(&fds, &busy, &target, &failures);
  Napi::Object o = Napi::Object::New(env);
  Napi::Array a = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
  o.Set("fds", a);
  o.Set("busy", Napi::Boolean::New(env, busy));
  o.Set("target", Napi::Number::New(env, target));
  o.Set("failures", Napi::Number::New(env, failures));
  return o;
}
Napi::Value NetnsReserveState(const Napi::CallbackInfo& info) { return ReserveState(info, nsbox_glue::netns_state); }
Napi::Value IpcnsReserveState(const Napi::CallbackInfo& info) { return ReserveState(info, nsbox_glue::ipcns_state); }

// mntTemplateState(): { fd, tried, errno } of the mount namespace template (reserve.cc), for leak
// checks and tests.
Napi::Value MntTemplateState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1, err = 0;
  bool tried = false;
  nsbox_glue::mnt_template_state(&fd, &tried, &err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, fd));
  o.Set("tried", Napi::Boolean::New(env, tried));
  o.Set("errno", Napi::Number::New(env, err));
  return o;
}

// dumpable(): prctl(PR_GET_DUMPABLE) of this process (tests: clones leave Node as it was).
Napi::Value Dumpable(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
}

// devicePolicyAvailable(): 0 when the device allow-list can be loaded here, else -errno.
Napi::Value DevicePolicyAvailable(const Napi::CallbackInfo& info) {
  int fd = nsbox::device_policy_fd();
  return Napi::Number::New(info.Env(), fd >= 0 ? 0 : -errno);
}

// allowedDevices(): the allow-list as [{ major, minor (-1: any), name }] (devices.cc).
Napi::Value AllowedDevices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env, nsbox::kNumAllowedDevices);
  for (int i = 0; i < nsbox::kNumAllowedDevices; i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("major", nsbox::kAllowedDevices[i].major);
    o.Set("minor", nsbox::kAllowedDevices[i].minor);
    o.Set("name", nsbox::kAllowedDevices[i].name);
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  nsbox::SyscallReport r = nsbox::probe_syscalls();
  Napi::Object o = Napi::Object::New(env);
  o.Set("clone3", r.clone3);
  o.Set("pidfd", r.pidfd);
  o.Set("closeRange", r.close_range);
  o.Set("openat2", r.openat2);
  o.Set("newMountApi", r.new_mount_api);
  o.Set("mountSetattr", r.mount_setattr);
  return o;
}

// stepTable: { steps: [[name, syscall | null, path | null], ...] indexed by step number,
// calls: [[step, first, count, syscall | null, path | null], ...] } from steps.h, the table that
// scripts/gen-steps.js writes to lib/steps.ts and lib/native.ts checks at load.
Napi::Value StrOrNull(Napi::Env env, const char* s) { return s ? Napi::Value(Napi::String::New(env, s)) : env.Null(); }
Napi::Object StepTable(Napi::Env env) {
  Napi::Array steps = Napi::Array::New(env);
  Napi::Array calls = Napi::Array::New(env);
#define NSBOX_STEP_ROW(id, num, name, syscall, path)                 \
  {                                                                 \
    Napi::Array row = Napi::Array::New(env, 3);                     \
    row.Set(0u, Napi::String::New(env, name));                      \
    row.Set(1u, StrOrNull(env, syscall));                           \
    row.Set(2u, StrOrNull(env, path));                              \
    steps.Set(static_cast<uint32_t>(num), row);                     \
  }
  NSBOX_STEPS(NSBOX_STEP_ROW)
#undef NSBOX_STEP_ROW
#define NSBOX_CALL_ROW(step, id, first, count, syscall, path)        \
  {                                                                 \
    Napi::Array row = Napi::Array::New(env, 5);                     \
    row.Set(0u, Napi::Number::New(env, nsbox::STEP_##step));        \
    row.Set(1u, Napi::Number::New(env, first));                     \
    row.Set(2u, Napi::Number::New(env, count));                     \
    row.Set(3u, StrOrNull(env, syscall));                           \
    row.Set(4u, StrOrNull(env, path));                              \
    calls.Set(calls.Length(), row);                                 \
  }
  NSBOX_STEP_CALLS(NSBOX_CALL_ROW)
#undef NSBOX_CALL_ROW
  Napi::Object t = Napi::Object::New(env);
  t.Set("steps", steps);
  t.Set("calls", calls);
  return t;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Process", Process::Init(env));
  exports.Set("spawn", Napi::Function::New(env, Spawn));
  exports.Set("spawnAsync", Napi::Function::New(env, SpawnAsync));
  exports.Set("compileOps", Napi::Function::New(env, CompileOps));
  exports.Set("releaseOps", Napi::Function::New(env, ReleaseOps));
  exports.Set("readFiles", Napi::Function::New(env, ReadFiles));
  exports.Set("pipe", Napi::Function::New(env, Pipe));
  exports.Set("finishSpawn", Napi::Function::New(env, FinishSpawn));
  exports.Set("finishSpawnAsync", Napi::Function::New(env, FinishWatch::Start));
  exports.Set("cancelFinishSpawn", Napi::Function::New(env, FinishWatch::Cancel));
  exports.Set("collectOutput", Napi::Function::New(env, OutputCollector::Start));
  exports.Set("sealedMemfd", Napi::Function::New(env, SealedMemfd));
  exports.Set("probe", Napi::Function::New(env, Probe));
  exports.Set("devicePolicyAvailable", Napi::Function::New(env, DevicePolicyAvailable));
  exports.Set("allowedDevices", Napi::Function::New(env, AllowedDevices));
  exports.Set("netnsReserveState", Napi::Function::New(env, NetnsReserveState));
  exports.Set("ipcnsReserveState", Napi::Function::New(env, IpcnsReserveState));
  exports.Set("mntTemplateState", Napi::Function::New(env, MntTemplateState));
  exports.Set("dumpable", Napi::Function::New(env, Dumpable));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexec));
  exports.Set("testFilterProcess", Napi::Function::New(env, TestFilterProcess));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair));
  exports.Set("recvFd", Napi::Function::New(env, RecvFd));
  exports.Set("setWinsize", Napi::Function::New(env, SetWinsize));
  nsbox_glue::InitNet(env, exports);
  Napi::Object c = Napi::Object::New(env);
#define K(name) c.Set(#name, Napi::Number::New(env, static_cast<double>(name)))
  K(CLONE_NEWNS);
  K(CLONE_NEWPID);
  K(CLONE_NEWUTS);
  K(CLONE_NEWIPC);
  K(CLONE_NEWNET);
  K(CLONE_NEWCGROUP);
  K(CLONE_NEWUSER);
  K(MS_RDONLY);
  K(MS_NOSUID);
  K(MS_NODEV);
  K(MS_NOEXEC);
  K(MS_BIND);
  K(MS_REC);
  K(MS_PRIVATE);
  K(MS_STRICTATIME);
  K(MS_RELATIME);
  K(MS_NOATIME);
  K(RLIMIT_NOFILE);
  K(RLIMIT_CORE);
  K(RLIMIT_NPROC);
  K(RLIMIT_STACK);
  K(RLIMIT_AS);
  K(RLIMIT_CPU);
  K(RLIMIT_FSIZE);
  K(RLIMIT_MEMLOCK);
  K(RLIMIT_DATA);
  K(RLIMIT_MSGQUEUE);
  K(RLIMIT_NICE);
  K(RLIMIT_RTPRIO);
  K(RLIMIT_RTTIME);
  K(RLIMIT_SIGPENDING);
  K(RLIMIT_LOCKS);
#undef K
  c.Set("OP_MOUNT", Napi::Number::New(env, nsbox::OP_MOUNT));
  c.Set("OP_REMOUNT", Napi::Number::New(env, nsbox::OP_REMOUNT));
  c.Set("OP_MKDIR", Napi::Number::New(env, nsbox::OP_MKDIR));
  c.Set("OP_TOUCH", Napi::Number::New(env, nsbox::OP_TOUCH));
  c.Set("OP_SYMLINK", Napi::Number::New(env, nsbox::OP_SYMLINK));
  c.Set("OP_MKNOD", Napi::Number::New(env, nsbox::OP_MKNOD));
  c.Set("STEP_COUNT", Napi::Number::New(env, nsbox::STEP_COUNT));
  exports.Set("stepTable", StepTable(env));
  c.Set("STDIO_DEV_NULL", Napi::Number::New(env, nsbox::kStdioDevNull));
  c.Set("WHERE_DST_IN_ROOT", Napi::Number::New(env, nsbox::WHERE_DST_IN_ROOT));
  c.Set("WHERE_SRC_IN_ROOT", Napi::Number::New(env, nsbox::WHERE_SRC_IN_ROOT));
  c.Set("WHERE_OPEN_ROOT", Napi::Number::New(env, nsbox::WHERE_OPEN_ROOT));
  c.Set("WHERE_SRC_BENEATH", Napi::Number::New(env, nsbox::WHERE_SRC_BENEATH));
  exports.Set("constants", c);
  return exports;
}

}  // namespace

NODE_API_MODULE(nsbox, Init)
