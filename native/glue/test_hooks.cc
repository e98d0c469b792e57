// test_hooks.cc: exports for tests and leak checks only, never called by the library itself: a
// seccomp filter for the whole process, FD_CLOEXEC by hand, the namespace reserves' and the mount
// template's state, Node's dumpable flag.
#include "glue.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vector>

#include "reserve.h"

namespace nsbox_glue {

namespace {

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
Napi::Value NetnsReserveState(const Napi::CallbackInfo& info) { return ReserveState(info, netns_state); }
Napi::Value IpcnsReserveState(const Napi::CallbackInfo& info) { return ReserveState(info, ipcns_state); }

// mntTemplateState(): { fd, tried, errno, overlay } of the mount namespace template (reserve.cc), for leak
// checks and tests.
Napi::Value MntTemplateState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1, err = 0;
  bool tried = false, overlay = false;
  mnt_template_state(&fd, &tried, &err, &overlay);
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, fd));
  o.Set("tried", Napi::Boolean::New(env, tried));
  o.Set("errno", Napi::Number::New(env, err));
  o.Set("overlay", Napi::Boolean::New(env, overlay));
  return o;
}

// dumpable(): prctl(PR_GET_DUMPABLE) of this process (tests: clones leave Node as it was).
Napi::Value Dumpable(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
}

}  // namespace

void InitTestHooks(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsReserveState", Napi::Function::New(env, NetnsReserveState));
  exports.Set("ipcnsReserveState", Napi::Function::New(env, IpcnsReserveState));
  exports.Set("mntTemplateState", Napi::Function::New(env, MntTemplateState));
  exports.Set("dumpable", Napi::Function::New(env, Dumpable));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexec));
  exports.Set("testFilterProcess", Napi::Function::New(env, TestFilterProcess));
}

}  // namespace nsbox_glue
