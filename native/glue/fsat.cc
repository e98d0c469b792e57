// fsat.cc: the *at() file system calls the image unpacker (lib/images/unpack-worker.ts) needs and
// Node's fs lacks. Every create is relative to a directory fd that the worker reached component by
// component with O_NOFOLLOW: a layer's entries never name a host path, and no final component is
// ever followed (AT_SYMLINK_NOFOLLOW, O_NOFOLLOW, linkat without AT_SYMLINK_FOLLOW). Every function
// returns a number, negative -errno on failure, so the worker thread never sees an exception from
// here. The unpacker runs in a worker_threads Worker: these calls block that thread, not Node's.
#include <dirent.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "../core/syscalls.h"
#include "glue.h"

namespace nsbox_glue {
namespace {

int I32(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }
std::string Str(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::String>().Utf8Value(); }
Napi::Value Rc(Napi::Env env, int rc) { return Napi::Number::New(env, rc < 0 ? -errno : rc); }

// openat(dirfd, name, flags, mode): an fd (close-on-exec always) or -errno.
Napi::Value OpenAt(const Napi::CallbackInfo& info) {
  int fd = NSBOX_RETRY(openat(I32(info, 0), Str(info, 1).c_str(), I32(info, 2) | O_CLOEXEC, static_cast<mode_t>(I32(info, 3))));
  return Rc(info.Env(), fd);
}

Napi::Value MkdirAt(const Napi::CallbackInfo& info) {
  return Rc(info.Env(), mkdirat(I32(info, 0), Str(info, 1).c_str(), static_cast<mode_t>(I32(info, 2))));
}

// mknodat(dirfd, name, mode, major, minor): mode carries the type bits (S_IFCHR, S_IFBLK, S_IFIFO).
Napi::Value MknodAt(const Napi::CallbackInfo& info) {
  dev_t dev = makedev(static_cast<unsigned>(I32(info, 3)), static_cast<unsigned>(I32(info, 4)));
  return Rc(info.Env(), mknodat(I32(info, 0), Str(info, 1).c_str(), static_cast<mode_t>(I32(info, 2)), dev));
}

// symlinkat(target, dirfd, name): the target is stored as text, never resolved here.
Napi::Value SymlinkAt(const Napi::CallbackInfo& info) {
  return Rc(info.Env(), symlinkat(Str(info, 0).c_str(), I32(info, 1), Str(info, 2).c_str()));
}

// linkat(olddirfd, oldname, newdirfd, newname) without AT_SYMLINK_FOLLOW: a link to a symlink
// links the symlink itself.
Napi::Value LinkAt(const Napi::CallbackInfo& info) {
  return Rc(info.Env(), linkat(I32(info, 0), Str(info, 1).c_str(), I32(info, 2), Str(info, 3).c_str(), 0));
}

// unlinkat(dirfd, name, rmdir): rmdir true removes an (empty) directory.
Napi::Value UnlinkAt(const Napi::CallbackInfo& info) {
  return Rc(info.Env(), unlinkat(I32(info, 0), Str(info, 1).c_str(), info[2].ToBoolean().Value() ? AT_REMOVEDIR : 0));
}

// fchownat(dirfd, name, uid, gid): never follows the final component.
Napi::Value LchownAt(const Napi::CallbackInfo& info) {
  return Rc(info.Env(), fchownat(I32(info, 0), Str(info, 1).c_str(), static_cast<uid_t>(info[2].As<Napi::Number>().Uint32Value()),
                                 static_cast<gid_t>(info[3].As<Napi::Number>().Uint32Value()), AT_SYMLINK_NOFOLLOW));
}

// lutimesAt(dirfd, name, seconds): atime and mtime, never following the final component.
Napi::Value LutimesAt(const Napi::CallbackInfo& info) {
  struct timespec ts[2];
  ts[0].tv_sec = static_cast<time_t>(info[2].As<Napi::Number>().Int64Value());
  ts[0].tv_nsec = 0;
  ts[1] = ts[0];
  return Rc(info.Env(), utimensat(I32(info, 0), Str(info, 1).c_str(), ts, AT_SYMLINK_NOFOLLOW));
}

// lstatAt(dirfd, name): { mode, uid, gid, size, rdevMajor, rdevMinor, nlink } or -errno.
Napi::Value LstatAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct stat st;
  if (fstatat(I32(info, 0), Str(info, 1).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Napi::Number::New(env, -errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("mode", Napi::Number::New(env, st.st_mode));
  o.Set("uid", Napi::Number::New(env, st.st_uid));
  o.Set("gid", Napi::Number::New(env, st.st_gid));
  o.Set("size", Napi::Number::New(env, static_cast<double>(st.st_size)));
  o.Set("rdevMajor", Napi::Number::New(env, major(st.st_rdev)));
  o.Set("rdevMinor", Napi::Number::New(env, minor(st.st_rdev)));
  o.Set("nlink", Napi::Number::New(env, static_cast<double>(st.st_nlink)));
  return o;
}

// readlinkAt(dirfd, name): the target or -errno.
Napi::Value ReadlinkAt(const Napi::CallbackInfo& info) {
  char buf[4096];
  ssize_t n = readlinkat(I32(info, 0), Str(info, 1).c_str(), buf, sizeof buf);
  if (n < 0) return Napi::Number::New(info.Env(), -errno);
  if (static_cast<size_t>(n) == sizeof buf) return Napi::Number::New(info.Env(), -ENAMETOOLONG);
  return Napi::String::New(info.Env(), buf, static_cast<size_t>(n));
}

// readdirFd(fd): the names in the directory fd (without . and ..), or -errno. fd stays open.
Napi::Value ReaddirFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = fcntl(I32(info, 0), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, -errno);
  DIR* d = fdopendir(fd);
  if (!d) {
    int e = errno;
    close(fd);
    return Napi::Number::New(env, -e);
  }
  rewinddir(d);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* de = readdir(d)) {
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) names.emplace_back(de->d_name);
  }
  int e = errno;
  closedir(d);
  if (e != 0) return Napi::Number::New(env, -e);
  Napi::Array a = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::String::New(env, names[i]));
  return a;
}

// fsetxattr(fd, name, value: Buffer): 0 or -errno.
Napi::Value FSetXattr(const Napi::CallbackInfo& info) {
  Napi::Buffer<uint8_t> v = info[2].As<Napi::Buffer<uint8_t>>();
  return Rc(info.Env(), fsetxattr(I32(info, 0), Str(info, 1).c_str(), v.Data(), v.Length(), 0));
}

// fgetxattr(fd, name): a Buffer or -errno (-ENODATA: not set).
Napi::Value FGetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = Str(info, 1);
  ssize_t n = fgetxattr(I32(info, 0), name.c_str(), nullptr, 0);
  if (n < 0) return Napi::Number::New(env, -errno);
  std::vector<uint8_t> buf(static_cast<size_t>(n) + 1);
  n = fgetxattr(I32(info, 0), name.c_str(), buf.data(), buf.size());
  if (n < 0) return Napi::Number::New(env, -errno);
  return Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(n));
}

// flistxattr(fd) / llistxattr(path): the attribute names or -errno.
Napi::Value XattrNames(Napi::Env env, ssize_t (*list)(const void*, char*, size_t), const void* arg) {
  ssize_t n = list(arg, nullptr, 0);
  if (n < 0) return Napi::Number::New(env, -errno);
  std::vector<char> buf(static_cast<size_t>(n) + 1);
  n = list(arg, buf.data(), buf.size());
  if (n < 0) return Napi::Number::New(env, -errno);
  Napi::Array a = Napi::Array::New(env);
  uint32_t k = 0;
  for (ssize_t i = 0; i < n;) {
    std::string s(buf.data() + i);
    i += static_cast<ssize_t>(s.size()) + 1;
    if (!s.empty()) a.Set(k++, Napi::String::New(env, s));
  }
  return a;
}
ssize_t FdList(const void* fd, char* b, size_t n) { return flistxattr(*static_cast<const int*>(fd), b, n); }
ssize_t PathList(const void* p, char* b, size_t n) { return llistxattr(static_cast<const char*>(p), b, n); }

Napi::Value FListXattr(const Napi::CallbackInfo& info) {
  int fd = I32(info, 0);
  return XattrNames(info.Env(), FdList, &fd);
}

// llistxattr(path), lgetxattr(path, name): for the tests' tree comparisons (host paths they own).
Napi::Value LListXattr(const Napi::CallbackInfo& info) {
  std::string p = Str(info, 0);
  return XattrNames(info.Env(), PathList, p.c_str());
}

Napi::Value LGetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string p = Str(info, 0);
  std::string name = Str(info, 1);
  ssize_t n = lgetxattr(p.c_str(), name.c_str(), nullptr, 0);
  if (n < 0) return Napi::Number::New(env, -errno);
  std::vector<uint8_t> buf(static_cast<size_t>(n) + 1);
  n = lgetxattr(p.c_str(), name.c_str(), buf.data(), buf.size());
  if (n < 0) return Napi::Number::New(env, -errno);
  return Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(n));
}

// close(fd): for the fds openat gave (Node's fs warns when a worker closes an fd it did not open).
Napi::Value Close(const Napi::CallbackInfo& info) { return Rc(info.Env(), close(I32(info, 0))); }

// syncfs(fd): flushes the file system fd is on (one call for a whole unpacked layer).
Napi::Value SyncFs(const Napi::CallbackInfo& info) { return Rc(info.Env(), syncfs(I32(info, 0))); }

// flockNb(fd): 0 when the exclusive lock was taken, -EWOULDBLOCK when another holder has it.
Napi::Value FlockNb(const Napi::CallbackInfo& info) { return Rc(info.Env(), NSBOX_RETRY(flock(I32(info, 0), LOCK_EX | LOCK_NB))); }

}  // namespace

void InitFsAt(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("openat", Napi::Function::New(env, OpenAt));
  o.Set("mkdirat", Napi::Function::New(env, MkdirAt));
  o.Set("mknodat", Napi::Function::New(env, MknodAt));
  o.Set("symlinkat", Napi::Function::New(env, SymlinkAt));
  o.Set("linkat", Napi::Function::New(env, LinkAt));
  o.Set("unlinkat", Napi::Function::New(env, UnlinkAt));
  o.Set("lchownat", Napi::Function::New(env, LchownAt));
  o.Set("lutimesat", Napi::Function::New(env, LutimesAt));
  o.Set("lstatat", Napi::Function::New(env, LstatAt));
  o.Set("readlinkat", Napi::Function::New(env, ReadlinkAt));
  o.Set("readdirFd", Napi::Function::New(env, ReaddirFd));
  o.Set("fsetxattr", Napi::Function::New(env, FSetXattr));
  o.Set("fgetxattr", Napi::Function::New(env, FGetXattr));
  o.Set("flistxattr", Napi::Function::New(env, FListXattr));
  o.Set("llistxattr", Napi::Function::New(env, LListXattr));
  o.Set("lgetxattr", Napi::Function::New(env, LGetXattr));
  o.Set("syncfs", Napi::Function::New(env, SyncFs));
  o.Set("close", Napi::Function::New(env, Close));
  o.Set("flockNb", Napi::Function::New(env, FlockNb));
  Napi::Object k = Napi::Object::New(env);
  k.Set("O_PATH", Napi::Number::New(env, O_PATH));
  k.Set("O_DIRECTORY", Napi::Number::New(env, O_DIRECTORY));
  k.Set("O_NOFOLLOW", Napi::Number::New(env, O_NOFOLLOW));
  o.Set("constants", k);
  exports.Set("fsat", o);
}

}  // namespace nsbox_glue
