// UDP sockets for the WireGuard data path, created natively so that batches move with one system
// call: recvmmsg for receive, sendmmsg (optionally with UDP_SEGMENT, i.e. UDP GSO) for send.
//
// Endpoints cross the boundary as 20-byte entries: 16 address bytes (IPv4 in the first 4 for
// family 4) | port (big endian, 2) | family (4 or 6, 1) | 0. A dual-stack IPv6 socket reports IPv4
// peers as family 4, never as v4-mapped IPv6.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "batch.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace podcrypt {
namespace {

constexpr size_t kEntry = 20;
constexpr uint32_t kMaxBatch = 1024;
constexpr int kSocketBuffer = 8 << 20;
// Longest time one udpSend waits for socket buffer space before giving up on the rest of a batch.
constexpr int kSendWaitMs = 100;
// UDP_MAX_SEGMENTS of older kernels, and the largest UDP payload.
constexpr uint32_t kMaxSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;
// Room for one UDP_SEGMENT (send) or UDP_GRO (receive) control message per mmsghdr.
constexpr size_t kControlSpace = CMSG_SPACE(sizeof(int));

int SocketFamily(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return -1;
  return ss.ss_family;
}

// Writes a sockaddr for entry `e` usable on a socket of family `sockFamily`; returns its length or
// 0 when it cannot be expressed (an IPv6 peer on an IPv4-only socket).
socklen_t EntryToSockaddr(const uint8_t* e, int sockFamily, sockaddr_storage* out) {
  uint16_t port = static_cast<uint16_t>((e[16] << 8) | e[17]);
  memset(out, 0, sizeof(*out));
  if (sockFamily == AF_INET6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(out);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    if (e[18] == 4) {
      s6->sin6_addr.s6_addr[10] = 0xff;
      s6->sin6_addr.s6_addr[11] = 0xff;
      memcpy(&s6->sin6_addr.s6_addr[12], e, 4);
    } else {
      memcpy(&s6->sin6_addr, e, 16);
    }
    return sizeof(sockaddr_in6);
  }
  if (e[18] != 4) return 0;
  auto* s4 = reinterpret_cast<sockaddr_in*>(out);
  s4->sin_family = AF_INET;
  s4->sin_port = htons(port);
  memcpy(&s4->sin_addr, e, 4);
  return sizeof(sockaddr_in);
}

void SockaddrToEntry(const sockaddr_storage* ss, uint8_t* e) {
  memset(e, 0, kEntry);
  if (ss->ss_family == AF_INET6) {
    auto* s6 = reinterpret_cast<const sockaddr_in6*>(ss);
    const uint8_t* a = s6->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0) {
      memcpy(e, a + 12, 4);
      e[18] = 4;
    } else {
      memcpy(e, a, 16);
      e[18] = 6;
    }
    uint16_t port = ntohs(s6->sin6_port);
    e[16] = port >> 8;
    e[17] = port & 0xff;
  } else if (ss->ss_family == AF_INET) {
    auto* s4 = reinterpret_cast<const sockaddr_in*>(ss);
    memcpy(e, &s4->sin_addr, 4);
    e[18] = 4;
    uint16_t port = ntohs(s4->sin_port);
    e[16] = port >> 8;
    e[17] = port & 0xff;
  }
}

void SetBuffers(int fd) {
  int size = kSocketBuffer;
  // SO_*BUFFORCE needs CAP_NET_ADMIN; without it the plain option caps at the sysctl maximum.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  }
}

// udpOpen(port, fwmark, gro): {fd, port, family, gro}. Dual-stack [::]:port (IPV6_V6ONLY=0) when
// the namespace has IPv6, else 0.0.0.0:port. port 0 picks an ephemeral port (reported back).
Napi::Value UdpOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t port = info[0].As<Napi::Number>().Uint32Value();
  uint32_t mark =
      info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  if (port > 65535) throw Napi::RangeError::New(env, "udpOpen: port out of range");
  int family = AF_INET6;
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
    family = AF_INET;
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) throw Napi::Error::New(env, std::string("socket: ") + strerror(errno));
  auto fail = [&](const char* what) {
    std::string msg = std::string(what) + ": " + strerror(errno);
    close(fd);
    throw Napi::Error::New(env, msg);
  };
  int zero = 0;
  if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) {
    fail("IPV6_V6ONLY");
  }
  if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) fail("SO_MARK");
  // UDP GRO: the kernel may hand over runs of same-sized datagrams from one source as one buffer
  // (reported with a UDP_GRO cmsg by udpRecv). Kernels without it simply keep datagrams apart.
  bool gro = info.Length() > 2 && info[2].ToBoolean().Value();
  int one = 1;
  if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) < 0) gro = false;
  SetBuffers(fd);
  sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (family == AF_INET6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_addr = in6addr_any;
    s6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_ANY);
    s4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) fail("bind");
  len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) fail("getsockname");
  uint16_t bound = family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("port", Napi::Number::New(env, bound));
  out.Set("family", Napi::Number::New(env, family == AF_INET6 ? 6 : 4));
  out.Set("gro", Napi::Boolean::New(env, gro));
  return out;
}

// udpSetMark(fd, mark): SO_MARK (0 clears it).
Napi::Value UdpSetMark(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint32_t mark = info[1].As<Napi::Number>().Uint32Value();
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
    throw Napi::Error::New(env, std::string("SO_MARK: ") + strerror(errno));
  }
  return env.Undefined();
}

struct Scratch {
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iovs;
  std::vector<sockaddr_storage> addrs;
  std::vector<uint8_t> control;
  std::vector<uint32_t> segments;
  void Reserve(size_t n) {
    if (msgs.size() < n) {
      msgs.resize(n);
      segments.resize(n);
      iovs.resize(n);
      addrs.resize(n);
      control.resize(n * kControlSpace);
    }
  }
};

Scratch& Scratchpad() {
  static thread_local Scratch s;  // per thread: the addon may be loaded in worker threads too
  return s;
}

// udpRecv(fd, arena, slotSize, headroom, capacity, max, lengths: Uint32Array, from: Buffer,
//         segments?: Uint32Array): number
// With `segments`, segments[i] is the UDP GRO segment size of buffer i (0: one datagram): the
// buffer then holds consecutive datagrams of that size from the same source, the last one maybe
// shorter. recvmmsg without blocking: datagram i at arena[i*slotSize + headroom], its length in
// lengths[i] (0xFFFFFFFF when it was longer than `capacity` and got truncated), its source entry at
// from[i*20]. Returns the count, 0 when nothing is queued, or a negated errno.
Napi::Value UdpRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 8 || !info[1].IsBuffer() || !info[7].IsBuffer()) {
    throw Napi::TypeError::New(
        env, "udpRecv(fd, arena, slotSize, headroom, capacity, max, lengths, from)");
  }
  RecvSlots args = RecvSlotArgs(info);
  auto& [fd, arena, slot, headroom, capacity, max, lengths] = args;
  auto from = info[7].As<Napi::Buffer<uint8_t>>();
  uint32_t* segments = info.Length() > 8 && info[8].IsTypedArray()
                           ? TypedArg<uint32_t>(info[8], "segments", max)
                           : nullptr;
  if (max == 0 || max > kMaxBatch || !args.Fit() || from.Length() < kEntry * max) {
    throw Napi::RangeError::New(env, "udpRecv: slots do not fit the arena");
  }
  Scratch& s = Scratchpad();
  s.Reserve(max);
  for (uint32_t i = 0; i < max; i++) {
    s.iovs[i].iov_base = arena.Data() + static_cast<size_t>(i) * slot + headroom;
    s.iovs[i].iov_len = capacity;
    msghdr& h = s.msgs[i].msg_hdr;
    memset(&h, 0, sizeof(h));
    h.msg_name = &s.addrs[i];
    h.msg_namelen = sizeof(sockaddr_storage);
    h.msg_iov = &s.iovs[i];
    h.msg_iovlen = 1;
    if (segments != nullptr) {
      h.msg_control = s.control.data() + i * kControlSpace;
      h.msg_controllen = kControlSpace;
    }
  }
  int n;
  do {
    n = recvmmsg(fd, s.msgs.data(), max, MSG_DONTWAIT, nullptr);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
    return Napi::Number::New(env, -errno);
  }
  for (int i = 0; i < n; i++) {
    bool truncated = (s.msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
    lengths[i] = truncated ? 0xFFFFFFFFu : s.msgs[i].msg_len;
    SockaddrToEntry(&s.addrs[i], from.Data() + kEntry * i);
    if (segments != nullptr) {
      segments[i] = 0;
      msghdr& h = s.msgs[i].msg_hdr;
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
          int size = 0;
          memcpy(&size, CMSG_DATA(c), sizeof(size));
          if (size > 0 && static_cast<uint32_t>(size) < s.msgs[i].msg_len) segments[i] = size;
        }
      }
    }
  }
  return Napi::Number::New(env, n);
}

bool WaitWritable(int fd) {
  pollfd p = {fd, POLLOUT, 0};
  int rc;
  do {
    rc = poll(&p, 1, kSendWaitMs);
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

// udpSend(fd, arena, offsets, lengths, endpoints: Buffer, endpointIndex: Uint32Array, count,
//         gso: boolean, info?: Uint32Array): number
// Sends datagram i (arena[offsets[i]], lengths[i] bytes) to the entry
// endpoints[endpointIndex[i]*20]. With gso, consecutive datagrams to the same endpoint with the
// same length (the last of a run may be shorter) go as one UDP_SEGMENT message. Waits (bounded) for
// buffer space on EAGAIN, which is the back-pressure that paces a sender. Datagrams the kernel
// refuses (unreachable, no route, unsendable address) are skipped. When the kernel refuses GSO, the
// run is sent datagram by datagram and info[0] is set to 1. Returns how many datagrams were sent,
// or a negated errno when the socket itself is unusable.
Napi::Value UdpSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[1].IsBuffer() || !info[4].IsBuffer()) {
    throw Napi::TypeError::New(
        env,
        "udpSend(fd, arena, offsets, lengths, endpoints, endpointIndex, count, gso, info, family)");
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto arena = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t count = info[6].As<Napi::Number>().Uint32Value();
  uint32_t* offsets = TypedArg<uint32_t>(info[2], "offsets", count);
  uint32_t* lengths = TypedArg<uint32_t>(info[3], "lengths", count);
  auto endpoints = info[4].As<Napi::Buffer<uint8_t>>();
  uint32_t* endpointIndex = TypedArg<uint32_t>(info[5], "endpointIndex", count);
  bool gso = info.Length() > 7 && info[7].ToBoolean().Value();
  uint32_t* info_out = info.Length() > 8 && info[8].IsTypedArray()
                           ? TypedArg<uint32_t>(info[8], "info", 1)
                           : nullptr;
  // info[0]: set to 1 when the kernel refused UDP GSO; info[1] (when present): the errno of the
  // last datagram the kernel refused (EMSGSIZE, EPERM from a firewall, ...), 0 when none was.
  size_t info_len = info_out != nullptr ? info[8].As<Napi::TypedArray>().ElementLength() : 0;
  if (info_out != nullptr) info_out[0] = 0;
  if (info_len > 1) info_out[1] = 0;
  if (count > kMaxBatch) throw Napi::RangeError::New(env, "udpSend: batch too large");
  // info[9]: the socket's family as opened (4 or 6), which saves a getsockname per batch.
  int given = info.Length() > 9 && info[9].IsNumber() ? info[9].As<Napi::Number>().Int32Value() : 0;
  int family = given == 6 ? AF_INET6 : given == 4 ? AF_INET : SocketFamily(fd);
  if (family < 0) return Napi::Number::New(env, -errno);
  Scratch& s = Scratchpad();
  s.Reserve(count);
  uint32_t nmsgs = 0;
  uint32_t i = 0;
  while (i < count) {
    // size_t throughout: e + 1 in uint32 wraps to 0 for e = 0xFFFFFFFF and would pass the check.
    size_t e = endpointIndex[i];
    if ((e + 1) * kEntry > endpoints.Length() ||
        static_cast<size_t>(offsets[i]) + lengths[i] > arena.Length()) {
      throw Napi::RangeError::New(env, "udpSend: datagram or endpoint outside its buffer");
    }
    uint32_t run = 1;
    if (gso) {
      size_t total = lengths[i];
      while (i + run < count && run < kMaxSegments && endpointIndex[i + run] == e &&
             lengths[i + run] <= lengths[i] && total + lengths[i + run] <= kMaxGsoBytes &&
             static_cast<size_t>(offsets[i + run]) + lengths[i + run] <= arena.Length()) {
        total += lengths[i + run];
        run++;
        if (lengths[i + run - 1] < lengths[i]) break;  // a shorter datagram ends a GSO run
      }
    }
    for (uint32_t k = 0; k < run; k++) {
      s.iovs[i + k].iov_base = arena.Data() + offsets[i + k];
      s.iovs[i + k].iov_len = lengths[i + k];
    }
    msghdr& h = s.msgs[nmsgs].msg_hdr;
    memset(&h, 0, sizeof(h));
    socklen_t alen = EntryToSockaddr(endpoints.Data() + e * kEntry, family, &s.addrs[nmsgs]);
    h.msg_name = &s.addrs[nmsgs];
    h.msg_namelen = alen;
    h.msg_iov = &s.iovs[i];
    h.msg_iovlen = run;
    if (run > 1) {
      uint8_t* ctl = s.control.data() + nmsgs * kControlSpace;
      memset(ctl, 0, CMSG_SPACE(sizeof(uint16_t)));
      h.msg_control = ctl;
      h.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      cmsghdr* c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t seg = static_cast<uint16_t>(lengths[i]);  // <= kMaxGsoBytes in a run
      memcpy(CMSG_DATA(c), &seg, sizeof(seg));
    }
    s.segments[nmsgs] = alen == 0 ? 0 : run;  // an inexpressible address is skipped below
    nmsgs++;
    i += run;
  }
  uint32_t sent = 0;
  uint32_t m = 0;
  while (m < nmsgs) {
    if (s.segments[m] == 0) {
      m++;
      continue;
    }
    uint32_t end = m;
    while (end < nmsgs && s.segments[end] != 0) end++;
    int r = sendmmsg(fd, s.msgs.data() + m, end - m, 0);
    if (r > 0) {
      for (int k = 0; k < r; k++) sent += s.segments[m + k];
      m += r;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      if (!WaitWritable(fd)) break;  // the rest of the batch is dropped, as a full queue would
      continue;
    }
    if (errno == EBADF || errno == ENOTSOCK) return Napi::Number::New(env, -errno);
    msghdr& h = s.msgs[m].msg_hdr;
    int refused = errno;
    bool unsupported =
        refused == EIO || refused == EINVAL || refused == ENOPROTOOPT || refused == EOPNOTSUPP;
    if (h.msg_iovlen > 1 && (unsupported || refused == EMSGSIZE)) {
      // The kernel or the route's device cannot do UDP GSO (tell the caller, info[0] = 1, to stop
      // asking for it), or one datagram of the run is too big for the path: send this run one
      // datagram at a time, so only what cannot go is lost.
      if (unsupported && info_out != nullptr) info_out[0] = 1;
      for (size_t k = 0; k < h.msg_iovlen; k++) {
        msghdr single = h;
        single.msg_iov = h.msg_iov + k;
        single.msg_iovlen = 1;
        single.msg_control = nullptr;
        single.msg_controllen = 0;
        ssize_t r1;
        do {
          r1 = sendmsg(fd, &single, 0);
        } while (r1 < 0 && errno == EINTR);
        if (r1 >= 0)
          sent++;
        else if (info_len > 1)
          info_out[1] = static_cast<uint32_t>(errno);
      }
    } else if (info_len > 1) {
      info_out[1] = static_cast<uint32_t>(refused);
    }
    m++;  // this datagram was refused (ENETUNREACH, EPERM from a firewall, ...): skip it
  }
  return Napi::Number::New(env, sent);
}

// encodeEndpoint(address, port, out: Buffer, offset): boolean - writes a 20-byte entry; false
// when `address` is not an IPv4 or IPv6 literal.
Napi::Value EncodeEndpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string addr = info[0].As<Napi::String>().Utf8Value();
  uint32_t port = info[1].As<Napi::Number>().Uint32Value();
  auto out = info[2].As<Napi::Buffer<uint8_t>>();
  uint32_t offset = info[3].As<Napi::Number>().Uint32Value();
  if (static_cast<size_t>(offset) + kEntry > out.Length() || port > 65535) {
    throw Napi::RangeError::New(env, "encodeEndpoint: offset or port out of range");
  }
  uint8_t* e = out.Data() + offset;
  memset(e, 0, kEntry);
  if (inet_pton(AF_INET, addr.c_str(), e) == 1) {
    e[18] = 4;
  } else if (inet_pton(AF_INET6, addr.c_str(), e) == 1) {
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(e, mapped, 12) == 0) {
      memmove(e, e + 12, 4);
      memset(e + 4, 0, 12);
      e[18] = 4;
    } else {
      e[18] = 6;
    }
  } else {
    return Napi::Boolean::New(env, false);
  }
  e[16] = static_cast<uint8_t>(port >> 8);
  e[17] = static_cast<uint8_t>(port & 0xff);
  return Napi::Boolean::New(env, true);
}

// decodeEndpoint(buf, offset): {address, port} of a 20-byte entry.
Napi::Value DecodeEndpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  uint32_t offset = info[1].As<Napi::Number>().Uint32Value();
  if (static_cast<size_t>(offset) + kEntry > buf.Length()) {
    throw Napi::RangeError::New(env, "decodeEndpoint: offset out of range");
  }
  const uint8_t* e = buf.Data() + offset;
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(e[18] == 4 ? AF_INET : AF_INET6, e, text, sizeof(text)) == nullptr) {
    throw Napi::Error::New(env, "decodeEndpoint: not an endpoint entry");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("address", Napi::String::New(env, text));
  out.Set("port", Napi::Number::New(env, (e[16] << 8) | e[17]));
  return out;
}

#ifndef UDP_ENCAP
#define UDP_ENCAP 100
#endif
#ifndef UDP_ENCAP_ESPINUDP
#define UDP_ENCAP_ESPINUDP 2
#endif

// espInUdpOpen(port, family): fd. A blocking UDP socket of `family` (4, or 6 with IPV6_V6ONLY)
// bound to the wildcard address and `port`, marked UDP_ENCAP_ESPINUDP (RFC 3948): the kernel then
// hands ESP arriving in UDP on that port to XFRM instead of to the socket. Only the non-ESP
// datagrams (IKE, NAT-keepalives) would reach the socket.
Napi::Value EspInUdpOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t port = info[0].As<Napi::Number>().Uint32Value();
  uint32_t fam = info[1].As<Napi::Number>().Uint32Value();
  if (port == 0 || port > 65535)
    throw Napi::RangeError::New(env, "espInUdpOpen: port out of range");
  if (fam != 4 && fam != 6) throw Napi::RangeError::New(env, "espInUdpOpen: family must be 4 or 6");
  int family = fam == 6 ? AF_INET6 : AF_INET;
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Napi::Error::New(env, std::string("socket: ") + strerror(errno));
  auto fail = [&](const char* what) {
    std::string msg = std::string(what) + ": " + strerror(errno);
    close(fd);
    throw Napi::Error::New(env, msg);
  };
  int one = 1;
  if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
    fail("IPV6_V6ONLY");
  }
  int encap = UDP_ENCAP_ESPINUDP;
  if (setsockopt(fd, SOL_UDP, UDP_ENCAP, &encap, sizeof(encap)) < 0) fail("UDP_ENCAP");
  sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (family == AF_INET6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_addr = in6addr_any;
    s6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_ANY);
    s4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) fail("bind");
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("udpOpen", Napi::Function::New(env, UdpOpen));
  exports.Set("udpSetMark", Napi::Function::New(env, UdpSetMark));
  exports.Set("udpRecv", Napi::Function::New(env, UdpRecv));
  exports.Set("udpSend", Napi::Function::New(env, UdpSend));
  exports.Set("encodeEndpoint", Napi::Function::New(env, EncodeEndpoint));
  exports.Set("decodeEndpoint", Napi::Function::New(env, DecodeEndpoint));
  exports.Set("espInUdpOpen", Napi::Function::New(env, EspInUdpOpen));
}

}  // namespace podcrypt
