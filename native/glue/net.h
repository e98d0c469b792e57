// net.h: the N-API side of bridged networking. Marshals the plan's `net` object into pre-built
// rtnetlink messages (native/core/netlink.cc) and exports the few netlink calls lib/network.ts makes
// on Node's own network namespace (the bridge, stale links). No policy here: lib/network.ts decides.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include <napi.h>

#include "../core/plan.h"

namespace nsbox_glue {

struct NetStorage {
  std::deque<std::vector<uint8_t>> bufs;
  std::vector<nsbox::NetMsg> msgs;
  std::string peer;
};

// Reads js.net (optional: absent/null means no bridged network) into st and the plan's net_* fields.
// False with a JS exception pending when its shape is wrong.
bool BuildNetPlan(Napi::Object js, NetStorage* st, nsbox::Plan* plan);

// Adds netList, netAddrs, netAddBridge, netAddAddr, netLinkUp, netDelLink, netSocket, tcpListen,
// lockFile, netPidfd, netnsTcpSocket to exports.
void InitNet(Napi::Env env, Napi::Object exports);

}  // namespace nsbox_glue
