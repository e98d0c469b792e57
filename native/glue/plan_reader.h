// plan_reader.h: the JS plan (NativePlan in lib/native.ts) read into an nsbox::Plan and the storage
// that owns every byte it points to (plan_reader.cc). The one place the glue reads plan keys.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <napi.h>

#include "../core/plan.h"
#include "net.h"

namespace nsbox_glue {

using nsbox::Op;
using nsbox::Plan;

// Owns every byte a Plan points to. Strings live in a deque so their addresses never move.
// Owned copies of the plan's strings; the Plan points into them.
struct Strings {
  std::deque<std::string> strings;
  const char* keep(const std::string& s) {
    strings.push_back(s);
    return strings.back().c_str();
  }
};

// A plan's filesystem ops converted once (compileOps) and shared, read-only, by every spawn that
// passes its id as plan.opsCompiled: lib/plan.ts reuses the same list for the same options. The
// registry owns them until releaseOps (a plain map rather than napi Externals, whose finalizers
// Node does not run at exit: LeakSanitizer would report every list still cached then).
struct CompiledOps : Strings {
  std::vector<Op> ops;
  // The detached mount a WHERE_SRC_DETACHED root op names (its dev), owned by the list: closed
  // with it, after the last spawn that uses it.
  int detached_fd = -1;
  CompiledOps() = default;
  CompiledOps(const CompiledOps&) = delete;
  CompiledOps& operator=(const CompiledOps&) = delete;
  ~CompiledOps();
};

struct OpsRegistry {
  std::mutex mu;
  std::unordered_map<uint32_t, std::shared_ptr<const CompiledOps>> lists;
  uint32_t next = 1;
};
inline OpsRegistry& ops_registry() {
  static OpsRegistry r;
  return r;
}

struct PlanStorage : Strings {
  std::vector<Op> ops;
  std::shared_ptr<const CompiledOps> compiled;  // when the plan came with opsCompiled
  std::vector<nsbox::Rlimit> rlimits;
  std::vector<uint32_t> groups;
  std::vector<const char*> candidates;
  std::vector<char*> argv, envp, init_argv, tramp_argv;
  std::vector<uint8_t> seccomp;

  Plan plan{};
  bool netns_reserve = false;  // may take a namespace from the reserve (plan.netnsReserve)
  bool ipcns_reserve = false;  // may take an IPC namespace from its reserve (plan.ipcnsReserve)
  bool mnt_template = false;   // may use the mount namespace template (plan.mntTemplate)
  // spawnAsync only (plan.cgroupMkdir, plan.cgroupBase): the cgroup directory the worker makes and
  // opens for CLONE_INTO_CGROUP, so that the mkdir (slow while other containers come and go) is
  // not made on the JS thread.
  std::string cgroup_mkdir, cgroup_base;
  nsbox_glue::NetStorage net;  // bridged network messages (net.cc)
};

// Turns the JS plan (see NativePlan in lib/native.ts) into PlanStorage. Returns false with a JS
// exception pending when the shape is wrong: that is a bug in lib/, never a user error.
bool BuildPlan(Napi::Object js, PlanStorage* st);

// plan.statusRead: the read end of the init's status pipe, or -1.
int StatusRead(Napi::Object plan);

// A TypeError "nsbox native plan: <what>" (unless one is pending already); false.
bool ThrowType(Napi::Env env, const char* what);

// A finite number in [lo, hi] that is a whole number (casts of anything else are undefined).
bool IsIntIn(Napi::Value v, double lo, double hi, double* out);

// Adds compileOps and releaseOps to exports.
void InitPlanReader(Napi::Env env, Napi::Object exports);

}  // namespace nsbox_glue
