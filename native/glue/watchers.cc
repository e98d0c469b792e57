// watchers.cc: what nsbox watches on Node's event loop: a container's pidfd until exit (Process,
// uv_poll: no thread per child, no SIGCHLD handler, no waitpid(-1)), the error pipe of a start
// that finishes later (finishSpawnAsync), and a run's output pipes (collectOutput).
#include "glue.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <string>
#include <unordered_map>

#include "../core/spawn.h"
#include "../core/syscalls.h"
#include "plan_reader.h"

namespace nsbox_glue {

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

namespace {

// Calls cb(argv...) from the event loop with the plain C API. While Node tears the environment
// down it runs the loop once more (before the cleanup hooks) and can no longer call into JS: the
// call fails and its result, which nobody can hear about any more, is dropped. node-addon-api's
// MakeCallback would turn that failure into a fatal error (napi_throw in a dying environment).
void CallDroppingFailure(napi_env env, Napi::FunctionReference& cb, size_t argc, const napi_value* argv) {
  napi_value global, fn, result;
  if (cb.IsEmpty() || napi_get_global(env, &global) != napi_ok || napi_get_reference_value(env, cb, &fn) != napi_ok || fn == nullptr) return;
  if (napi_make_callback(env, nullptr, global, fn, argc, argv, &result) != napi_ok) {
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value e;
      if (napi_get_and_clear_last_exception(env, &e) == napi_ok) napi_fatal_exception(env, e);
    }
  }
}

// One live container process: its pidfd, watched with uv_poll until it has exited and been reaped.
class Process : public Napi::ObjectWrap<Process> {
 public:

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Process",
                                   {InstanceMethod("watch", &Process::Watch),
                                    InstanceMethod("signal", &Process::Signal),
                                    InstanceMethod("ref", &Process::DoRef),
                                    InstanceMethod("fd", &Process::Fd),
                                    InstanceMethod("exited", &Process::Exited),
                                    InstanceMethod("reap", &Process::Reap),
                                    InstanceMethod("unref", &Process::DoUnref)});
    // Per environment (instance data, freed with it), never a process-wide static: the image
    // unpacker loads this addon in a worker thread too, whose init would otherwise replace the
    // main thread's constructor with one that dies with the worker (a SIGSEGV at the next spawn).
    env.SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(f)));
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

  // refFinishSpawn(id, on): whether the watch keeps the event loop alive (Container.ref/unref of a
  // Machine.exec whose start has not finished). False if it was over.
  static Napi::Value Ref(const Napi::CallbackInfo& info) {
    double id;
    if (!IsIntIn(info[0], 1, 4294967295.0, &id) || !info[1].IsBoolean()) return Napi::Boolean::New(info.Env(), false);
    auto it = live().find(static_cast<uint32_t>(id));
    if (it == live().end()) return Napi::Boolean::New(info.Env(), false);
    auto* h = reinterpret_cast<uv_handle_t*>(&it->second->poll_);
    if (info[1].As<Napi::Boolean>().Value()) uv_ref(h);
    else uv_unref(h);
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
    napi_value v = FinishResultValue(env, r, rec);
    CallDroppingFailure(env, cb, 1, &v);
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
      napi_value argv[4] = {out, err, d0, d1};
      CallDroppingFailure(env, cb, 4, argv);
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

}  // namespace

Napi::Object NewProcess(Napi::Env env, int pidfd, int status_fd) {
  Napi::Object proc = env.GetInstanceData<Napi::FunctionReference>()->New({});
  Process::Unwrap(proc)->Adopt(pidfd, status_fd);
  return proc;
}

namespace {

// pidfdOpen(pid): a Process for an existing pid (a machine's PID 1 found from its state), or an errno.
Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = nsbox::sys::pidfd_open(info[0].As<Napi::Number>().Int32Value(), 0);
  if (fd < 0) return Napi::Number::New(env, errno);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  return NewProcess(env, fd, -1);
}

}  // namespace

void InitWatchers(Napi::Env env, Napi::Object exports) {
  exports.Set("Process", Process::Init(env));
  exports.Set("finishSpawnAsync", Napi::Function::New(env, FinishWatch::Start));
  exports.Set("cancelFinishSpawn", Napi::Function::New(env, FinishWatch::Cancel));
  exports.Set("refFinishSpawn", Napi::Function::New(env, FinishWatch::Ref));
  exports.Set("collectOutput", Napi::Function::New(env, OutputCollector::Start));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
}

}  // namespace nsbox_glue
