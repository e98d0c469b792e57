/*
 * nettry.c - a static helper that test/security/network-allow.test.js runs INSIDE containers to
 * try the ways around an egress allow-list. One attempt per run, one JSON line on stdout:
 *   {"ok":true,"data":"..."}  or  {"ok":false,"errno":N,"code":"E...","at":"connect|send|..."}
 *
 *   nettry tcp|udp ADDR PORT [options]      IPv4, or IPv6 when ADDR has a ':' (ADDR%IF for a scope)
 *     --sport N          bind this source port first (a published port's number)
 *     --bindtodev IF     SO_BINDTODEVICE (unprivileged since Linux 5.7)
 *     --unicast-if IF    IP_UNICAST_IF / IPV6_UNICAST_IF (no capability needed)
 *     --pktinfo IF       UDP only: the interface in an IP_PKTINFO control message
 *     --broadcast        SO_BROADCAST (UDP to a broadcast address)
 *     --src ADDR         bind this source address
 *     --dontroute        SO_DONTROUTE (send only to hosts on link)
 *   nettry listen PORT [--bindtodev IF]
 *     IPv4 TCP server on PORT: answers the first connection that completes within 5 s with "GUARDED"
 *     ({"ok":true,"data":"ADDR"}: who connected) or reports {"ok":false,...,"at":"accept"}.
 * TCP: connects (3 s at most), then reads what the server says first (1 s at most). UDP: sends one
 * datagram "nettry", waits 0.3 s (ARP) and reports whether sendmsg() accepted it. Exit 0 either way; 2 on bad usage.
 * Built static:  gcc -O2 -static -o nettry nettry.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void fail(const char *at, int e)
{
	const char *c = e == EACCES ? "EACCES" : e == EPERM ? "EPERM" : e == ECONNREFUSED ? "ECONNREFUSED"
		: e == ETIMEDOUT ? "ETIMEDOUT" : e == ENETUNREACH ? "ENETUNREACH" : e == EHOSTUNREACH ? "EHOSTUNREACH"
		: e == EADDRINUSE ? "EADDRINUSE" : e == EINVAL ? "EINVAL" : e == ENODEV ? "ENODEV" : e == EADDRNOTAVAIL ? "EADDRNOTAVAIL"
		: e == ENETDOWN ? "ENETDOWN" : "E?";
	printf("{\"ok\":false,\"errno\":%d,\"code\":\"%s\",\"at\":\"%s\"}\n", e, c, at);
	exit(0);
}

static void usage(const char *m)
{
	fprintf(stderr, "nettry: %s\n", m);
	exit(2);
}

static int listen_mode(int argc, char **argv)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0) fail("socket", errno);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (argc >= 5 && !strcmp(argv[3], "--bindtodev") && setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, argv[4], strlen(argv[4]) + 1))
		fail("SO_BINDTODEVICE", errno);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 8)) fail("listen", errno);
	printf("{\"listening\":true}\n");
	fflush(stdout);
	struct pollfd p = {s, POLLIN, 0};
	if (poll(&p, 1, 5000) <= 0) fail("accept", ETIMEDOUT);
	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);
	int c = accept(s, (struct sockaddr *)&peer, &pl);
	if (c < 0) fail("accept", errno);
	if (write(c, "GUARDED", 7) < 0) fail("write", errno);
	char b[INET_ADDRSTRLEN];
	printf("{\"ok\":true,\"data\":\"%s\"}\n", inet_ntop(AF_INET, &peer.sin_addr, b, sizeof(b)));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "listen")) return listen_mode(argc, argv);
	if (argc < 4) usage("nettry tcp|udp ADDR PORT [options]");
	int tcp = !strcmp(argv[1], "tcp");
	if (!tcp && strcmp(argv[1], "udp")) usage("tcp or udp");
	int sport = 0, bcast = 0, dontroute = 0;
	const char *bindtodev = NULL, *uif = NULL, *pktif = NULL, *src = NULL;
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--sport") && i + 1 < argc) sport = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--bindtodev") && i + 1 < argc) bindtodev = argv[++i];
		else if (!strcmp(argv[i], "--unicast-if") && i + 1 < argc) uif = argv[++i];
		else if (!strcmp(argv[i], "--pktinfo") && i + 1 < argc) pktif = argv[++i];
		else if (!strcmp(argv[i], "--src") && i + 1 < argc) src = argv[++i];
		else if (!strcmp(argv[i], "--broadcast")) bcast = 1;
		else if (!strcmp(argv[i], "--dontroute")) dontroute = 1;
		else usage("unknown option");
	}
	int v6 = strchr(argv[2], ':') != NULL;
	struct sockaddr_storage dst, me;
	socklen_t dlen, mlen;
	memset(&dst, 0, sizeof(dst));
	memset(&me, 0, sizeof(me));
	int port = atoi(argv[3]);
	if (v6) {
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&dst, *m = (struct sockaddr_in6 *)&me;
		char a[128];
		snprintf(a, sizeof(a), "%s", argv[2]);
		char *pct = strchr(a, '%');
		if (pct) {
			*pct = 0;
			d->sin6_scope_id = if_nametoindex(pct + 1);
		}
		d->sin6_family = AF_INET6;
		d->sin6_port = htons(port);
		if (inet_pton(AF_INET6, a, &d->sin6_addr) != 1) usage("bad address");
		m->sin6_family = AF_INET6;
		m->sin6_port = htons(sport);
		if (src && inet_pton(AF_INET6, src, &m->sin6_addr) != 1) usage("bad --src");
		dlen = mlen = sizeof(struct sockaddr_in6);
	} else {
		struct sockaddr_in *d = (struct sockaddr_in *)&dst, *m = (struct sockaddr_in *)&me;
		d->sin_family = AF_INET;
		d->sin_port = htons(port);
		if (inet_pton(AF_INET, argv[2], &d->sin_addr) != 1) usage("bad address");
		m->sin_family = AF_INET;
		m->sin_port = htons(sport);
		if (src && inet_pton(AF_INET, src, &m->sin_addr) != 1) usage("bad --src");
		dlen = mlen = sizeof(struct sockaddr_in);
	}
	int s = socket(v6 ? AF_INET6 : AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (s < 0) fail("socket", errno);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bcast && setsockopt(s, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one))) fail("SO_BROADCAST", errno);
	if (dontroute && setsockopt(s, SOL_SOCKET, SO_DONTROUTE, &one, sizeof(one))) fail("SO_DONTROUTE", errno);
	if ((sport || src) && bind(s, (struct sockaddr *)&me, mlen)) fail("bind", errno);
	if (bindtodev && setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, bindtodev, strlen(bindtodev) + 1)) fail("SO_BINDTODEVICE", errno);
	if (uif) {
		unsigned idx = if_nametoindex(uif);
		if (!idx) fail("if_nametoindex", errno);
		int rc;
		if (v6) {
			int i6 = (int)idx;
			rc = setsockopt(s, IPPROTO_IPV6, IPV6_UNICAST_IF, &i6, sizeof(i6));
		} else {
			uint32_t be = htonl(idx);  /* IP_UNICAST_IF takes the index in network order */
			rc = setsockopt(s, IPPROTO_IP, IP_UNICAST_IF, &be, sizeof(be));
		}
		if (rc) fail("IP_UNICAST_IF", errno);
	}
	if (!tcp) {
		char msg[] = "nettry";
		struct iovec iov = {msg, sizeof(msg) - 1};
		char cbuf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
		memset(cbuf, 0, sizeof(cbuf));
		struct msghdr mh = {.msg_name = &dst, .msg_namelen = dlen, .msg_iov = &iov, .msg_iovlen = 1};
		if (pktif) {
			struct cmsghdr *c = (struct cmsghdr *)cbuf;
			if (v6) {
				struct in6_pktinfo pi = {.ipi6_ifindex = if_nametoindex(pktif)};
				c->cmsg_level = IPPROTO_IPV6, c->cmsg_type = IPV6_PKTINFO, c->cmsg_len = CMSG_LEN(sizeof(pi));
				memcpy(CMSG_DATA(c), &pi, sizeof(pi));
				mh.msg_controllen = CMSG_SPACE(sizeof(pi));
			} else {
				struct in_pktinfo pi = {.ipi_ifindex = (int)if_nametoindex(pktif)};
				c->cmsg_level = IPPROTO_IP, c->cmsg_type = IP_PKTINFO, c->cmsg_len = CMSG_LEN(sizeof(pi));
				memcpy(CMSG_DATA(c), &pi, sizeof(pi));
				mh.msg_controllen = CMSG_SPACE(sizeof(pi));
			}
			mh.msg_control = cbuf;
		}
		if (sendmsg(s, &mh, 0) < 0) fail("send", errno);
		/* The datagram may wait for ARP: give it time to leave before the namespace goes. */
		usleep(300000);
		printf("{\"ok\":true,\"data\":\"\"}\n");
		return 0;
	}
	fcntl(s, F_SETFL, O_NONBLOCK);
	if (connect(s, (struct sockaddr *)&dst, dlen) && errno != EINPROGRESS) fail("connect", errno);
	struct pollfd p = {s, POLLOUT, 0};
	if (poll(&p, 1, 3000) <= 0) fail("connect", ETIMEDOUT);
	int err = 0;
	socklen_t el = sizeof(err);
	getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err) fail("connect", err);
	char buf[128];
	ssize_t n = 0;
	p.events = POLLIN;
	if (poll(&p, 1, 1000) > 0) n = read(s, buf, sizeof(buf) - 1);
	if (n < 0) n = 0;
	printf("{\"ok\":true,\"data\":\"");
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] >= 0x20 && buf[i] < 0x7f && buf[i] != '"' && buf[i] != '\\') putchar(buf[i]);
	printf("\"}\n");
	return 0;
}
