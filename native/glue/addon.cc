// addon.cc: the N-API module of nsbox: spawn and spawnAsync (the plan read by plan_reader.cc, the
// namespaces made ahead and the mount template put in, the core spawner called), the host probe,
// the device allow-list and the constants lib/ shares with native/core (steps.h's table among
// them). It makes no decision of its own: validation and policy live in TypeScript, system calls in
// native/core. The rest of the glue: plan_reader.cc, watchers.cc (the event loop), fds.cc,
// test_hooks.cc, net.cc, reserve.cc.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include <napi.h>

#include "../core/devices.h"
#include "../core/plan.h"
#include "../core/probe.h"
#include "../core/spawn.h"
#include "glue.h"
#include "net.h"
#include "plan_reader.h"
#include "reserve.h"

namespace nsbox_glue {

namespace {

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
  reserve_take(net ? &r.net : nullptr, ipc ? &r.ipc : nullptr);
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
  if (p.n_ops == 0) return;
  // An image's overlay root (fsops.ts finishRoot): the tmpfs of its upper layer on a host
  // directory, the entries made in that layer, then the overlay as the root. In the template they
  // are detached mounts (mnt_template.cc, detached_overlay_root), where the kernel allows that.
  size_t first = 0;
  bool overlay = false;
  if (!(p.ops[0].where & nsbox::WHERE_OPEN_ROOT)) {
    const Op& t = p.ops[0];
    if (t.where != 0 || t.kind != nsbox::OP_MOUNT || nsbox::is_host_bind(t) || !t.fstype || strcmp(t.fstype, "tmpfs") != 0 || !t.src ||
        !t.dst || (t.flags & ~nsbox::kTemplatePlainFlags) || (t.data && strlen(t.data) >= nsbox::kMaxTemplateData))
      return;
    const size_t dl = strlen(t.dst);
    for (first = 1; first < p.n_ops && p.ops[first].where == 0; first++) {
      const Op& op = p.ops[first];
      if ((op.kind != nsbox::OP_MKDIR && op.kind != nsbox::OP_TOUCH) || !op.dst || strncmp(op.dst, t.dst, dl) != 0 || op.dst[dl] != '/' ||
          strstr(op.dst + dl, "/..") || strstr(op.dst + dl, "//"))
        return;
    }
    if (first == p.n_ops || !(p.ops[first].where & nsbox::WHERE_OPEN_ROOT)) return;
    overlay = true;
  }
  size_t binds = 0;
  for (size_t i = first; i < p.n_ops; i++) {
    const Op& op = p.ops[i];
    const bool host_bind = nsbox::is_host_bind(op);
    if (i > first && !(op.where & nsbox::WHERE_DST_IN_ROOT)) return;
    if (host_bind && ++binds > nsbox::kMaxTemplateTrees) return;
    // The root: a host bind, or a new filesystem that fsopen/fsmount can make (mnt_template.cc,
    // detached_fs), or the overlay of an image (the whole page of options it may have).
    if (i == first && (overlay ? host_bind || op.kind != nsbox::OP_MOUNT || !op.fstype || strcmp(op.fstype, "overlay") != 0 || !op.src ||
                                     (op.flags & ~nsbox::kTemplatePlainFlags) || (op.data && strlen(op.data) >= nsbox::kMaxOverlayData)
                               : !host_bind && (op.kind != nsbox::OP_MOUNT || !op.fstype || !op.src || (op.flags & ~nsbox::kTemplatePlainFlags) ||
                                                (op.data && strlen(op.data) >= nsbox::kMaxTemplateData))))
      return;
  }
  int fd = mnt_template();
  if (fd < 0) return;
  if (overlay && !mnt_template_overlay()) return;
  p.mnt_template_fd = fd;
  p.clone_flags &= ~static_cast<uint64_t>(CLONE_NEWNS);
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
  // The read end of the init's status pipe is read by the watcher; dup it so JS can close its copy.
  int status_fd = status_read >= 0 ? fcntl(status_read, F_DUPFD_CLOEXEC, 3) : -1;
  if (status_fd >= 0) fcntl(status_fd, F_SETFL, O_NONBLOCK);
  Napi::Object proc = NewProcess(env, out.pidfd, status_fd);
  res.Set("pid", Napi::Number::New(env, out.pid));
  res.Set("process", proc);
  if (out.err_fd >= 0) res.Set("errFd", Napi::Number::New(env, out.err_fd));
  if (out.waiting) res.Set("waiting", Napi::Boolean::New(env, true));
  if (out.entering) res.Set("entering", Napi::Boolean::New(env, true));
  return res;
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
    // (The base's fault point, test only: as if another process had just removed the base.)
    const nsbox::Plan& p = st_->plan;
    const bool base_fault = p.fault_step == nsbox::STEP_CGROUP_MAKE && p.fault_index == nsbox::CGROUP_MAKE_BASE;
    for (int attempt = 0;; attempt++) {
      if (!base_fault && !nsbox::fault_at(&p, nsbox::STEP_CGROUP_MAKE, nsbox::CGROUP_MAKE_DIR) && mkdir(dir, 0755) == 0) break;
      int e = base_fault ? ENOENT : errno;
      if (e == ENOENT && attempt < 3 && !st_->cgroup_base.empty()) {
        if (!nsbox::fault_at(&st_->plan, nsbox::STEP_CGROUP_MAKE, nsbox::CGROUP_MAKE_BASE) &&
            (mkdir(st_->cgroup_base.c_str(), 0755) == 0 || errno == EEXIST))
          continue;
        out_.error = {nsbox::STEP_CGROUP_MAKE, errno, nsbox::CGROUP_MAKE_BASE, nsbox::kErrorMagic};
        return -1;
      }
      out_.error = {nsbox::STEP_CGROUP_MAKE, e, nsbox::CGROUP_MAKE_DIR, nsbox::kErrorMagic};
      return -1;
    }
    int fd = nsbox::fault_at(&st_->plan, nsbox::STEP_CGROUP_MAKE, nsbox::CGROUP_MAKE_OPEN) ? -1 : open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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

// configure(netnsReserve, ipcnsReserve, mntTemplate): the addon's settings, as lib/env.ts reads them
// from the environment; lib/native.ts calls it once, right after loading the addon.
Napi::Value Configure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsBoolean()) {
    Napi::TypeError::New(env, "configure(netnsReserve: number, ipcnsReserve: number, mntTemplate: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  nsbox_glue::reserve_configure(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(),
                                info[2].As<Napi::Boolean>().Value());
  return env.Undefined();
}

// devicePolicyAvailable(): 0 when the device allow-list can be loaded here, else -errno.
Napi::Value DevicePolicyAvailable(const Napi::CallbackInfo& info) {
  int fd = nsbox::device_policy_fd();
  return Napi::Number::New(info.Env(), fd >= 0 ? 0 : -errno);
}

// devicePolicyLoad([block, major, minor, access, ...]): a program with the fixed allow-list and these
// devices added (a container's `devices`): its fd (lib/ closes it after the spawn), or -errno.
Napi::Value DevicePolicyLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    ThrowType(env, "devicePolicyLoad: an array");
    return env.Undefined();
  }
  Napi::Array a = info[0].As<Napi::Array>();
  if (a.Length() % 4 != 0 || a.Length() / 4 > static_cast<uint32_t>(nsbox::kMaxExtraDevices)) {
    ThrowType(env, "devicePolicyLoad: [block, major, minor, access] at most 64 times");
    return env.Undefined();
  }
  nsbox::ExtraDevice extra[nsbox::kMaxExtraDevices];
  int n = static_cast<int>(a.Length() / 4);
  for (int k = 0; k < n; k++) {
    double v[4];
    for (int j = 0; j < 4; j++) {
      Napi::Value x = a.Get(static_cast<uint32_t>(k * 4 + j));
      if (!IsIntIn(x, 0, j == 3 ? 7 : 4294967295.0, &v[j])) {
        ThrowType(env, "devicePolicyLoad: a number out of range");
        return env.Undefined();
      }
    }
    extra[k] = {v[0] != 0, static_cast<unsigned>(v[1]), static_cast<unsigned>(v[2]), static_cast<unsigned>(v[3])};
  }
  int fd = nsbox::device_policy_load(extra, n);
  return Napi::Number::New(env, fd >= 0 ? fd : -errno);
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

// tryNamespaces(flags, procMode, cgroupProcsFd): what a throwaway child with those namespaces
// could do (probe.h, try_namespaces; procMode a TrialProc): { stage, errno }; stage 0: all of it.
Napi::Value TryNamespaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto flags = static_cast<unsigned long>(info[0].As<Napi::Number>().Int64Value());
  const int proc_mode = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : nsbox::TRIAL_PROC_NOTHING;
  const int fd = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
  nsbox::TrialResult r = nsbox::try_namespaces(flags, proc_mode, fd);
  Napi::Object o = Napi::Object::New(env);
  o.Set("stage", r.stage);
  o.Set("errno", r.err);
  return o;
}

// stepTable: { steps: [[name, syscall | null, path | null], ...] indexed by step number,
// calls: [[step, first, count, syscall | null, path | null], ...], opCalls: [syscall | null, ...]
// indexed by NSBOX_OP_CALLS number } from steps.h, the table that
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
  Napi::Array op_calls = Napi::Array::New(env);
  Napi::Array op_call_ids = Napi::Array::New(env);
#define NSBOX_OP_CALL_ROW(id, num, syscall)                              \
  op_calls.Set(static_cast<uint32_t>(num), StrOrNull(env, syscall));   \
  op_call_ids.Set(static_cast<uint32_t>(num), Napi::String::New(env, #id));
  NSBOX_OP_CALLS(NSBOX_OP_CALL_ROW)
#undef NSBOX_OP_CALL_ROW
  Napi::Object t = Napi::Object::New(env);
  t.Set("steps", steps);
  t.Set("calls", calls);
  t.Set("opCalls", op_calls);
  t.Set("opCallIds", op_call_ids);
  t.Set("opCallShift", Napi::Number::New(env, NSBOX_OP_CALL_SHIFT));
  return t;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("spawn", Napi::Function::New(env, Spawn));
  exports.Set("spawnAsync", Napi::Function::New(env, SpawnAsync));
  exports.Set("finishSpawn", Napi::Function::New(env, FinishSpawn));
  exports.Set("probe", Napi::Function::New(env, Probe));
  exports.Set("tryNamespaces", Napi::Function::New(env, TryNamespaces));
  // mntTemplateOverlay(): whether an image's root can be made in the mount template, the template
  // made first if it was not (lib/fsops.ts: a prepared image root needs both).
  exports.Set("mntTemplateOverlay", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::Boolean::New(info.Env(), nsbox_glue::mnt_template_overlay());
  }));
  exports.Set("configure", Napi::Function::New(env, Configure));
  exports.Set("devicePolicyAvailable", Napi::Function::New(env, DevicePolicyAvailable));
  exports.Set("allowedDevices", Napi::Function::New(env, AllowedDevices));
  exports.Set("devicePolicyLoad", Napi::Function::New(env, DevicePolicyLoad));
  InitPlanReader(env, exports);
  InitWatchers(env, exports);
  InitFds(env, exports);
  InitTestHooks(env, exports);
  InitNet(env, exports);
  InitFsAt(env, exports);
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
  K(RLIMIT_RSS);
#undef K
  c.Set("OP_MOUNT", Napi::Number::New(env, nsbox::OP_MOUNT));
  c.Set("OP_REMOUNT", Napi::Number::New(env, nsbox::OP_REMOUNT));
  c.Set("OP_MKDIR", Napi::Number::New(env, nsbox::OP_MKDIR));
  c.Set("OP_TOUCH", Napi::Number::New(env, nsbox::OP_TOUCH));
  c.Set("OP_SYMLINK", Napi::Number::New(env, nsbox::OP_SYMLINK));
  c.Set("OP_MKNOD", Napi::Number::New(env, nsbox::OP_MKNOD));
  c.Set("STEP_COUNT", Napi::Number::New(env, nsbox::STEP_COUNT));
  c.Set("TRIAL_PROC_FRESH", Napi::Number::New(env, nsbox::TRIAL_PROC_FRESH));
  c.Set("TRIAL_PROC_NONE", Napi::Number::New(env, nsbox::TRIAL_PROC_NONE));
  exports.Set("stepTable", StepTable(env));
  c.Set("STDIO_DEV_NULL", Napi::Number::New(env, nsbox::kStdioDevNull));
  c.Set("WHERE_DST_IN_ROOT", Napi::Number::New(env, nsbox::WHERE_DST_IN_ROOT));
  c.Set("WHERE_SRC_IN_ROOT", Napi::Number::New(env, nsbox::WHERE_SRC_IN_ROOT));
  c.Set("WHERE_OPEN_ROOT", Napi::Number::New(env, nsbox::WHERE_OPEN_ROOT));
  c.Set("WHERE_SRC_BENEATH", Napi::Number::New(env, nsbox::WHERE_SRC_BENEATH));
  c.Set("WHERE_OPTIONAL", Napi::Number::New(env, nsbox::WHERE_OPTIONAL));
  c.Set("WHERE_SRC_FD", Napi::Number::New(env, nsbox::WHERE_SRC_FD));
  c.Set("WHERE_DST_NOFOLLOW", Napi::Number::New(env, nsbox::WHERE_DST_NOFOLLOW));
  c.Set("WHERE_DST_ROOT_MNT", Napi::Number::New(env, nsbox::WHERE_DST_ROOT_MNT));
  c.Set("WHERE_SRC_DETACHED", Napi::Number::New(env, nsbox::WHERE_SRC_DETACHED));
  exports.Set("constants", c);
  return exports;
}

}  // namespace nsbox_glue

namespace {
Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return nsbox_glue::Init(env, exports); }
}  // namespace

NODE_API_MODULE(nsbox, InitModule)
