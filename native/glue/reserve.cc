// reserve.cc: a few network namespaces (lo up) and IPC namespaces made ahead by a thread of the
// addon, so that a container's clone joins one with setns instead of creating it with CLONE_NEWNET
// or CLONE_NEWIPC: creating a network namespace is the costliest part of a container's set-up (every
// pernet subsystem initialises its state, sysctl tables included), an IPC namespace the next (its
// sysctl tables and an internal mqueue mount: about 35 µs here, bench/ns-cost.c), and here it
// happens off the JS thread and before it is needed.
//
// Each namespace is used by one container only; its fd is closed after that container's clone, so
// the namespace lives exactly as long as the container. The maker clones a vfork-style child that
// opens its own namespace into our fd table (nsbox::make_netns): no thread of Node ever enters one.
// Sizes: NSBOX_NETNS_RESERVE and NSBOX_IPCNS_RESERVE (default 2 each; 0 turns that reserve off),
// read by lib/env.ts and given once, when the addon is loaded (reserve_configure). One maker thread serves both, network namespaces first.
//
// Also here: the mount namespace template (mnt_template), made once on first use by the thread that
// needs it and held for the life of the process; NSBOX_MNT_TEMPLATE=0 (lib/env.ts) turns it off.
#include "reserve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
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

// One kind of namespace kept in reserve.
struct Kind {
  std::deque<int> ready;
  int target = 2;
  bool paused = false;    // the last make failed: wait for the next take before trying again
  bool disabled = false;  // three makes in a row failed: stop (the clone path creates namespaces itself)
  int failures = 0;
  int in_a_row = 0;
  int (*make)() = nullptr;

  bool wants() const { return !disabled && !paused && static_cast<int>(ready.size()) < target; }
};

struct Reserve {
  std::mutex mu;
  std::condition_variable wake;
  Kind net, ipc;
  bool started = false;
  bool busy = false;      // the maker is between a clone and adding its result (either kind)
  bool stop = false;      // the process is exiting (stop_maker)
  bool have_maker = false;
  pthread_t maker;
};

// The sizes and the template switch, from lib/env.ts (reserve_configure), before first use.
std::atomic<int> g_net_target{2};
std::atomic<int> g_ipc_target{2};
std::atomic<bool> g_template_on{true};

// Never destroyed: the maker thread may still wait on it while the process exits.
Reserve& reserve() {
  static Reserve* r = [] {
    auto* x = new Reserve();
    x->net.target = g_net_target.load();
    x->net.make = nsbox::make_netns;
    x->ipc.target = g_ipc_target.load();
    x->ipc.make = nsbox::make_ipcns;
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
    r->wake.wait(lk, [r] { return r->stop || r->net.wants() || r->ipc.wants(); });
    if (r->stop) return nullptr;
    // The network namespace first: it costs the most to make in a clone (about ten times an IPC one).
    Kind& k = r->net.wants() ? r->net : r->ipc;
    r->busy = true;
    lk.unlock();
    int fd = k.make();
    lk.lock();
    r->busy = false;
    if (fd >= 0) {
      k.ready.push_back(fd);
      k.in_a_row = 0;
    } else {
      // Out of fds or memory for a moment, or not allowed at all here (a seccomp filter, a missing
      // capability, no vfork-style clone on this architecture). Containers create their namespace
      // in their own clone meanwhile; after three failures in a row this kind stays off.
      k.failures++;
      k.paused = true;
      if (++k.in_a_row >= 3) k.disabled = true;
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
  for (Kind* k : {&r.net, &r.ipc}) {
    for (int fd : k->ready) close(fd);
    k->ready.clear();
  }
}

// One ready namespace of kind k, or -1; r.mu held. Starts the maker thread on first use.
int take_locked(Reserve& r, Kind& k) {
  if (k.target == 0 || k.disabled) return -1;
  if (!r.started) {
    r.started = true;
    // pthread_create rather than std::thread: without exceptions a failed std::thread aborts.
    if (pthread_create(&r.maker, nullptr, maker, &r) != 0) {
      r.net.disabled = r.ipc.disabled = true;
      return -1;
    }
    r.have_maker = true;
    atexit(stop_maker);
  }
  k.paused = false;
  int fd = -1;
  if (!k.ready.empty()) {
    fd = k.ready.front();
    k.ready.pop_front();
  }
  return fd;
}

void state(Kind Reserve::*which, std::vector<int>* fds, bool* busy, int* target, int* failures) {
  Reserve& r = reserve();
  std::lock_guard<std::mutex> lk(r.mu);
  const Kind& k = r.*which;
  fds->assign(k.ready.begin(), k.ready.end());
  *busy = r.busy;
  *target = k.disabled ? 0 : k.target;
  *failures = k.failures;
}

}  // namespace

void reserve_take(int* net, int* ipc) {
  if (net) *net = -1;
  if (ipc) *ipc = -1;
  Reserve& r = reserve();
  // Never wait for the maker (it may be preempted while it holds the lock, on a busy host): a take
  // that finds the lock held goes without, and the container creates its namespaces in its clone.
  std::unique_lock<std::mutex> lk(r.mu, std::try_to_lock);
  if (!lk.owns_lock()) return;
  if (net) *net = take_locked(r, r.net);
  if (ipc) *ipc = take_locked(r, r.ipc);
  // One wake-up for both: the maker tops up whichever is short.
  r.wake.notify_one();
}

void netns_state(std::vector<int>* fds, bool* busy, int* target, int* failures) {
  state(&Reserve::net, fds, busy, target, failures);
}
void ipcns_state(std::vector<int>* fds, bool* busy, int* target, int* failures) {
  state(&Reserve::ipc, fds, busy, target, failures);
}

namespace {
std::mutex g_template_mu;
std::atomic<int> g_template_fd{-2};  // -2: not tried yet; -1: failed or turned off
int g_template_err = 0;
std::atomic<bool> g_template_ovl{false};  // the kernel takes detached layers for an overlay (make_mnt_template)
}  // namespace

void reserve_configure(int net, int ipc, bool mnt_template_on) {
  g_net_target.store(net < 0 ? 0 : net > 64 ? 64 : net);
  g_ipc_target.store(ipc < 0 ? 0 : ipc > 64 ? 64 : ipc);
  g_template_on.store(mnt_template_on);
}

int mnt_template() {
  int fd = g_template_fd.load(std::memory_order_acquire);
  if (fd != -2) return fd;
  std::lock_guard<std::mutex> lk(g_template_mu);
  fd = g_template_fd.load(std::memory_order_relaxed);
  if (fd != -2) return fd;
  if (!g_template_on.load()) {
    fd = -1;
  } else {
    bool ovl = false;
    fd = nsbox::make_mnt_template(&ovl);
    if (fd < 0) g_template_err = errno;
    g_template_ovl.store(fd >= 0 && ovl, std::memory_order_relaxed);
  }
  g_template_fd.store(fd < 0 ? -1 : fd, std::memory_order_release);
  return fd < 0 ? -1 : fd;
}

bool mnt_template_overlay() {
  mnt_template();
  return g_template_ovl.load(std::memory_order_relaxed);
}

void mnt_template_state(int* fd, bool* tried, int* err, bool* overlay) {
  std::lock_guard<std::mutex> lk(g_template_mu);
  int v = g_template_fd.load(std::memory_order_relaxed);
  *tried = v != -2;
  *fd = v < 0 ? -1 : v;
  *err = g_template_err;
  *overlay = g_template_ovl.load(std::memory_order_relaxed);
}

}  // namespace nsbox_glue
