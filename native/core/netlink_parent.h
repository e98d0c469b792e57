// netlink_parent.h: the parent's half of netlink.cc (see netlink.h). Builds the child's requests and
// talks rtnetlink to the calling process's own network namespace. Allocates: never for child.cc.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "netlink.h"

namespace nsbox {

// ---- parent side (may allocate) ----

// A growing rtnetlink message with nested attributes.
class NlMsg {
 public:
  NlMsg(uint16_t type, uint16_t flags);
  void* header(size_t len);                     // the family header right after nlmsghdr
  size_t attr(uint16_t type, const void* data, size_t len);  // returns the payload's offset
  size_t attr_u32(uint16_t type, uint32_t v) { return attr(type, &v, sizeof(v)); }
  size_t attr_str(uint16_t type, const char* s);
  size_t nest_begin(uint16_t type);
  void nest_end(size_t at);
  std::vector<uint8_t>& bytes() { return buf_; }

 private:
  void align();
  std::vector<uint8_t> buf_;
};

struct LinkInfo {
  std::string name;
  std::string kind;
  int index = 0;
  int master = 0;
  unsigned flags = 0;
};

// All of these talk to the network namespace of the calling process (Node's). 0 or an errno.
int nl_open();  // a NETLINK_ROUTE socket (close-on-exec), or -errno
int nl_list_links(std::vector<LinkInfo>* out);
struct AddrInfo {
  int index;
  uint32_t addr;  // IPv4, network order
  int prefix;
};
int nl_list_addrs(std::vector<AddrInfo>* out);  // every IPv4 address of the namespace
int nl_add_bridge(const char* name);
int nl_add_addr(int ifindex, uint32_t addr_be, int prefix);
int nl_link_up(int ifindex);
int nl_del_link(const char* name);

// The child's messages (parent builds, child sends).
std::vector<uint8_t> nl_build_veth(const char* host_if, int bridge_index, const char* peer_if,
                                   const uint8_t mac[6], uint32_t* nsfd_off);
std::vector<uint8_t> nl_build_link_up(uint32_t* ifindex_off);
std::vector<uint8_t> nl_build_addr(uint32_t addr_be, int prefix, uint32_t* ifindex_off);
std::vector<uint8_t> nl_build_default_route(uint32_t gw_be, uint32_t* ifindex_off);
// action: FR_ACT_TO_TBL (lookup main) or FR_ACT_PROHIBIT. Ports: lo == 0 means none.
std::vector<uint8_t> nl_build_rule(int family, uint32_t priority, uint32_t dst_be, int dst_len,
                                   uint8_t proto, uint16_t dport_lo, uint16_t dport_hi,
                                   uint16_t sport_lo, uint16_t sport_hi, uint8_t action);

// One accepted destination of the egress policy: an IPv4 network (dst_len 0: any) and, when
// dport_lo is not 0, a protocol (6 or 17) and destination port range.
struct NftAllow {
  uint32_t dst_be;
  int dst_len;
  uint8_t proto;
  uint16_t dport_lo;
  uint16_t dport_hi;
};

struct NftBatch {
  std::vector<uint8_t> bytes;
  uint32_t acks;  // how many NLMSG_ERROR answers the kernel sends (every inner message asks for one)
};

// The egress policy as nf_tables batches (table inet nsbox, chain egress: type filter, hook output,
// policy drop; `meta oif lo accept`, then one accept rule per entry), to be sent in order. Several
// batches because one netlink message may not exceed the socket's send buffer (a 256-entry allow-list
// with ports is 512 rules).
std::vector<NftBatch> nft_build_egress(const std::vector<NftAllow>& allow);

}  // namespace nsbox
