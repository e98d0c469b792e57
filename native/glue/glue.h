// glue.h: what the parts of the N-API glue give each other. Each part adds its exports in an
// Init* function that addon.cc's module initialiser calls.
#pragma once

#include <napi.h>

#include "../core/plan.h"
#include "../core/spawn.h"

namespace nsbox_glue {

// watchers.cc: a Process (the pidfd watcher JS gets) that owns pidfd and status_fd (-1: none).
Napi::Object NewProcess(Napi::Env env, int pidfd, int status_fd);
// The result of finish_spawn as finishSpawn returns it: null (it runs) or the failure record.
Napi::Value FinishResultValue(Napi::Env env, nsbox::FinishResult r, const nsbox::ErrorRecord& rec);
// Process, finishSpawnAsync, cancelFinishSpawn, collectOutput, pidfdOpen.
void InitWatchers(Napi::Env env, Napi::Object exports);

// fds.cc: readFiles, pipe, sealedMemfd, socketpair, recvFd, setWinsize.
void InitFds(Napi::Env env, Napi::Object exports);

// test_hooks.cc: netnsReserveState, ipcnsReserveState, mntTemplateState, dumpable, setCloexec,
// testFilterProcess.
void InitTestHooks(Napi::Env env, Napi::Object exports);

// fsat.cc: the `fsat` object of *at() calls for the image unpacker (lib/images/unpack-worker.ts).
void InitFsAt(Napi::Env env, Napi::Object exports);

// addon.cc: the module's exports.
Napi::Object Init(Napi::Env env, Napi::Object exports);

}  // namespace nsbox_glue
