// reserve.cc: a few network namespaces (lo up) made ahead by a thread of the addon, so that a
// container's clone joins one with setns instead of creating it with CLONE_NEWNET: creating a network
// namespace is the costliest part of a container's set-up (every pernet subsystem initialises its
// state, sysctl tables included), and here it happens off the JS thread and before it is needed.
//
// Each namespace is used by one container only; its fd is closed after that container's clone, so
// the namespace lives exactly as long as the container. The maker clones a vfork-style child that
// opens its own namespace into our fd table (nsbox::make_netns): no thread of Node ever enters one.
// Size: NSBOX_NETNS_RESERVE (default 2; 0 turns the reserve off), read once.
//
// Also here: the mount namespace template (mnt_template), made once on first use by the thread that
// needs it and held for the life of the process; NSBOX_MNT_TEMPLATE=0 turns it off.
#include "reserve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "../core/spawn.h"

namespace nsbox_glue {

namespace {

struct Reserve {
  std::mutex mu;
  std::condition_variable wake;
  std::deque<int> ready;
  int target = 2;
  bool started = false;
  bool busy = false;
  bool paused = false;    // the last make failed: wait for the next take before trying again
  bool disabled = false;  // three makes in a row failed: stop (the clone path creates namespaces itself)
  int failures = 0;
  int in_a_row = 0;
  bool stop = false;      // the process is exiting (stop_maker)
  bool have_maker = false;
  pthread_t maker;
};

// Never destroyed: the maker thread may still wait on it while the process exits.
Reserve& reserve() {
  static Reserve* r = [] {
    auto* x = new Reserve();
    const char* env = getenv("NSBOX_NETNS_RESERVE");
    if (env && *env) {
      char* end = nullptr;
      long n = strtol(env, &end, 10);
      x->target = (end && *end == 0 && n >= 0 && n <= 64) ? static_cast<int>(n) : 2;
    }
    return x;
  }();
  return *r;
}

void* maker(void* arg) {
  Reserve* r = static_cast<Reserve*>(arg);
  // No signal handler of Node's may run here, nor in the child that shares our memory.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, nullptr);
  // Background work: on a busy host the JS thread (and the containers) go first.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  std::unique_lock<std::mutex> lk(r->mu);
  for (;;) {
    r->wake.wait(lk, [r] { return r->stop || (!r->disabled && !r->paused && static_cast<int>(r->ready.size()) < r->target); });
    if (r->stop) return nullptr;
    r->busy = true;
    lk.unlock();
    int fd = nsbox::make_netns();
    lk.lock();
    r->busy = false;
    if (fd >= 0) {
      r->ready.push_back(fd);
      r->in_a_row = 0;
    } else {
      // Out of fds or memory for a moment, or not allowed at all here (a seccomp filter, a missing
      // capability, no vfork-style clone on this architecture). Containers create their namespace
      // in their own clone meanwhile; after three failures in a row the reserve stays off.
      r->failures++;
      r->paused = true;
      if (++r->in_a_row >= 3) r->disabled = true;
    }
  }
}

// At exit: no thread of ours is left running while the process ends (nor while a leak checker
// stops the world), and the namespaces held in reserve are closed.
void stop_maker() {
  Reserve& r = reserve();
  {
    std::lock_guard<std::mutex> lk(r.mu);
    r.stop = true;
  }
  r.wake.notify_all();
  if (r.have_maker) pthread_join(r.maker, nullptr);
  std::lock_guard<std::mutex> lk(r.mu);
  for (int fd : r.ready) close(fd);
  r.ready.clear();
}

}  // namespace

int netns_take() {
  Reserve& r = reserve();
  // Never wait for the maker (it may be preempted while it holds the lock, on a busy host): a take
  // that finds the lock held goes without, and the container creates its namespace in its clone.
  std::unique_lock<std::mutex> lk(r.mu, std::try_to_lock);
  if (!lk.owns_lock()) return -1;
  if (r.target == 0 || r.disabled) return -1;
  if (!r.started) {
    r.started = true;
    // pthread_create rather than std::thread: without exceptions a failed std::thread aborts.
    if (pthread_create(&r.maker, nullptr, maker, &r) != 0) {
      r.disabled = true;
      return -1;
    }
    r.have_maker = true;
    atexit(stop_maker);
  }
  r.paused = false;
  int fd = -1;
  if (!r.ready.empty()) {
    fd = r.ready.front();
    r.ready.pop_front();
  }
  r.wake.notify_one();
  return fd;
}

void netns_state(std::vector<int>* fds, bool* busy, int* target, int* failures) {
  Reserve& r = reserve();
  std::lock_guard<std::mutex> lk(r.mu);
  fds->assign(r.ready.begin(), r.ready.end());
  *busy = r.busy;
  *target = r.disabled ? 0 : r.target;
  *failures = r.failures;
}

namespace {
std::mutex g_template_mu;
std::atomic<int> g_template_fd{-2};  // -2: not tried yet; -1: failed or turned off
int g_template_err = 0;
}  // namespace

int mnt_template() {
  int fd = g_template_fd.load(std::memory_order_acquire);
  if (fd != -2) return fd;
  std::lock_guard<std::mutex> lk(g_template_mu);
  fd = g_template_fd.load(std::memory_order_relaxed);
  if (fd != -2) return fd;
  const char* env = getenv("NSBOX_MNT_TEMPLATE");
  if (env && env[0] == '0' && env[1] == 0) {
    fd = -1;
  } else {
    fd = nsbox::make_mnt_template();
    if (fd < 0) g_template_err = errno;
  }
  g_template_fd.store(fd < 0 ? -1 : fd, std::memory_order_release);
  return fd < 0 ? -1 : fd;
}

void mnt_template_state(int* fd, bool* tried, int* err) {
  std::lock_guard<std::mutex> lk(g_template_mu);
  int v = g_template_fd.load(std::memory_order_relaxed);
  *tried = v != -2;
  *fd = v < 0 ? -1 : v;
  *err = g_template_err;
}

}  // namespace nsbox_glue
