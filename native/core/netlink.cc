// netlink.cc: rtnetlink for bridged networking. See netlink.h for which half runs where.
#include "netlink.h"
#include "netlink_parent.h"
#include "syscalls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace nsbox {

// ---------------------------------------------------------------------------------------------
// Child side: stack buffers and system calls only.

namespace {
// One whole message (or batch) to the kernel; -1 with errno (EMSGSIZE for a short send).
int nl_send(int sock, const void* msg, size_t len) {
  struct sockaddr_nl sa;
  for (size_t i = 0; i < sizeof(sa); i++) reinterpret_cast<char*>(&sa)[i] = 0;
  sa.nl_family = AF_NETLINK;
  ssize_t n = NSBOX_RETRY(sendto(sock, msg, len, 0, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)));
  if (n < 0) return -1;
  if (static_cast<size_t>(n) != len) {
    errno = EMSGSIZE;
    return -1;
  }
  return 0;
}
// One read of answers; end-of-file is EPROTO (the kernel never closes a netlink socket).
ssize_t nl_recv(int sock, char* buf, size_t len) {
  ssize_t n = NSBOX_RETRY(recv(sock, buf, len, 0));
  if (n == 0) {
    errno = EPROTO;
    return -1;
  }
  return n;
}
}  // namespace

int nl_request(int sock, void* msg, size_t len, uint32_t seq) {
  struct nlmsghdr* h = static_cast<struct nlmsghdr*>(msg);
  h->nlmsg_seq = seq;
  h->nlmsg_pid = 0;
  h->nlmsg_flags |= NLM_F_ACK;
  if (nl_send(sock, msg, len) != 0) return -1;
  ssize_t n;
  alignas(struct nlmsghdr) char buf[8192];
  for (int rounds = 0; rounds < 64; rounds++) {
    if ((n = nl_recv(sock, buf, sizeof(buf))) < 0) return -1;
    size_t left = static_cast<size_t>(n);
    for (struct nlmsghdr* r = reinterpret_cast<struct nlmsghdr*>(buf); NLMSG_OK(r, left); r = NLMSG_NEXT(r, left)) {
      if (r->nlmsg_seq != seq || r->nlmsg_type != NLMSG_ERROR) continue;
      if (r->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
        errno = EPROTO;
        return -1;
      }
      const struct nlmsgerr* e = static_cast<const struct nlmsgerr*>(NLMSG_DATA(r));
      if (e->error == 0) return 0;
      errno = -e->error;
      return -1;
    }
  }
  errno = EPROTO;
  return -1;
}

int nl_batch(int sock, const void* msg, size_t len, uint32_t acks) {
  if (nl_send(sock, msg, len) != 0) return -1;
  ssize_t n;
  alignas(struct nlmsghdr) char buf[8192];
  uint32_t got = 0;
  for (int rounds = 0; rounds < 4096 && got < acks; rounds++) {
    if ((n = nl_recv(sock, buf, sizeof(buf))) < 0) return -1;
    size_t left = static_cast<size_t>(n);
    for (struct nlmsghdr* r = reinterpret_cast<struct nlmsghdr*>(buf); NLMSG_OK(r, left); r = NLMSG_NEXT(r, left)) {
      if (r->nlmsg_type != NLMSG_ERROR) continue;
      if (r->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
        errno = EPROTO;
        return -1;
      }
      const struct nlmsgerr* e = static_cast<const struct nlmsgerr*>(NLMSG_DATA(r));
      if (e->error != 0) {
        errno = -e->error;
        return -1;
      }
      got++;
    }
  }
  if (got < acks) {
    errno = EPROTO;
    return -1;
  }
  return 0;
}

namespace {

void put_u32(char* at, uint32_t v) { memcpy(at, &v, sizeof(v)); }

int ifindex_of(const char* name) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct ifreq ifr;
  for (size_t i = 0; i < sizeof(ifr); i++) reinterpret_cast<char*>(&ifr)[i] = 0;
  for (size_t i = 0; name[i] && i < IFNAMSIZ - 1; i++) ifr.ifr_name[i] = name[i];
  int rc = ioctl(s, SIOCGIFINDEX, &ifr);
  int saved = errno;
  close(s);
  errno = saved;
  return rc == 0 ? ifr.ifr_ifindex : -1;
}

}  // namespace

int net_setup(const Plan* plan, int host_sock, int32_t* index) {
  // Our own netns, named by fd for the peer's IFLA_NET_NS_FD. /proc is this container's by now;
  // /proc/self is this process either way.
  // (Fault points, plan.h: fault_at, before each call an index names.)
  int nsfd = fault_at(plan, STEP_NET, -1) ? -1 : open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    *index = -1;
    return -1;
  }
  int own = fault_at(plan, STEP_NET, -2) ? -1 : socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (own < 0) {
    int e = errno;
    close(nsfd);
    errno = e;
    *index = -2;
    return -1;
  }
  int ifindex = 0;
  int rc = 0;
  int nft = -1;
  for (size_t i = 0; i < plan->n_net_msgs; i++) {
    const NetMsg& m = plan->net_msgs[i];
    if (m.nft_acks) {
      // An nf_tables batch: sent as built (nothing to patch), on a NETLINK_NETFILTER socket.
      if (nft < 0 && (fault_at(plan, STEP_NET, -4) || (nft = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER)) < 0)) {
        *index = -4;
        rc = -1;
        break;
      }
      if (fault_at(plan, STEP_NET, -5) || nl_batch(nft, m.data, m.len, m.nft_acks) != 0) {
        *index = -5;
        rc = -1;
        break;
      }
      continue;
    }
    alignas(struct nlmsghdr) char buf[1024];
    if (m.len > sizeof(buf) || m.nsfd_off + 4 > m.len || m.ifindex_off + 4 > m.len) {
      errno = EMSGSIZE;
      *index = static_cast<int32_t>(i);
      rc = -1;
      break;
    }
    for (uint32_t k = 0; k < m.len; k++) buf[k] = static_cast<char>(m.data[k]);
    if (m.nsfd_off) put_u32(buf + m.nsfd_off, static_cast<uint32_t>(nsfd));
    if (m.ifindex_off) {
      if (ifindex <= 0 && (fault_at(plan, STEP_NET, -3) || (ifindex = ifindex_of(plan->net_peer)) <= 0)) {
        *index = -3;
        rc = -1;
        break;
      }
      put_u32(buf + m.ifindex_off, static_cast<uint32_t>(ifindex));
    }
    int sock = m.on_host ? host_sock : own;
    if (fault_at(plan, STEP_NET, static_cast<int32_t>(i)) || nl_request(sock, buf, m.len, static_cast<uint32_t>(i + 1)) != 0) {
      *index = static_cast<int32_t>(i);
      rc = -1;
      break;
    }
  }
  int e = errno;
  if (nft >= 0) close(nft);
  close(own);
  close(nsfd);
  errno = e;
  return rc;
}

// ---------------------------------------------------------------------------------------------
// Parent side.

NlMsg::NlMsg(uint16_t type, uint16_t flags) : buf_(NLMSG_HDRLEN, 0) {
  struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(buf_.data());
  h->nlmsg_type = type;
  h->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  h->nlmsg_len = static_cast<uint32_t>(buf_.size());
}

void NlMsg::align() {
  buf_.resize(NLMSG_ALIGN(buf_.size()), 0);
  reinterpret_cast<struct nlmsghdr*>(buf_.data())->nlmsg_len = static_cast<uint32_t>(buf_.size());
}

void* NlMsg::header(size_t len) {
  size_t at = buf_.size();
  buf_.resize(at + len, 0);
  align();
  return buf_.data() + at;
}

size_t NlMsg::attr(uint16_t type, const void* data, size_t len) {
  size_t at = buf_.size();
  buf_.resize(at + RTA_LENGTH(len), 0);
  struct rtattr* a = reinterpret_cast<struct rtattr*>(buf_.data() + at);
  a->rta_type = type;
  a->rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
  if (len) memcpy(RTA_DATA(a), data, len);
  align();
  return at + RTA_LENGTH(0);
}

size_t NlMsg::attr_str(uint16_t type, const char* s) { return attr(type, s, strlen(s) + 1); }

size_t NlMsg::nest_begin(uint16_t type) {
  size_t at = buf_.size();
  attr(static_cast<uint16_t>(type | NLA_F_NESTED), nullptr, 0);
  return at;
}

void NlMsg::nest_end(size_t at) {
  struct rtattr* a = reinterpret_cast<struct rtattr*>(buf_.data() + at);
  a->rta_len = static_cast<uint16_t>(buf_.size() - at);
}

int nl_open() {
  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  return s < 0 ? -errno : s;
}

namespace {

// One request on a fresh socket: 0 or an errno.
int simple(NlMsg& m) {
  int s = nl_open();
  if (s < 0) return -s;
  int rc = nl_request(s, m.bytes().data(), m.bytes().size(), 1) == 0 ? 0 : errno;
  close(s);
  return rc;
}

// A dump request; calls each(nlmsghdr*) for every answer. 0 or an errno.
template <typename F>
int dump(NlMsg& m, F each) {
  int s = nl_open();
  if (s < 0) return -s;
  struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(m.bytes().data());
  h->nlmsg_seq = 1;
  int rc = 0;
  if (send(s, m.bytes().data(), m.bytes().size(), 0) < 0) {
    rc = errno;
    close(s);
    return rc;
  }
  std::vector<char> buf(32768);
  for (bool done = false; !done;) {
    ssize_t n = NSBOX_RETRY(recv(s, buf.data(), buf.size(), 0));
    if (n <= 0) {
      rc = n < 0 ? errno : EPROTO;
      break;
    }
    size_t left = static_cast<size_t>(n);
    for (struct nlmsghdr* r = reinterpret_cast<struct nlmsghdr*>(buf.data()); NLMSG_OK(r, left); r = NLMSG_NEXT(r, left)) {
      if (r->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (r->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr* e = static_cast<const struct nlmsgerr*>(NLMSG_DATA(r));
        rc = e->error ? -e->error : 0;
        done = true;
        break;
      }
      each(r);
    }
  }
  close(s);
  return rc;
}

}  // namespace

int nl_list_links(std::vector<LinkInfo>* out) {
  NlMsg m(RTM_GETLINK, NLM_F_DUMP);
  struct ifinfomsg* ifi = static_cast<struct ifinfomsg*>(m.header(sizeof(struct ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  return dump(m, [&](struct nlmsghdr* r) {
    if (r->nlmsg_type != RTM_NEWLINK) return;
    struct ifinfomsg* i = static_cast<struct ifinfomsg*>(NLMSG_DATA(r));
    LinkInfo li;
    li.index = i->ifi_index;
    li.flags = i->ifi_flags;
    int len = static_cast<int>(IFLA_PAYLOAD(r));
    for (struct rtattr* a = IFLA_RTA(i); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      int type = a->rta_type & NLA_TYPE_MASK;
      if (type == IFLA_IFNAME) li.name = static_cast<const char*>(RTA_DATA(a));
      if (type == IFLA_MASTER) memcpy(&li.master, RTA_DATA(a), sizeof(int));
      if (type == IFLA_LINKINFO) {
        int l2 = static_cast<int>(RTA_PAYLOAD(a));
        for (struct rtattr* b = static_cast<struct rtattr*>(RTA_DATA(a)); RTA_OK(b, l2); b = RTA_NEXT(b, l2)) {
          if ((b->rta_type & NLA_TYPE_MASK) == IFLA_INFO_KIND) li.kind = static_cast<const char*>(RTA_DATA(b));
        }
      }
    }
    out->push_back(li);
  });
}

int nl_list_addrs(std::vector<AddrInfo>* out) {
  NlMsg m(RTM_GETADDR, NLM_F_DUMP);
  struct ifaddrmsg* ifa = static_cast<struct ifaddrmsg*>(m.header(sizeof(struct ifaddrmsg)));
  ifa->ifa_family = AF_INET;
  return dump(m, [&](struct nlmsghdr* r) {
    if (r->nlmsg_type != RTM_NEWADDR) return;
    struct ifaddrmsg* a = static_cast<struct ifaddrmsg*>(NLMSG_DATA(r));
    if (a->ifa_family != AF_INET) return;
    int len = static_cast<int>(IFA_PAYLOAD(r));
    for (struct rtattr* t = IFA_RTA(a); RTA_OK(t, len); t = RTA_NEXT(t, len)) {
      if (t->rta_type == IFA_LOCAL) {
        uint32_t v;
        memcpy(&v, RTA_DATA(t), sizeof(v));
        out->push_back({static_cast<int>(a->ifa_index), v, a->ifa_prefixlen});
      }
    }
  });
}

int nl_add_bridge(const char* name) {
  NlMsg m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  m.header(sizeof(struct ifinfomsg));
  m.attr_str(IFLA_IFNAME, name);
  size_t li = m.nest_begin(IFLA_LINKINFO);
  m.attr_str(IFLA_INFO_KIND, "bridge");
  m.nest_end(li);
  return simple(m);
}

int nl_add_addr(int ifindex, uint32_t addr_be, int prefix) {
  NlMsg m(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  struct ifaddrmsg* a = static_cast<struct ifaddrmsg*>(m.header(sizeof(struct ifaddrmsg)));
  a->ifa_family = AF_INET;
  a->ifa_prefixlen = static_cast<uint8_t>(prefix);
  a->ifa_index = static_cast<uint32_t>(ifindex);
  m.attr(IFA_LOCAL, &addr_be, 4);
  m.attr(IFA_ADDRESS, &addr_be, 4);
  return simple(m);
}

int nl_link_up(int ifindex) {
  NlMsg m(RTM_NEWLINK, 0);
  struct ifinfomsg* i = static_cast<struct ifinfomsg*>(m.header(sizeof(struct ifinfomsg)));
  i->ifi_index = ifindex;
  i->ifi_flags = IFF_UP;
  i->ifi_change = IFF_UP;
  return simple(m);
}

int nl_del_link(const char* name) {
  NlMsg m(RTM_DELLINK, 0);
  m.header(sizeof(struct ifinfomsg));
  m.attr_str(IFLA_IFNAME, name);
  return simple(m);
}

std::vector<uint8_t> nl_build_veth(const char* host_if, int bridge_index, const char* peer_if,
                                   const uint8_t mac[6], uint32_t* nsfd_off) {
  NlMsg m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  struct ifinfomsg* i = static_cast<struct ifinfomsg*>(m.header(sizeof(struct ifinfomsg)));
  i->ifi_flags = IFF_UP;  // the host end is up and in the bridge as soon as it exists
  i->ifi_change = IFF_UP;
  m.attr_str(IFLA_IFNAME, host_if);
  m.attr_u32(IFLA_MASTER, static_cast<uint32_t>(bridge_index));
  size_t li = m.nest_begin(IFLA_LINKINFO);
  m.attr_str(IFLA_INFO_KIND, "veth");
  size_t data = m.nest_begin(IFLA_INFO_DATA);
  size_t peer = m.nest_begin(VETH_INFO_PEER);
  // The peer cannot be created up: veth_open() refuses (ENOTCONN) until the pair is linked. The
  // child brings it up in its own netns (nl_build_link_up).
  m.header(sizeof(struct ifinfomsg));
  m.attr_str(IFLA_IFNAME, peer_if);
  m.attr(IFLA_ADDRESS, mac, 6);
  *nsfd_off = static_cast<uint32_t>(m.attr_u32(IFLA_NET_NS_FD, 0));
  m.nest_end(peer);
  m.nest_end(data);
  m.nest_end(li);
  return m.bytes();
}

std::vector<uint8_t> nl_build_link_up(uint32_t* ifindex_off) {
  NlMsg m(RTM_NEWLINK, 0);
  struct ifinfomsg* i = static_cast<struct ifinfomsg*>(m.header(sizeof(struct ifinfomsg)));
  i->ifi_flags = IFF_UP;
  i->ifi_change = IFF_UP;
  *ifindex_off = static_cast<uint32_t>(reinterpret_cast<uint8_t*>(&i->ifi_index) - m.bytes().data());
  return m.bytes();
}

std::vector<uint8_t> nl_build_addr(uint32_t addr_be, int prefix, uint32_t* ifindex_off) {
  NlMsg m(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  struct ifaddrmsg* a = static_cast<struct ifaddrmsg*>(m.header(sizeof(struct ifaddrmsg)));
  a->ifa_family = AF_INET;
  a->ifa_prefixlen = static_cast<uint8_t>(prefix);
  *ifindex_off = static_cast<uint32_t>(reinterpret_cast<uint8_t*>(&a->ifa_index) - m.bytes().data());
  m.attr(IFA_LOCAL, &addr_be, 4);
  m.attr(IFA_ADDRESS, &addr_be, 4);
  uint32_t host_mask = prefix >= 32 ? 0 : (0xffffffffu >> prefix);
  uint32_t bcast = addr_be | htonl(host_mask);
  if (prefix < 31) m.attr(IFA_BROADCAST, &bcast, 4);
  return m.bytes();
}

std::vector<uint8_t> nl_build_default_route(uint32_t gw_be, uint32_t* ifindex_off) {
  NlMsg m(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  struct rtmsg* r = static_cast<struct rtmsg*>(m.header(sizeof(struct rtmsg)));
  r->rtm_family = AF_INET;
  r->rtm_table = RT_TABLE_MAIN;
  r->rtm_protocol = RTPROT_BOOT;
  r->rtm_scope = RT_SCOPE_UNIVERSE;
  r->rtm_type = RTN_UNICAST;
  m.attr(RTA_GATEWAY, &gw_be, 4);
  *ifindex_off = static_cast<uint32_t>(m.attr_u32(RTA_OIF, 0));
  return m.bytes();
}

std::vector<uint8_t> nl_build_rule(int family, uint32_t priority, uint32_t dst_be, int dst_len,
                                   uint8_t proto, uint16_t dport_lo, uint16_t dport_hi,
                                   uint16_t sport_lo, uint16_t sport_hi, uint8_t action) {
  NlMsg m(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL);
  struct fib_rule_hdr* h = static_cast<struct fib_rule_hdr*>(m.header(sizeof(struct fib_rule_hdr)));
  h->family = static_cast<uint8_t>(family);
  h->dst_len = static_cast<uint8_t>(dst_len);
  h->action = action;
  h->table = action == FR_ACT_TO_TBL ? RT_TABLE_MAIN : RT_TABLE_UNSPEC;
  m.attr_u32(FRA_PRIORITY, priority);
  if (action == FR_ACT_TO_TBL) m.attr_u32(FRA_TABLE, RT_TABLE_MAIN);
  if (family == AF_INET && dst_len > 0) m.attr(FRA_DST, &dst_be, 4);
  if (proto) m.attr(FRA_IP_PROTO, &proto, 1);
  if (dport_lo) {
    struct fib_rule_port_range pr = {dport_lo, dport_hi};
    m.attr(FRA_DPORT_RANGE, &pr, sizeof(pr));
  }
  if (sport_lo) {
    struct fib_rule_port_range pr = {sport_lo, sport_hi};
    m.attr(FRA_SPORT_RANGE, &pr, sizeof(pr));
  }
  return m.bytes();
}

namespace {

// nf_tables wants its integers in network byte order.
void nft_u32(NlMsg& m, uint16_t type, uint32_t v) {
  uint32_t be = htonl(v);
  m.attr(type, &be, 4);
}

NlMsg nft_msg(uint16_t type, uint16_t flags, uint8_t family, uint16_t res_id, uint32_t seq) {
  NlMsg m(type, flags);
  struct nfgenmsg* g = static_cast<struct nfgenmsg*>(m.header(sizeof(struct nfgenmsg)));
  g->nfgen_family = family;
  g->version = NFNETLINK_V0;
  g->res_id = htons(res_id);
  reinterpret_cast<struct nlmsghdr*>(m.bytes().data())->nlmsg_seq = seq;
  return m;
}

void nft_data(NlMsg& m, uint16_t type, const void* v, size_t len) {
  size_t d = m.nest_begin(type);
  m.attr(NFTA_DATA_VALUE, v, len);
  m.nest_end(d);
}

// One expression: NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }; body fills the data.
template <typename F>
void nft_expr(NlMsg& m, const char* name, F body) {
  size_t e = m.nest_begin(NFTA_LIST_ELEM);
  m.attr_str(NFTA_EXPR_NAME, name);
  size_t d = m.nest_begin(NFTA_EXPR_DATA);
  body();
  m.nest_end(d);
  m.nest_end(e);
}

void nft_meta(NlMsg& m, uint32_t key) {
  nft_expr(m, "meta", [&] {
    nft_u32(m, NFTA_META_KEY, key);
    nft_u32(m, NFTA_META_DREG, NFT_REG_1);
  });
}

void nft_cmp_eq(NlMsg& m, const void* v, size_t len) {
  nft_expr(m, "cmp", [&] {
    nft_u32(m, NFTA_CMP_SREG, NFT_REG_1);
    nft_u32(m, NFTA_CMP_OP, NFT_CMP_EQ);
    nft_data(m, NFTA_CMP_DATA, v, len);
  });
}

void nft_payload(NlMsg& m, uint32_t base, uint32_t offset, uint32_t len) {
  nft_expr(m, "payload", [&] {
    nft_u32(m, NFTA_PAYLOAD_DREG, NFT_REG_1);
    nft_u32(m, NFTA_PAYLOAD_BASE, base);
    nft_u32(m, NFTA_PAYLOAD_OFFSET, offset);
    nft_u32(m, NFTA_PAYLOAD_LEN, len);
  });
}

void nft_accept(NlMsg& m) {
  nft_expr(m, "immediate", [&] {
    nft_u32(m, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
    size_t d = m.nest_begin(NFTA_IMMEDIATE_DATA);
    size_t v = m.nest_begin(NFTA_DATA_VERDICT);
    nft_u32(m, NFTA_VERDICT_CODE, NF_ACCEPT);
    m.nest_end(v);
    m.nest_end(d);
  });
}

void append(std::vector<uint8_t>* out, NlMsg& m) { out->insert(out->end(), m.bytes().begin(), m.bytes().end()); }

const char kTable[] = "nsbox";
const char kChain[] = "egress";

}  // namespace

std::vector<NftBatch> nft_build_egress(const std::vector<NftAllow>& allow) {
  std::vector<NftBatch> out;
  uint32_t seq = 1;
  const uint16_t kAck = NLM_F_ACK;
  auto type = [](int msg) { return static_cast<uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | msg); };
  NftBatch* cur = nullptr;
  auto open_batch = [&] {
    out.push_back({{}, 0});
    cur = &out.back();
    NlMsg begin = nft_msg(NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, seq++);
    append(&cur->bytes, begin);
  };
  auto close_batch = [&] {
    NlMsg end = nft_msg(NFNL_MSG_BATCH_END, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, seq++);
    append(&cur->bytes, end);
  };
  open_batch();

  NlMsg table = nft_msg(type(NFT_MSG_NEWTABLE), NLM_F_CREATE | NLM_F_EXCL | kAck, NFPROTO_INET, 0, seq++);
  table.attr_str(NFTA_TABLE_NAME, kTable);
  append(&cur->bytes, table);
  cur->acks++;

  NlMsg chain = nft_msg(type(NFT_MSG_NEWCHAIN), NLM_F_CREATE | NLM_F_EXCL | kAck, NFPROTO_INET, 0, seq++);
  chain.attr_str(NFTA_CHAIN_TABLE, kTable);
  chain.attr_str(NFTA_CHAIN_NAME, kChain);
  size_t hook = chain.nest_begin(NFTA_CHAIN_HOOK);
  nft_u32(chain, NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_OUT);
  nft_u32(chain, NFTA_HOOK_PRIORITY, 0);
  chain.nest_end(hook);
  nft_u32(chain, NFTA_CHAIN_POLICY, NF_DROP);
  chain.attr_str(NFTA_CHAIN_TYPE, "filter");
  append(&cur->bytes, chain);
  cur->acks++;

  auto rule = [&](auto body) {
    if (cur->bytes.size() > 16384) {
      close_batch();
      open_batch();
    }
    NlMsg r = nft_msg(type(NFT_MSG_NEWRULE), NLM_F_CREATE | NLM_F_APPEND | kAck, NFPROTO_INET, 0, seq++);
    r.attr_str(NFTA_RULE_TABLE, kTable);
    r.attr_str(NFTA_RULE_CHAIN, kChain);
    size_t exprs = r.nest_begin(NFTA_RULE_EXPRESSIONS);
    body(r);
    nft_accept(r);
    r.nest_end(exprs);
    append(&cur->bytes, r);
    cur->acks++;
  };
  // Whatever goes out through loopback (127/8, the container's own address): always allowed, as
  // by the kernel's `local` routing rule. Loopback is ifindex 1 in every namespace.
  rule([&](NlMsg& r) {
    nft_meta(r, NFT_META_OIF);
    uint32_t lo = 1;
    nft_cmp_eq(r, &lo, 4);
  });
  for (const NftAllow& a : allow) {
    rule([&](NlMsg& r) {
      nft_meta(r, NFT_META_NFPROTO);
      uint8_t v4 = NFPROTO_IPV4;
      nft_cmp_eq(r, &v4, 1);
      if (a.dst_len > 0) {
        nft_payload(r, NFT_PAYLOAD_NETWORK_HEADER, 16, 4);  // the IPv4 destination address
        if (a.dst_len < 32) {
          uint32_t mask = htonl(0xffffffffu << (32 - a.dst_len));
          uint32_t zero = 0;
          nft_expr(r, "bitwise", [&] {
            nft_u32(r, NFTA_BITWISE_SREG, NFT_REG_1);
            nft_u32(r, NFTA_BITWISE_DREG, NFT_REG_1);
            nft_u32(r, NFTA_BITWISE_LEN, 4);
            nft_data(r, NFTA_BITWISE_MASK, &mask, 4);
            nft_data(r, NFTA_BITWISE_XOR, &zero, 4);
          });
        }
        uint32_t net = a.dst_be;
        nft_cmp_eq(r, &net, 4);
      }
      if (a.dport_lo) {
        nft_meta(r, NFT_META_L4PROTO);
        nft_cmp_eq(r, &a.proto, 1);
        nft_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);  // TCP and UDP: the destination port
        uint16_t lo = htons(a.dport_lo), hi = htons(a.dport_hi);
        if (a.dport_lo == a.dport_hi) {
          nft_cmp_eq(r, &lo, 2);
        } else {
          nft_expr(r, "range", [&] {
            nft_u32(r, NFTA_RANGE_SREG, NFT_REG_1);
            nft_u32(r, NFTA_RANGE_OP, NFT_RANGE_EQ);
            nft_data(r, NFTA_RANGE_FROM_DATA, &lo, 2);
            nft_data(r, NFTA_RANGE_TO_DATA, &hi, 2);
          });
        }
      }
    });
  }
  close_batch();
  return out;
}

}  // namespace nsbox
