// netlink.h: rtnetlink for bridged networking (network: 'bridge').
//
// Two kinds of callers:
//  - the child (child.cc, between clone3 and execve): nl_request() and net_setup() only. They use
//    stack buffers and raw system calls over messages the parent built into the Plan.
//  - the parent (the glue, on Node's JS thread, in Node's own network namespace): the NlMsg builder
//    and the nl_* helpers of netlink_parent.h, which may allocate. Node's own threads never enter a
//    namespace (the published-port forwarder's sockets are made by a short-lived thread of their
//    own: glue/net.cc, netnsTcpSocket). This header stays free of anything that allocates: child.cc includes it.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "plan.h"

namespace nsbox {

// ---- child side (no allocation) ----

// Sends one request on a NETLINK_ROUTE socket and reads until its NLMSG_ERROR answer.
// 0 on an ack; -1 with errno set otherwise.
int nl_request(int sock, void* msg, size_t len, uint32_t seq);

// Sends a whole nf_tables batch (several messages in one buffer) on a NETLINK_NETFILTER socket and
// reads until `acks` acknowledgements have come, or an error. 0, or -1 with errno set.
int nl_batch(int sock, const void* msg, size_t len, uint32_t acks);

// Runs plan->net_msgs in order (see NetMsg in plan.h); host_sock is plan->net_host_sock (the child
// may have moved it). Returns 0, or -1 with errno and *index set to the message (or a negative
// phase: -1 open of the own netns, -2 own socket, -3 peer ifindex, -4 the NETLINK_NETFILTER socket,
// -5 the nf_tables batch).
int net_setup(const Plan* plan, int host_sock, int32_t* index);

}  // namespace nsbox
