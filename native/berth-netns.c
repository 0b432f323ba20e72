/*
 * berth-netns: makes and plumbs a container's network namespace over
 * netlink, in one short process.
 *
 * The same work done with ip(8) takes two or three process starts (unshare,
 * ip inside the namespace, ip outside it) on the path of every container
 * start; this does it in a single one, through berthd's launcher.
 *
 *   berth-netns create NSPATH [VETH]   new namespace bind-mounted at NSPATH
 *                                      (an existing file), loopback up, and
 *                                      the endpoint VETH if given
 *   berth-netns veth NSPATH VETH       add an endpoint to an existing namespace
 *   berth-netns destroy NSPATH         unmount (lazily) and remove NSPATH
 *
 * VETH is one argument, comma-separated:
 *   IFNAME,HOSTIF,MAC,ADDR/PREFIX,GATEWAY,MTU,BRIDGE
 * GATEWAY empty for no default route, MTU 0 for the kernel's default. The
 * pair is made inside the namespace with its peer HOSTIF created directly
 * in the caller's namespace, which then joins BRIDGE and comes up.
 *
 * Errors: one line on stderr naming the step, exit status 1. A failed
 * `create` leaves no namespace mounted; a failed endpoint leaves no
 * interface behind.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *ns_path;
static int made_ns;

static void cleanup_ns(void)
{
	if (made_ns) {
		umount2(ns_path, MNT_DETACH);
		unlink(ns_path);
	}
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cleanup_ns();
	exit(1);
}

/* ------------------------------------------------------------ netlink */

struct req {
	struct nlmsghdr h;
	char buf[1024];
};

static int nl_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		die("netlink socket: %s", strerror(errno));
	return fd;
}

static void *tail(struct req *r)
{
	return (char *)&r->h + NLMSG_ALIGN(r->h.nlmsg_len);
}

static struct rtattr *attr(struct req *r, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = tail(r);
	size_t need = NLMSG_ALIGN(r->h.nlmsg_len) + RTA_SPACE(len);
	if (need > sizeof *r)
		die("netlink request too large");
	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	r->h.nlmsg_len = (uint32_t)need;
	return a;
}

static struct rtattr *nest(struct req *r, unsigned short type)
{
	return attr(r, type, NULL, 0);
}

static void nest_end(struct req *r, struct rtattr *a)
{
	a->rta_len = (unsigned short)((char *)tail(r) - (char *)a);
}

static void *body(struct req *r, uint16_t type, uint16_t flags, size_t len)
{
	memset(r, 0, sizeof *r);
	r->h.nlmsg_type = type;
	r->h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	r->h.nlmsg_len = (uint32_t)NLMSG_LENGTH(len);
	return NLMSG_DATA(&r->h);
}

/* Send one request and wait for its acknowledgement; returns 0 or -errno. */
static int talk(int fd, struct req *r)
{
	static uint32_t seq;
	r->h.nlmsg_seq = ++seq;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	if (sendto(fd, &r->h, r->h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
		return -errno;
	char buf[8192];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR)
				continue;
			return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
		}
	}
}

static int link_up(int fd, int index, int master)
{
	struct req r;
	struct ifinfomsg *ifi = body(&r, RTM_NEWLINK, 0, sizeof *ifi);
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	if (master > 0) {
		uint32_t m = (uint32_t)master;
		attr(&r, IFLA_MASTER, &m, sizeof m);
	}
	return talk(fd, &r);
}

static int link_del(int fd, int index)
{
	struct req r;
	struct ifinfomsg *ifi = body(&r, RTM_DELLINK, 0, sizeof *ifi);
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	return talk(fd, &r);
}

/* ------------------------------------------------------------ endpoints */

struct veth {
	char *ifname, *hostif, *mac, *cidr, *gateway, *mtu, *bridge;
};

static void parse_veth(char *spec, struct veth *v)
{
	char **fields[] = { &v->ifname, &v->hostif, &v->mac, &v->cidr, &v->gateway, &v->mtu, &v->bridge };
	size_t n = sizeof fields / sizeof fields[0];
	for (size_t i = 0; i < n; i++) {
		*fields[i] = spec;
		char *comma = strchr(spec, ',');
		if (i + 1 < n) {
			if (!comma)
				die("bad endpoint spec: want IFNAME,HOSTIF,MAC,ADDR/PREFIX,GATEWAY,MTU,BRIDGE");
			*comma = 0;
			spec = comma + 1;
		} else if (comma) {
			die("bad endpoint spec: too many fields");
		}
	}
	if (!*v->ifname || !*v->hostif || !*v->bridge || strlen(v->ifname) >= IFNAMSIZ || strlen(v->hostif) >= IFNAMSIZ)
		die("bad endpoint spec: interface names missing or too long");
}

static void parse_mac(const char *s, unsigned char mac[6])
{
	unsigned int b[6];
	char extra;
	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &extra) != 6)
		die("bad MAC address %s", s);
	for (int i = 0; i < 6; i++) {
		if (b[i] > 255)
			die("bad MAC address %s", s);
		mac[i] = (unsigned char)b[i];
	}
}

/*
 * Called inside the container's namespace; hostfd is the caller's. Makes
 * the pair, configures the inner end, then (back in the caller's
 * namespace) enslaves the outer end to the bridge.
 */
static void add_veth(struct veth *v, int hostfd)
{
	unsigned char mac[6];
	parse_mac(v->mac, mac);
	char *slash = strchr(v->cidr, '/');
	if (!slash)
		die("bad address %s: want ADDR/PREFIX", v->cidr);
	*slash = 0;
	struct in_addr addr, gw;
	int prefix = atoi(slash + 1);
	if (inet_pton(AF_INET, v->cidr, &addr) != 1 || prefix < 0 || prefix > 32)
		die("bad address %s/%s", v->cidr, slash + 1);
	int has_gw = *v->gateway != 0;
	if (has_gw && inet_pton(AF_INET, v->gateway, &gw) != 1)
		die("bad gateway %s", v->gateway);
	uint32_t mtu = (uint32_t)strtoul(v->mtu, NULL, 10);

	int fd = nl_open();
	struct req r;
	int err;

	struct ifinfomsg *ifi = body(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof *ifi);
	ifi->ifi_family = AF_UNSPEC;
	attr(&r, IFLA_IFNAME, v->ifname, strlen(v->ifname) + 1);
	attr(&r, IFLA_ADDRESS, mac, 6);
	if (mtu)
		attr(&r, IFLA_MTU, &mtu, sizeof mtu);
	struct rtattr *info = nest(&r, IFLA_LINKINFO);
	attr(&r, IFLA_INFO_KIND, "veth", 4);
	struct rtattr *data = nest(&r, IFLA_INFO_DATA);
	struct rtattr *peer = nest(&r, VETH_INFO_PEER);
	struct ifinfomsg pi = { .ifi_family = AF_UNSPEC };
	/* The peer's header sits in the attribute's payload, its attributes after it. */
	memcpy(tail(&r), &pi, sizeof pi);
	r.h.nlmsg_len += (uint32_t)NLMSG_ALIGN(sizeof pi);
	attr(&r, IFLA_IFNAME, v->hostif, strlen(v->hostif) + 1);
	uint32_t nsfd = (uint32_t)hostfd;
	attr(&r, IFLA_NET_NS_FD, &nsfd, sizeof nsfd);
	if (mtu)
		attr(&r, IFLA_MTU, &mtu, sizeof mtu);
	nest_end(&r, peer);
	nest_end(&r, data);
	nest_end(&r, info);
	if ((err = talk(fd, &r)) < 0)
		die("creating veth pair %s/%s: %s", v->ifname, v->hostif, strerror(-err));

	int index = (int)if_nametoindex(v->ifname);
	const char *step = NULL;
	if (!index) {
		err = -errno;
		step = "finding the new interface";
		goto undo;
	}
	struct ifaddrmsg *ifa = body(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, sizeof *ifa);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_index = (uint32_t)index;
	attr(&r, IFA_LOCAL, &addr, sizeof addr);
	attr(&r, IFA_ADDRESS, &addr, sizeof addr);
	if ((err = talk(fd, &r)) < 0) {
		step = "adding the address";
		goto undo;
	}
	if ((err = link_up(fd, index, 0)) < 0) {
		step = "bringing the interface up";
		goto undo;
	}
	if (has_gw) {
		struct rtmsg *rt = body(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, sizeof *rt);
		rt->rtm_family = AF_INET;
		rt->rtm_table = RT_TABLE_MAIN;
		rt->rtm_protocol = RTPROT_BOOT;
		rt->rtm_scope = RT_SCOPE_UNIVERSE;
		rt->rtm_type = RTN_UNICAST;
		uint32_t oif = (uint32_t)index;
		attr(&r, RTA_GATEWAY, &gw, sizeof gw);
		attr(&r, RTA_OIF, &oif, sizeof oif);
		if ((err = talk(fd, &r)) < 0) {
			step = "adding the default route";
			goto undo;
		}
	}

	/* The outer end, in the caller's namespace. */
	if (setns(hostfd, CLONE_NEWNET) < 0) {
		err = -errno;
		step = "returning to the host namespace";
		goto undo;
	}
	int hfd = nl_open();
	int hindex = (int)if_nametoindex(v->hostif);
	int bindex = (int)if_nametoindex(v->bridge);
	if (!hindex || !bindex) {
		err = -ENODEV;
		step = hindex ? "finding the bridge" : "finding the host end";
		if (hindex)
			link_del(hfd, hindex);
		die("%s (%s): %s", step, hindex ? v->bridge : v->hostif, strerror(-err));
	}
	if ((err = link_up(hfd, hindex, bindex)) < 0) {
		link_del(hfd, hindex);
		die("attaching %s to %s: %s", v->hostif, v->bridge, strerror(-err));
	}
	close(hfd);
	close(fd);
	return;
undo:
	link_del(fd, index ? index : (int)if_nametoindex(v->ifname));
	die("%s on %s: %s", step, v->ifname, strerror(-err));
}

/* ------------------------------------------------------------ commands */

static int open_host_ns(void)
{
	int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("opening this namespace: %s", strerror(errno));
	return fd;
}

static void create(const char *path, char *spec)
{
	int hostfd = open_host_ns();
	if (unshare(CLONE_NEWNET) < 0)
		die("new network namespace: %s", strerror(errno));
	if (mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) < 0)
		die("bind-mounting the namespace at %s: %s", path, strerror(errno));
	made_ns = 1;
	int fd = nl_open();
	int err = link_up(fd, (int)if_nametoindex("lo"), 0);
	if (err < 0)
		die("loopback up: %s", strerror(-err));
	close(fd);
	if (spec) {
		struct veth v;
		parse_veth(spec, &v);
		add_veth(&v, hostfd);
	}
}

static void join_and_add(const char *path, char *spec)
{
	struct veth v;
	parse_veth(spec, &v);
	int hostfd = open_host_ns();
	int nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0)
		die("opening namespace %s: %s", path, strerror(errno));
	if (setns(nsfd, CLONE_NEWNET) < 0)
		die("entering namespace %s: %s", path, strerror(errno));
	close(nsfd);
	add_veth(&v, hostfd);
}

static void destroy(const char *path)
{
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		die("unmounting %s: %s", path, strerror(errno));
	if (unlink(path) < 0 && errno != ENOENT)
		die("removing %s: %s", path, strerror(errno));
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "create") == 0 && argc <= 4) {
		ns_path = argv[2];
		create(argv[2], argc == 4 ? argv[3] : NULL);
	} else if (argc == 4 && strcmp(argv[1], "veth") == 0) {
		join_and_add(argv[2], argv[3]);
	} else if (argc == 3 && strcmp(argv[1], "destroy") == 0) {
		destroy(argv[2]);
	} else {
		fprintf(stderr, "usage: berth-netns create NSPATH [VETH] | veth NSPATH VETH | destroy NSPATH\n");
		return 2;
	}
	return 0;
}
