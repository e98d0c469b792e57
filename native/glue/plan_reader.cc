// plan_reader.cc: reads the JS plan (NativePlan in lib/native.ts) into nsbox::Plan (BuildPlan), and
// compiles a plan's ops once for many starts (compileOps). Checks shapes and ranges only: what the
// plan says was decided in lib/.
#include "plan_reader.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <errno.h>
#include <unistd.h>

#include "../core/devices.h"
#include "../core/fsops.h"
#include "../core/syscalls.h"

namespace nsbox_glue {

bool ThrowType(Napi::Env env, const char* what) {
  // A getter or proxy trap of the plan may already have thrown: keep that exception.
  if (!env.IsExceptionPending())
    Napi::TypeError::New(env, std::string("nsbox native plan: ") + what).ThrowAsJavaScriptException();
  return false;
}

namespace {

// Reads o[key]; false (exception pending) when the read itself threw.
bool Read(Napi::Object o, const char* key, Napi::Value* v) {
  *v = o.Get(key);
  return !o.Env().IsExceptionPending() && !v->IsEmpty();
}

bool ReadIndex(Napi::Array a, uint32_t i, Napi::Value* v) {
  *v = a.Get(i);
  return !a.Env().IsExceptionPending() && !v->IsEmpty();
}

}  // namespace

bool IsIntIn(Napi::Value v, double lo, double hi, double* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<int64_t>(d))) return false;
  *out = d;
  return true;
}

namespace {

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
    if (!GetInt(o, "where", 0, 511, &d)) return false;
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
    if ((op.where & nsbox::WHERE_OPTIONAL) &&
        (!(op.where & nsbox::WHERE_DST_IN_ROOT) || (op.kind != nsbox::OP_MOUNT && op.kind != nsbox::OP_REMOUNT)))
      return ThrowType(env, "ops[].where (WHERE_OPTIONAL: a mount or remount of a container path)");
    if ((op.where & nsbox::WHERE_SRC_BENEATH) &&
        (!op.src || !op.data || op.kind != nsbox::OP_MOUNT || !(op.flags & nsbox::kMsBind) || (op.where & nsbox::WHERE_SRC_IN_ROOT)))
      return ThrowType(env, "ops[].where (WHERE_SRC_BENEATH: a bind with src and data)");
    if ((op.where & nsbox::WHERE_SRC_DETACHED) &&
        (!op.src || op.kind != nsbox::OP_MOUNT || !(op.flags & nsbox::kMsBind) || !(op.where & nsbox::WHERE_OPEN_ROOT) || op.dev > 2147483647u ||
         (op.where & (nsbox::WHERE_SRC_IN_ROOT | nsbox::WHERE_SRC_BENEATH | nsbox::WHERE_SRC_FD))))
      return ThrowType(env, "ops[].where (WHERE_SRC_DETACHED: the root's bind with src and its fd in dev)");
    if ((op.where & nsbox::WHERE_SRC_FD) &&
        (!op.src || op.kind != nsbox::OP_MOUNT || !(op.flags & nsbox::kMsBind) || op.dev > 2147483647u ||
         (op.where & (nsbox::WHERE_SRC_IN_ROOT | nsbox::WHERE_SRC_BENEATH))))
      return ThrowType(env, "ops[].where (WHERE_SRC_FD: a bind with src and its fd in dev)");
    if ((op.where & nsbox::WHERE_DST_ROOT_MNT) &&
        (!(op.where & nsbox::WHERE_DST_IN_ROOT) || (op.kind != nsbox::OP_MKDIR && op.kind != nsbox::OP_TOUCH)))
      return ThrowType(env, "ops[].where (WHERE_DST_ROOT_MNT: a mkdir or touch of a container path)");
    if ((op.where & nsbox::WHERE_DST_NOFOLLOW) &&
        (!(op.where & nsbox::WHERE_DST_IN_ROOT) || (op.kind != nsbox::OP_MOUNT && op.kind != nsbox::OP_REMOUNT)))
      return ThrowType(env, "ops[].where (WHERE_DST_NOFOLLOW: a mount or remount of a container path)");
  }
  return true;
}

}  // namespace

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
    // Or the fd of a program devicePolicyLoad made with the container's own devices added (lib/
    // owns it and closes it after the spawn: the attachment keeps the program).
    double fd;
    if (!v.IsUndefined() && !v.IsBoolean() && !IsIntIn(v, 0, 2147483647.0, &fd)) return ThrowType(js.Env(), "devicePolicy");
    p.device_prog_fd = -1;
    if (v.IsNumber()) {
      p.device_prog_fd = static_cast<int>(fd);
    } else if (v.IsBoolean() && v.As<Napi::Boolean>().Value()) {
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
    // A detached root's fd is owned by a compiled list (compileOps), never passed per plan.
    for (const Op& op : st->ops)
      if (op.where & nsbox::WHERE_SRC_DETACHED) return ThrowType(js.Env(), "ops[].where (WHERE_SRC_DETACHED: compiled lists only)");
    p.ops = st->ops.data();
    p.n_ops = st->ops.size();
  }
  {
    // opsAfter: this start's own ops after the (compiled, shared) list: the binds of its generated
    // /etc files, whose source directory is its own. Joined into one list the child runs.
    Napi::Value av;
    if (!Read(js, "opsAfter", &av)) return false;
    if (!av.IsUndefined() && !(av.IsArray() && av.As<Napi::Array>().Length() == 0)) {
      std::vector<Op> after;
      if (!ConvertOps(js.Env(), av, st, &after)) return false;
      if (p.n_ops + after.size() > 4096) return ThrowType(js.Env(), "opsAfter");
      std::vector<Op> joined(p.ops, p.ops + p.n_ops);
      joined.insert(joined.end(), after.begin(), after.end());
      st->ops.swap(joined);
      p.ops = st->ops.data();
      p.n_ops = st->ops.size();
    }
  }
  // Test support (lib/env.ts reads NSBOX_FORCE_PATH_WALK and NSBOX_FORK_CLONE into the plan): the
  // resolver used where openat2 is missing, and the fork-style clone.
  if (!GetBool(js, "walkOnly", &b)) return false;
  p.walk_only = b;
  if (!GetBool(js, "forkClone", &b)) return false;
  p.fork_clone = b;

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
  // Test only (NSBOX_TEST_FAULT, lib/env.ts): a fault point (plan.h, fault_at). Optional fields.
  {
    Napi::Value fs, fi, fe;
    double step = -1, index = 0, err = 0;
    if (!Read(js, "faultStep", &fs) || !Read(js, "faultIndex", &fi) || !Read(js, "faultErrno", &fe)) return false;
    if (!fs.IsUndefined() && !IsIntIn(fs, -1, nsbox::STEP_COUNT - 1, &step)) return ThrowType(js.Env(), "faultStep");
    if (!fi.IsUndefined() && !IsIntIn(fi, -2147483648.0, 2147483647.0, &index)) return ThrowType(js.Env(), "faultIndex");
    if (!fe.IsUndefined() && !IsIntIn(fe, -64, 4095, &err)) return ThrowType(js.Env(), "faultErrno");
    p.fault_step = static_cast<int>(step);
    p.fault_index = static_cast<int>(index);
    p.fault_errno = static_cast<int>(err);
    p.fault_node_pid = err < 0 ? static_cast<int>(getpid()) : 0;  // the kill mode: this process
  }
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

int StatusRead(Napi::Object plan) {
  Napi::Value sr = plan.Get("statusRead");
  double srd;
  if (!plan.Env().IsExceptionPending() && IsIntIn(sr, 0, 2147483647.0, &srd)) return static_cast<int>(srd);
  return -1;
}

CompiledOps::~CompiledOps() {
  if (detached_fd >= 0) close(detached_fd);
}

namespace {

// compileOps(ops[, detachedFd]): converts a plan's ops once; the id goes in later plans as
// opsCompiled. detachedFd: the fd of a WHERE_SRC_DETACHED root op, which the list then owns (closed
// with it; also when the conversion fails).
Napi::Value CompileOps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = std::make_shared<CompiledOps>();
  double dfd;
  if (info.Length() > 1 && IsIntIn(info[1], 0, 2147483647.0, &dfd)) c->detached_fd = static_cast<int>(dfd);
  if (!ConvertOps(env, info[0], c.get(), &c->ops)) return env.Undefined();
  for (const Op& op : c->ops) {
    if ((op.where & nsbox::WHERE_SRC_DETACHED) && (c->detached_fd < 0 || op.dev != static_cast<uint64_t>(c->detached_fd))) {
      ThrowType(env, "ops[].where (WHERE_SRC_DETACHED: its fd must be the list's detachedFd)");
      return env.Undefined();
    }
  }
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

// The options of op.data, split on the commas that lib/fsops.ts overlayPath did not escape.
std::vector<std::pair<std::string, std::string>> MountOptions(const char* data) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string cur;
  auto flush = [&]() {
    if (cur.empty()) return;
    size_t eq = cur.find('=');
    out.emplace_back(cur.substr(0, eq), eq == std::string::npos ? std::string() : cur.substr(eq + 1));
    cur.clear();
  };
  for (const char* c = data ? data : ""; *c; c++) {
    if (*c == '\\' && c[1]) {
      cur += *c++;
      cur += *c;
    } else if (*c == ',') {
      flush();
    } else {
      cur += *c;
    }
  }
  flush();
  return out;
}

// prepareImageRoot(ops): an image's read-only root made once, as a detached mount (an fd the
// caller hands to compileOps). ops: the overlay root as lib/fsops.ts plans it (the upper layer's
// tmpfs on a host directory, the entries made in that layer, the overlay), made here without
// mounting anything anywhere: the tmpfs by fsmount, the entries relative to its fd (modes as
// planned), and the overlay with that upper directory as its top lower layer and no upper layer
// (a read-only superblock: nothing can write through any clone of it). Returns the fd, or -errno
// with the index of the op that failed ({ errno, index }).
Napi::Value PrepareImageRoot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CompiledOps c;
  if (!ConvertOps(env, info[0], &c, &c.ops)) return env.Undefined();
  const std::vector<Op>& ops = c.ops;
  auto failed = [&](int err, size_t index) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("errno", Napi::Number::New(env, err));
    o.Set("index", Napi::Number::New(env, static_cast<double>(index)));
    return o;
  };
  if (ops.size() < 3 || ops[0].kind != nsbox::OP_MOUNT || ops[0].where != 0 || !ops[0].fstype || strcmp(ops[0].fstype, "tmpfs") != 0 || !ops[0].dst ||
      ops.back().kind != nsbox::OP_MOUNT || !(ops.back().where & nsbox::WHERE_OPEN_ROOT) || !ops.back().fstype || strcmp(ops.back().fstype, "overlay") != 0) {
    ThrowType(env, "prepareImageRoot(ops): an overlay root's ops");
    return env.Undefined();
  }
  const std::string dir = ops[0].dst;
  auto rest_of = [&](const char* p) -> const char* {
    if (!p || strncmp(p, dir.c_str(), dir.size()) != 0 || p[dir.size()] != '/' || !p[dir.size() + 1]) return nullptr;
    return p + dir.size() + 1;
  };
  int fs = nsbox::sys::fsopen("tmpfs", nsbox::sys::kFsopenCloexec);
  if (fs < 0) return failed(errno, 0);
  int rc = nsbox::sys::fsconfig(fs, nsbox::sys::kFsconfigSetString, "source", "tmpfs", 0);
  for (const auto& [k, v] : MountOptions(ops[0].data)) {
    if (rc != 0) break;
    rc = nsbox::sys::fsconfig(fs, v.empty() ? nsbox::sys::kFsconfigSetFlag : nsbox::sys::kFsconfigSetString, k.c_str(), v.empty() ? nullptr : v.c_str(), 0);
  }
  if (rc == 0) rc = nsbox::sys::fsconfig(fs, nsbox::sys::kFsconfigCmdCreate, nullptr, nullptr, 0);
  int up = rc == 0 ? nsbox::sys::fsmount(fs, nsbox::sys::kFsmountCloexec, static_cast<unsigned>(nsbox::sys::kMountAttrNosuid | nsbox::sys::kMountAttrNodev)) : -1;
  int e = errno;
  close(fs);
  if (up < 0) return failed(e, 0);
  std::string upper;
  for (size_t i = 1; i + 1 < ops.size(); i++) {
    const Op& op = ops[i];
    const char* rel = rest_of(op.dst);
    if (op.where != 0 || !rel || (op.kind != nsbox::OP_MKDIR && op.kind != nsbox::OP_TOUCH)) {
      close(up);
      return failed(EINVAL, i);
    }
    int r;
    if (op.kind == nsbox::OP_MKDIR) {
      r = mkdirat(up, rel, op.mode);
    } else {
      int fd = openat(up, rel, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, op.mode);
      r = fd < 0 ? -1 : close(fd);
    }
    // The modes as planned, not as this process's umask left them.
    if (r == 0) r = fchmodat(up, rel, op.mode & 07777, 0);
    if (r != 0) {
      e = errno;
      close(up);
      return failed(e, i);
    }
  }
  const Op& ov = ops.back();
  const size_t last = ops.size() - 1;
  int o = nsbox::sys::fsopen(ov.fstype, nsbox::sys::kFsopenCloexec);
  if (o < 0) {
    e = errno;
    close(up);
    return failed(e, last);
  }
  rc = nsbox::sys::fsconfig(o, nsbox::sys::kFsconfigSetString, "source", ov.src ? ov.src : "overlay", 0);
  for (const auto& [k, v] : MountOptions(ov.data)) {
    if (rc != 0) break;
    if (k == "workdir") continue;
    std::string val = v;
    std::string key = k;
    if (k == "upperdir") {
      // The upper directory: the top lower layer, named through the tmpfs's fd.
      const char* rel = rest_of(v.c_str());
      if (!rel) {
        rc = -1;
        errno = EINVAL;
        break;
      }
      upper = "/proc/self/fd/" + std::to_string(up) + "/" + rel;
      continue;
    }
    if (k == "lowerdir") continue;  // below, with the upper directory on top
    rc = nsbox::sys::fsconfig(o, val.empty() ? nsbox::sys::kFsconfigSetFlag : nsbox::sys::kFsconfigSetString, key.c_str(), val.empty() ? nullptr : val.c_str(), 0);
  }
  if (rc == 0) {
    std::string lower;
    for (const auto& [k, v] : MountOptions(ov.data))
      if (k == "lowerdir") lower = v;
    if (upper.empty() || lower.empty()) {
      rc = -1;
      errno = EINVAL;
    } else {
      // (The upper path is /proc/self/fd/N/...: nothing in it to escape.)
      std::string all = upper + ":" + lower;
      std::string buf(all.size() + 1, '\0');
      rc = nsbox::fsconfig_lowerdirs(o, all.c_str(), buf.data(), buf.size());
    }
  }
  if (rc == 0) rc = nsbox::sys::fsconfig(o, nsbox::sys::kFsconfigCmdCreate, nullptr, nullptr, 0);
  int m = rc == 0 ? nsbox::sys::fsmount(o, nsbox::sys::kFsmountCloexec, static_cast<unsigned>(nsbox::sys::kMountAttrNodev | nsbox::sys::kMountAttrRdonly)) : -1;
  e = errno;
  close(o);
  close(up);  // the overlay holds its own reference to the layer
  if (m < 0) return failed(e, last);
  return Napi::Number::New(env, m);
}

}  // namespace

void InitPlanReader(Napi::Env env, Napi::Object exports) {
  exports.Set("prepareImageRoot", Napi::Function::New(env, PrepareImageRoot));
  exports.Set("compileOps", Napi::Function::New(env, CompileOps));
  exports.Set("releaseOps", Napi::Function::New(env, ReleaseOps));
}

}  // namespace nsbox_glue
