// net.cc: see net.h.
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../core/netlink_parent.h"
#include "../core/syscalls.h"

namespace nsbox_glue {

namespace {

bool Fail(Napi::Env env, const std::string& what) {
  if (!env.IsExceptionPending())
    Napi::TypeError::New(env, "nsbox native plan: net." + what).ThrowAsJavaScriptException();
  return false;
}

bool Int(Napi::Object o, const char* key, double lo, double hi, double* out) {
  Napi::Value v = o.Get(key);
  if (o.Env().IsExceptionPending()) return false;
  if (!v.IsNumber()) return Fail(o.Env(), key);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<int64_t>(d))) return Fail(o.Env(), key);
  *out = d;
  return true;
}

bool Str(Napi::Object o, const char* key, size_t max, std::string* out) {
  Napi::Value v = o.Get(key);
  if (o.Env().IsExceptionPending()) return false;
  if (!v.IsString()) return Fail(o.Env(), key);
  *out = v.As<Napi::String>().Utf8Value();
  if (out->empty() || out->size() > max || out->find('\0') != std::string::npos) return Fail(o.Env(), key);
  return true;
}

bool Ip4(Napi::Object o, const char* key, uint32_t* out) {
  std::string s;
  if (!Str(o, key, 15, &s)) return false;
  struct in_addr a;
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return Fail(o.Env(), key);
  *out = a.s_addr;
  return true;
}

// [lo, hi] or null: ports in host order, lo 0 = none.
bool Range(Napi::Object o, const char* key, uint16_t* lo, uint16_t* hi) {
  Napi::Value v = o.Get(key);
  if (o.Env().IsExceptionPending()) return false;
  *lo = *hi = 0;
  if (v.IsNull() || v.IsUndefined()) return true;
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 2) return Fail(o.Env(), key);
  Napi::Array a = v.As<Napi::Array>();
  double d[2];
  for (uint32_t i = 0; i < 2; i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) return Fail(o.Env(), key);
    d[i] = e.As<Napi::Number>().DoubleValue();
    if (!(d[i] >= 1 && d[i] <= 65535) || d[i] != static_cast<double>(static_cast<int>(d[i]))) return Fail(o.Env(), key);
  }
  if (d[1] < d[0]) return Fail(o.Env(), key);
  *lo = static_cast<uint16_t>(d[0]);
  *hi = static_cast<uint16_t>(d[1]);
  return true;
}

void Push(NetStorage* st, std::vector<uint8_t> bytes, bool on_host, uint32_t nsfd_off, uint32_t ifindex_off) {
  st->bufs.push_back(std::move(bytes));
  nsbox::NetMsg m;
  m.data = st->bufs.back().data();
  m.len = static_cast<uint32_t>(st->bufs.back().size());
  m.on_host = on_host ? 1 : 0;
  m.nsfd_off = nsfd_off;
  m.ifindex_off = ifindex_off;
  m.nft_acks = 0;
  st->msgs.push_back(m);
}

}  // namespace

bool BuildNetPlan(Napi::Object js, NetStorage* st, nsbox::Plan* p) {
  p->net_host_sock = -1;
  p->net_msgs = nullptr;
  p->n_net_msgs = 0;
  p->net_peer = nullptr;
  Napi::Value nv = js.Get("net");
  if (js.Env().IsExceptionPending()) return false;
  if (nv.IsNull() || nv.IsUndefined()) return true;
  if (!nv.IsObject()) return Fail(js.Env(), "(object)");
  Napi::Object n = nv.As<Napi::Object>();
  double sock, bridge, prefix;
  std::string host_if, mac_hex;
  uint32_t addr, gw;
  if (!Int(n, "sock", 0, 2147483647.0, &sock) || !Int(n, "bridgeIndex", 1, 2147483647.0, &bridge) ||
      !Str(n, "hostIf", 15, &host_if) || !Str(n, "peerIf", 15, &st->peer) || !Str(n, "mac", 12, &mac_hex) ||
      !Ip4(n, "address", &addr) || !Int(n, "prefix", 1, 30, &prefix) || !Ip4(n, "gateway", &gw))
    return false;
  uint8_t mac[6];
  if (mac_hex.size() != 12) return Fail(js.Env(), "mac");
  for (size_t i = 0; i < 6; i++) {
    char b[3] = {mac_hex[2 * i], mac_hex[2 * i + 1], 0};
    char* end = nullptr;
    long v = strtol(b, &end, 16);
    if (end != b + 2) return Fail(js.Env(), "mac");
    mac[i] = static_cast<uint8_t>(v);
  }
  // (Each builder reports its patch offset: build first, then push; argument order is unspecified.)
  uint32_t nsfd_off = 0, ifx = 0;
  std::vector<uint8_t> veth = nsbox::nl_build_veth(host_if.c_str(), static_cast<int>(bridge), st->peer.c_str(), mac, &nsfd_off);
  Push(st, std::move(veth), true, nsfd_off, 0);
  std::vector<uint8_t> up = nsbox::nl_build_link_up(&ifx);
  Push(st, std::move(up), false, 0, ifx);
  std::vector<uint8_t> address = nsbox::nl_build_addr(addr, static_cast<int>(prefix), &ifx);
  Push(st, std::move(address), false, 0, ifx);
  std::vector<uint8_t> route = nsbox::nl_build_default_route(gw, &ifx);
  Push(st, std::move(route), false, 0, ifx);

  Napi::Value rv = n.Get("rules");
  if (js.Env().IsExceptionPending()) return false;
  if (!rv.IsArray()) return Fail(js.Env(), "rules");
  Napi::Array rules = rv.As<Napi::Array>();
  if (rules.Length() > 1024) return Fail(js.Env(), "rules");
  std::vector<nsbox::NftAllow> allow;
  bool policy = false;
  for (uint32_t i = 0; i < rules.Length(); i++) {
    Napi::Value e = rules.Get(i);
    if (js.Env().IsExceptionPending()) return false;
    if (!e.IsObject()) return Fail(js.Env(), "rules[]");
    Napi::Object r = e.As<Napi::Object>();
    double family, prio, dst_len, proto;
    uint16_t dlo, dhi, slo, shi;
    if (!Int(r, "family", 4, 6, &family) || (family != 4 && family != 6) || !Int(r, "priority", 1, 32000, &prio) ||
        !Int(r, "dstLen", 0, 32, &dst_len) || !Int(r, "proto", 0, 255, &proto) || !Range(r, "dport", &dlo, &dhi) ||
        !Range(r, "sport", &slo, &shi))
      return false;
    uint32_t dst = 0;
    if (dst_len > 0 && !Ip4(r, "dst", &dst)) return false;
    Napi::Value pv = r.Get("prohibit");
    if (!pv.IsBoolean()) return Fail(js.Env(), "rules[].prohibit");
    uint8_t action = pv.As<Napi::Boolean>().Value() ? FR_ACT_PROHIBIT : FR_ACT_TO_TBL;
    if (action == FR_ACT_PROHIBIT) policy = true;
    if (action == FR_ACT_TO_TBL && family == 4) {
      if (slo) return Fail(js.Env(), "rules[].sport");  // the policy has no source-port exceptions
      allow.push_back({dst, static_cast<int>(dst_len), static_cast<uint8_t>(proto), dlo, dhi});
    }
    Push(st, nsbox::nl_build_rule(family == 4 ? AF_INET : AF_INET6, static_cast<uint32_t>(prio), dst, static_cast<int>(dst_len),
                                  static_cast<uint8_t>(proto), dlo, dhi, slo, shi, action),
         false, 0, 0);
  }
  if (policy) {
    // The same policy again in nf_tables, after routing: a route lookup can be skipped or made to
    // succeed without the rules (a socket bound to eth0 with SO_BINDTODEVICE or IP_PKTINFO falls
    // back to "on link" when the rules refuse; broadcasts are routed by the local table), the
    // output hook sees every packet that leaves. docs/security.md, "Egress".
    for (nsbox::NftBatch& b : nsbox::nft_build_egress(allow)) {
      Push(st, std::move(b.bytes), false, 0, 0);
      st->msgs.back().nft_acks = b.acks;
    }
  }
  p->net_host_sock = static_cast<int>(sock);
  p->net_msgs = st->msgs.data();
  p->n_net_msgs = st->msgs.size();
  p->net_peer = st->peer.c_str();
  return true;
}

namespace {

Napi::Value NetList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<nsbox::LinkInfo> links;
  int rc = nsbox::nl_list_links(&links);
  if (rc != 0) return Napi::Number::New(env, rc);
  Napi::Array a = Napi::Array::New(env, links.size());
  for (size_t i = 0; i < links.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", links[i].name);
    o.Set("kind", links[i].kind);
    o.Set("index", links[i].index);
    o.Set("master", links[i].master);
    o.Set("up", (links[i].flags & 1) != 0);
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

Napi::Value NetAddrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<nsbox::AddrInfo> addrs;
  int rc = nsbox::nl_list_addrs(&addrs);
  if (rc != 0) return Napi::Number::New(env, rc);
  Napi::Array a = Napi::Array::New(env, addrs.size());
  for (size_t i = 0; i < addrs.size(); i++) {
    char buf[INET_ADDRSTRLEN];
    struct in_addr in;
    in.s_addr = addrs[i].addr;
    inet_ntop(AF_INET, &in, buf, sizeof(buf));
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", addrs[i].index);
    o.Set("address", std::string(buf));
    o.Set("prefix", addrs[i].prefix);
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

Napi::Value NetAddBridge(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), nsbox::nl_add_bridge(info[0].As<Napi::String>().Utf8Value().c_str()));
}

Napi::Value NetAddAddr(const Napi::CallbackInfo& info) {
  struct in_addr a;
  std::string s = info[1].As<Napi::String>().Utf8Value();
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return Napi::Number::New(info.Env(), EINVAL);
  return Napi::Number::New(info.Env(), nsbox::nl_add_addr(info[0].As<Napi::Number>().Int32Value(), a.s_addr,
                                                          info[2].As<Napi::Number>().Int32Value()));
}

Napi::Value NetLinkUp(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), nsbox::nl_link_up(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Value NetDelLink(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), nsbox::nl_del_link(info[0].As<Napi::String>().Utf8Value().c_str()));
}

// netSocket(): a NETLINK_ROUTE socket of this (Node's) netns, close-on-exec; or -errno.
Napi::Value NetSocket(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), nsbox::nl_open()); }

// tcpListen(address, port): a listening TCP socket (non-blocking, close-on-exec) or -errno, made
// synchronously so that a taken port is an error before the container starts.
Napi::Value TcpListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string addr = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) return Napi::Number::New(env, -EINVAL);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return Napi::Number::New(env, -errno);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(s, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)) != 0 || listen(s, 511) != 0) {
    int e = errno;
    close(s);
    return Napi::Number::New(env, -e);
  }
  return Napi::Number::New(env, s);
}

// netPidfd(pid): a pidfd (close-on-exec) of a container's PID 1, or -errno. The published-port
// forwarder keeps it to find the container's network namespace for as long as that process lives,
// without pinning the namespace and without trusting a pid number that could be reused.
Napi::Value NetPidfd(const Napi::CallbackInfo& info) {
  int pid = info[0].As<Napi::Number>().Int32Value();
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  return Napi::Number::New(info.Env(), fd < 0 ? -errno : fd);
}

struct NetnsSocketJob {
  int pidfd;
  int pid;
  int fd;
  int err;
};

// Runs on a thread of its own, which enters the container's network namespace and then ends: no
// thread of Node's ever changes namespace. setns on a pidfd needs Linux 5.8; before that the
// namespace is opened by pid, and the pidfd then says whether that pid is still the container's.
void* NetnsSocketThread(void* arg) {
  NetnsSocketJob* j = static_cast<NetnsSocketJob*>(arg);
  int rc = setns(j->pidfd, CLONE_NEWNET);
  if (rc != 0 && errno == EINVAL && j->pid > 0) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", j->pid);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      j->err = errno;
      return nullptr;
    }
    struct pollfd p = {j->pidfd, POLLIN, 0};
    if (poll(&p, 1, 0) != 0) {
      close(ns);
      j->err = ESRCH;  // exited: the pid may be someone else's by now
      return nullptr;
    }
    rc = setns(ns, CLONE_NEWNET);
    if (rc != 0) j->err = errno;
    close(ns);
    if (rc != 0) return nullptr;
  } else if (rc != 0) {
    j->err = errno;
    return nullptr;
  }
  j->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (j->fd < 0) j->err = errno;
  return nullptr;
}

// netnsTcpSocket(pidfd, pid): an unconnected TCP socket (non-blocking, close-on-exec) of the network
// namespace of the process pidfd names, or -errno (ESRCH once it has exited). A socket belongs to
// the namespace it was made in: the forwarder's connection to a published port is made inside the
// container's namespace, over its loopback, so the container needs no routing rule that lets
// anything out for the replies (docs/security.md, "Egress").
Napi::Value NetnsTcpSocket(const Napi::CallbackInfo& info) {
  NetnsSocketJob j = {info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(), -1, 0};
  pthread_t t;
  int rc = pthread_create(&t, nullptr, NetnsSocketThread, &j);
  if (rc != 0) return Napi::Number::New(info.Env(), -rc);
  pthread_join(t, nullptr);
  return Napi::Number::New(info.Env(), j.fd >= 0 ? j.fd : -(j.err ? j.err : EIO));
}

// flock(fd, op | LOCK_NB) retried with a backoff of 1 to 16 ms until wait_ms have passed: 0, or
// -errno (-EAGAIN: held and wait_ms 0; -ETIMEDOUT: still held after wait_ms). The holder of an
// nsbox lock is another process, which may be stopped or hung: no wait on Node's thread is endless.
int flock_bounded(int fd, int op, int64_t wait_ms) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  long pause_ns = 1000000;
  for (;;) {
    if (NSBOX_RETRY(flock(fd, op | LOCK_NB)) == 0) return 0;
    if (errno != EWOULDBLOCK) return -errno;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const int64_t spent_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (spent_ms >= wait_ms) return wait_ms > 0 ? -ETIMEDOUT : -EAGAIN;
    struct timespec pause = {0, pause_ns};
    nanosleep(&pause, nullptr);
    if (pause_ns < 16000000) pause_ns *= 2;
  }
}

// lockFile(path, waitMs): an fd of path (created 0600) holding an exclusive flock, or -errno. The
// sections it guards (lease allocation, a machine name's claim) take milliseconds; the wait is
// bounded (flock_bounded).
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  const int64_t wait_ms = info.Length() > 1 ? info[1].As<Napi::Number>().Int64Value() : 0;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Napi::Number::New(env, -errno);
  int rc = flock_bounded(fd, LOCK_EX, wait_ms);
  if (rc != 0) {
    close(fd);
    return Napi::Number::New(env, rc);
  }
  return Napi::Number::New(env, fd);
}

// flockDir(path, exclusive, waitMs): an fd of the directory path (not following a last symlink)
// holding a shared flock, or with `exclusive` an exclusive one (never waited for: waitMs is for the
// shared one; an exclusive one is held for a rename only); -errno on failure (flock_bounded). The
// shared /etc directories (lib/etc.ts): a start holds its shared lock until its binds are made, and
// a directory is removed only under the exclusive one.
Napi::Value FlockDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  bool exclusive = info[1].ToBoolean().Value();
  const int64_t wait_ms = !exclusive && info.Length() > 2 ? info[2].As<Napi::Number>().Int64Value() : 0;
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Napi::Number::New(env, -errno);
  int rc = flock_bounded(fd, exclusive ? LOCK_EX : LOCK_SH, wait_ms);
  if (rc != 0) {
    close(fd);
    return Napi::Number::New(env, rc);
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitNet(Napi::Env env, Napi::Object exports) {
  exports.Set("netList", Napi::Function::New(env, NetList));
  exports.Set("netAddrs", Napi::Function::New(env, NetAddrs));
  exports.Set("netAddBridge", Napi::Function::New(env, NetAddBridge));
  exports.Set("netAddAddr", Napi::Function::New(env, NetAddAddr));
  exports.Set("netLinkUp", Napi::Function::New(env, NetLinkUp));
  exports.Set("netDelLink", Napi::Function::New(env, NetDelLink));
  exports.Set("netSocket", Napi::Function::New(env, NetSocket));
  exports.Set("tcpListen", Napi::Function::New(env, TcpListen));
  exports.Set("lockFile", Napi::Function::New(env, LockFile));
  exports.Set("flockDir", Napi::Function::New(env, FlockDir));
  exports.Set("netPidfd", Napi::Function::New(env, NetPidfd));
  exports.Set("netnsTcpSocket", Napi::Function::New(env, NetnsTcpSocket));
}

}  // namespace nsbox_glue
