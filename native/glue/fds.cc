// fds.cc: small fd utilities the library calls: reading cgroup files in one call, pipes and socket
// pairs, the sealed memfd of the init, passing a pty master (recvFd), a pty's size.
#include "glue.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "../core/syscalls.h"

namespace nsbox_glue {

namespace {

// [a, b] of a pipe or a socket pair.
Napi::Value FdPair(Napi::Env env, const int fds[2]) {
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, fds[0]));
  a.Set(1u, Napi::Number::New(env, fds[1]));
  return a;
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

Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    Napi::Error e = Napi::Error::New(env, std::string("pipe2: ") + strerror(errno));
    e.Set("errno", Napi::Number::New(env, errno));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return FdPair(env, fds);
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

// socketpair(): [a, b], AF_UNIX SOCK_STREAM, close-on-exec.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    Napi::Error::New(env, std::string("socketpair: ") + strerror(errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return FdPair(env, sv);
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

}  // namespace

void InitFds(Napi::Env env, Napi::Object exports) {
  exports.Set("readFiles", Napi::Function::New(env, ReadFiles));
  exports.Set("pipe", Napi::Function::New(env, Pipe));
  exports.Set("sealedMemfd", Napi::Function::New(env, SealedMemfd));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair));
  exports.Set("recvFd", Napi::Function::New(env, RecvFd));
  exports.Set("setWinsize", Napi::Function::New(env, SetWinsize));
}

}  // namespace nsbox_glue
