// TUN offloads (Linux): a TUN opened with IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 |
// TUN_F_TSO6) hands each read a struct virtio_net_hdr followed by either one packet (its transport
// checksum maybe left partial: VIRTIO_NET_HDR_F_NEEDS_CSUM) or a TCP "super-segment" of up to 64
// KiB that the kernel's TCP did not cut (gso_type TCPV4 / TCPV6, gso_size = the MSS). Here it is
// cut the way the kernel's own TCP segmentation would (tcp_gso_segment): each segment gets the
// headers of the super-segment with its own sequence number, IPv4 total length / identification /
// header checksum or IPv6 payload length, FIN and PSH only on the last segment, CWR only on the
// first, and a full TCP checksum. One read then carries tens of packets: the sender's TCP stack
// works in 64 KiB units and the daemon makes one syscall where it made tens. Writes carry a
// virtio_net_hdr too (all zero: a plain, fully checksummed packet).
#include "offload.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "batch.h"

namespace podcrypt {

namespace {

// struct virtio_net_hdr (<linux/virtio_net.h>, which does not compile as C++ here): host byte order
// on a TUN unless TUNSETVNETLE/BE says otherwise.
struct VnetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
constexpr size_t kVnetHdr = 10;
static_assert(sizeof(VnetHdr) == kVnetHdr, "virtio_net_hdr is 10 bytes");
constexpr uint8_t kNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kGsoNone = 0;    // VIRTIO_NET_HDR_GSO_NONE
constexpr uint8_t kGsoTcpV4 = 1;   // VIRTIO_NET_HDR_GSO_TCPV4
constexpr uint8_t kGsoTcpV6 = 4;   // VIRTIO_NET_HDR_GSO_TCPV6
constexpr uint8_t kGsoEcn = 0x80;  // VIRTIO_NET_HDR_GSO_ECN
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpCwr = 0x80;

inline uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline uint32_t Get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}
inline void Put32(uint8_t* p, uint32_t v) {
  Put16(p, static_cast<uint16_t>(v >> 16));
  Put16(p + 2, static_cast<uint16_t>(v));
}

// The Internet checksum's one's complement sum (RFC 1071) of `n` bytes, accumulated onto `acc`.
// Words are loaded in host order: one's complement addition commutes with byte swapping, so the
// folded sum stored back in host order is the checksum in network order. `p` must start at an
// even offset of the summed region.
uint64_t Sum(const uint8_t* p, size_t n, uint64_t acc) {
  while (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    acc += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    acc += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    uint8_t last[2] = {p[0], 0};
    uint16_t w;
    memcpy(&w, last, 2);
    acc += w;
  }
  return acc;
}

// Folds a sum to 16 bits and stores its complement (the checksum) at `at`.
void StoreChecksum(uint8_t* at, uint64_t acc, bool zeroIsFfff) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  uint16_t c = static_cast<uint16_t>(~acc);
  if (c == 0 && zeroIsFfff) c = 0xffff;
  memcpy(at, &c, 2);
}

// The TCP checksum of `tcpLen` bytes at `ip + tcpOff` (IPv4 or IPv6 pseudo-header, RFC 9293 3.1 /
// RFC 8200 8.1), its field zeroed first.
// The sum of the TCP pseudo-header of packet `ip` (addresses, protocol 6, `tcpLen`).
uint64_t PseudoSum(const uint8_t* ip, bool v6, size_t tcpLen) {
  uint8_t pseudo[40];
  size_t plen;
  if (v6) {
    memcpy(pseudo, ip + 8, 32);
    Put32(pseudo + 32, static_cast<uint32_t>(tcpLen));
    pseudo[36] = pseudo[37] = pseudo[38] = 0;
    pseudo[39] = 6;
    plen = 40;
  } else {
    memcpy(pseudo, ip + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = 6;
    Put16(pseudo + 10, static_cast<uint16_t>(tcpLen));
    plen = 12;
  }
  return Sum(pseudo, plen, 0);
}

uint16_t Fold(uint64_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(acc);
}

void TcpChecksum(uint8_t* ip, bool v6, size_t tcpOff, size_t tcpLen) {
  uint8_t* tcp = ip + tcpOff;
  tcp[16] = tcp[17] = 0;
  StoreChecksum(tcp + 16, Sum(tcp, tcpLen, PseudoSum(ip, v6, tcpLen)), false);
}

void Ipv4HeaderChecksum(uint8_t* ip) {
  size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  ip[10] = ip[11] = 0;
  StoreChecksum(ip + 10, Sum(ip, ihl, 0), false);
}

}  // namespace

SplitResult SplitVnetPacket(const uint8_t* in, size_t len, uint32_t first, uint8_t* out,
                            uint32_t slot, uint32_t capacity, uint32_t room, uint32_t* lengths) {
  SplitResult res{0, true};
  if (room == 0) return {0, false};
  if (len < kVnetHdr + 1) {
    lengths[0] = 0;  // garbage: the caller drops a zero length as malformed
    return {1, true};
  }
  VnetHdr h;
  memcpy(&h, in, kVnetHdr);
  const uint8_t* pkt = in + kVnetHdr;
  const size_t plen = len - kVnetHdr;
  const uint8_t gso = static_cast<uint8_t>(h.gso_type & ~kGsoEcn);
  const size_t csumStart = h.csum_start;
  const size_t csumOffset = h.csum_offset;

  if (gso == kGsoNone) {
    if (plen >= capacity) {
      lengths[0] = capacity;  // too long: the caller drops a full-capacity read
      return {1, true};
    }
    memcpy(out, pkt, plen);
    lengths[0] = static_cast<uint32_t>(plen);
    if (h.flags & kNeedsCsum) {
      if (csumStart + csumOffset + 2 > plen) {
        lengths[0] = 0;
        return {1, true};
      }
      // The field holds the pseudo-header sum; the sum from csum_start on completes it.
      StoreChecksum(out + csumStart + csumOffset, Sum(out + csumStart, plen - csumStart, 0), true);
    }
    return {1, true};
  }

  const bool v6 = gso == kGsoTcpV6;
  bool ok = gso == kGsoTcpV4 || v6;
  size_t hdrLen = 0;
  if (ok && v6) {
    ok = plen >= 40 && (pkt[0] >> 4) == 6 && csumStart >= 40 && (csumStart > 40 || pkt[6] == 6);
  } else if (ok) {
    ok = plen >= 20 && (pkt[0] >> 4) == 4 && pkt[9] == 6 &&
         csumStart == static_cast<size_t>(pkt[0] & 0x0f) * 4 && csumStart >= 20;
  }
  if (ok) ok = csumStart + 20 <= plen;
  if (ok) {
    hdrLen = csumStart + static_cast<size_t>(pkt[csumStart + 12] >> 4) * 4;
    ok = (pkt[csumStart + 12] >> 4) >= 5 && hdrLen <= plen && h.gso_size > 0 &&
         hdrLen + h.gso_size < capacity;
  }
  if (!ok) {
    lengths[0] = 0;
    return {1, true};
  }
  const size_t mss = h.gso_size;
  const size_t payload = plen - hdrLen;
  const uint32_t segments = payload == 0 ? 1 : static_cast<uint32_t>((payload + mss - 1) / mss);
  const uint32_t seq = Get32(pkt + csumStart + 4);
  const uint16_t id = v6 ? 0 : Get16(pkt + 4);
  uint32_t i = first;
  for (; i < segments && res.count < room; i++) {
    const size_t at = static_cast<size_t>(i) * mss;
    const size_t segLen = payload - at < mss ? payload - at : mss;
    const size_t total = hdrLen + segLen;
    uint8_t* o = out + static_cast<size_t>(res.count) * slot;
    memcpy(o, pkt, hdrLen);
    memcpy(o + hdrLen, pkt + hdrLen + at, segLen);
    if (v6) {
      Put16(o + 4, static_cast<uint16_t>(total - 40));
    } else {
      Put16(o + 2, static_cast<uint16_t>(total));
      Put16(o + 4, static_cast<uint16_t>(id + i));
      Ipv4HeaderChecksum(o);
    }
    uint8_t* tcp = o + csumStart;
    Put32(tcp + 4, seq + static_cast<uint32_t>(at));
    if (i + 1 < segments) tcp[13] &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (i > 0) tcp[13] &= static_cast<uint8_t>(~kTcpCwr);
    TcpChecksum(o, v6, csumStart, total - csumStart);
    lengths[res.count++] = static_cast<uint32_t>(total);
  }
  res.done = i == segments;
  return res;
}

namespace {

// The TCP segment of an IPv4 (no options, not a fragment) or IPv6 (TCP right after the fixed
// header) packet that may be coalesced, or nullptr. Sets the IP header length and payload length.
const uint8_t* CoalescableTcp(const uint8_t* p, size_t len, size_t* ipLen, size_t* payload) {
  if (len < 40) return nullptr;
  size_t ip;
  if ((p[0] >> 4) == 4) {
    if (p[0] != 0x45 || p[9] != 6 || Get16(p + 2) != len || (Get16(p + 6) & 0x3fff) != 0)
      return nullptr;  // options, not TCP, a length that does not match, MF or a fragment offset
    ip = 20;
  } else if ((p[0] >> 4) == 6) {
    if (len < 60 || p[6] != 6 || Get16(p + 4) + 40u != len) return nullptr;
    ip = 40;
  } else {
    return nullptr;
  }
  const uint8_t* tcp = p + ip;
  const size_t tcpLen = static_cast<size_t>(tcp[12] >> 4) * 4;
  if (tcpLen < 20 || ip + tcpLen > len) return nullptr;
  // Only ACK and PSH: SYN, FIN, RST, URG, ECE and CWR segments go as they are.
  if ((tcp[13] & ~kTcpPsh) != 0x10) return nullptr;
  *ipLen = ip;
  *payload = len - ip - tcpLen;
  return tcp;
}

// Whether the TCP checksum of packet `p` (its TCP segment at `ipLen`) verifies: a segment that
// arrived damaged must reach the kernel as it is, to be dropped there, not inside a super-packet
// whose checksum is taken on trust.
bool TcpChecksumValid(const uint8_t* p, size_t len, size_t ipLen) {
  const size_t tcpLen = len - ipLen;
  return Fold(Sum(p + ipLen, tcpLen, PseudoSum(p, ipLen == 40, tcpLen))) == 0xffff;
}

}  // namespace

size_t CoalesceTcp(const uint8_t* arena, const uint32_t* offsets, const uint32_t* lengths,
                   uint32_t count, uint32_t start, uint8_t* out, uint32_t* used) {
  *used = 1;
  const uint8_t* p0 = arena + offsets[start];
  const size_t len0 = lengths[start];
  size_t ipLen, mss;
  const uint8_t* t0 = CoalescableTcp(p0, len0, &ipLen, &mss);
  if (t0 == nullptr || mss == 0 || (t0[13] & kTcpPsh) || start + 1 >= count) return 0;
  const size_t hdrLen = len0 - mss;
  const bool v6 = ipLen == 40;
  uint32_t next = Get32(t0 + 4) + static_cast<uint32_t>(mss);
  size_t total = len0;
  bool push = false;
  uint32_t j = start + 1;
  for (; j < count && !push; j++) {
    const uint8_t* q = arena + offsets[j];
    const size_t lenQ = lengths[j];
    size_t ipQ, payQ;
    const uint8_t* tq = CoalescableTcp(q, lenQ, &ipQ, &payQ);
    if (tq == nullptr || ipQ != ipLen || payQ == 0 || payQ > mss || lenQ - payQ != hdrLen ||
        total + payQ > 65535 || Get32(tq + 4) != next)
      break;
    // The same flow, ack, window and options; IPv4: TOS, DF, TTL; IPv6: class, flow, hop limit.
    if (v6 ? memcmp(p0, q, 4) != 0 || p0[7] != q[7] || memcmp(p0 + 8, q + 8, 32) != 0
           : p0[1] != q[1] || p0[6] != q[6] || p0[8] != q[8] || memcmp(p0 + 12, q + 12, 8) != 0)
      break;
    if (memcmp(t0, tq, 4) != 0 || memcmp(t0 + 8, tq + 8, 5) != 0 || t0[14] != tq[14] ||
        t0[15] != tq[15] || memcmp(t0 + 20, tq + 20, hdrLen - ipLen - 20) != 0)
      break;
    if (!TcpChecksumValid(q, lenQ, ipLen)) break;
    if (j == start + 1 && !TcpChecksumValid(p0, len0, ipLen)) return 0;
    push = (tq[13] & kTcpPsh) != 0;
    next += static_cast<uint32_t>(payQ);
    total += payQ;
    if (payQ < mss) {
      j++;
      break;  // a short segment ends the run
    }
  }
  if (j == start + 1) return 0;
  *used = j - start;
  // The super-packet: p0's headers (PSH from the last segment), then every payload in order.
  VnetHdr h{kNeedsCsum,
            static_cast<uint8_t>(v6 ? kGsoTcpV6 : kGsoTcpV4),
            static_cast<uint16_t>(hdrLen),
            static_cast<uint16_t>(mss),
            static_cast<uint16_t>(ipLen),
            16};
  memcpy(out, &h, kVnetHdr);
  uint8_t* o = out + kVnetHdr;
  memcpy(o, p0, len0);
  size_t at = len0;
  for (uint32_t k = start + 1; k < j; k++) {
    const size_t pay = lengths[k] - hdrLen;
    memcpy(o + at, arena + offsets[k] + hdrLen, pay);
    at += pay;
  }
  uint8_t* tcp = o + ipLen;
  if (push) tcp[13] |= kTcpPsh;
  if (v6) {
    Put16(o + 4, static_cast<uint16_t>(total - 40));
  } else {
    Put16(o + 2, static_cast<uint16_t>(total));
    Ipv4HeaderChecksum(o);
  }
  // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, the kernel (or nobody: the stack
  // trusts it) completes the rest.
  const uint16_t partial = Fold(PseudoSum(o, v6, total - ipLen));
  memcpy(tcp + 16, &partial, 2);
  return kVnetHdr + total;
}

namespace {

// tunReadOffload(fd, arena, slotSize, headroom, capacity, max, lengths, scratch, state): number
// tunRead for a TUN with IFF_VNET_HDR: each read lands in `scratch` (at least 64 KiB + the header)
// and is split into arena slots as tunRead places packets. A super-segment that does not fit in the
// slots left stays in `scratch`, `state` (Uint32Array(3): its length, the next segment, and a count
// of the super-segments read) remembering it, and the next call continues it before reading again.
// Returns the count, or a negated errno when the first read fails with anything but EAGAIN.
Napi::Value TunReadOffload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 9 || !info[1].IsBuffer() || !info[7].IsBuffer()) {
    throw Napi::TypeError::New(
        env,
        "tunReadOffload(fd, arena, slotSize, headroom, capacity, max, lengths, scratch, state)");
  }
  RecvSlots args = RecvSlotArgs(info);
  if (!args.Fit()) throw Napi::RangeError::New(env, "tunReadOffload: slots do not fit the arena");
  auto scratch = info[7].As<Napi::Buffer<uint8_t>>();
  uint32_t* state = TypedArg<uint32_t>(info[8], "state", 3);
  if (scratch.Length() < kVnetHdr + 65535 || state[0] > scratch.Length()) {
    throw Napi::RangeError::New(env, "tunReadOffload: scratch too small");
  }
  auto& [fd, arena, slot, headroom, capacity, max, lengths] = args;
  uint32_t n = 0;
  while (n < max) {
    if (state[0] == 0) {
      ssize_t r = read(fd, scratch.Data(), scratch.Length());
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || n > 0) break;
        return Napi::Number::New(env, -errno);
      }
      if (r == 0) {
        if (n > 0) break;
        return Napi::Number::New(env, -EIO);
      }
      state[0] = static_cast<uint32_t>(r);
      state[1] = 0;
      if (r >= static_cast<ssize_t>(kVnetHdr) && (scratch.Data()[1] & ~kGsoEcn) != kGsoNone)
        state[2]++;
    }
    SplitResult s = SplitVnetPacket(scratch.Data(), state[0], state[1],
                                    arena.Data() + static_cast<size_t>(n) * slot + headroom, slot,
                                    capacity, max - n, lengths + n);
    n += s.count;
    if (s.done) {
      state[0] = 0;
    } else {
      state[1] += s.count;
    }
  }
  return Napi::Number::New(env, n);
}

// tunSplit(packet, arena, slotSize, headroom, capacity, max, lengths, first?): number
// Splits one read of a TUN with IFF_VNET_HDR (virtio_net_hdr + packet) into arena slots as
// tunReadOffload does, from segment `first` (default 0); returns how many slots it filled (at most
// `max`).
Napi::Value TunSplit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsBuffer() || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(
        env, "tunSplit(packet, arena, slotSize, headroom, capacity, max, lengths)");
  }
  auto packet = info[0].As<Napi::Buffer<uint8_t>>();
  RecvSlots args;
  args.fd = -1;
  args.arena = info[1].As<Napi::Buffer<uint8_t>>();
  args.slot = info[2].As<Napi::Number>().Uint32Value();
  args.headroom = info[3].As<Napi::Number>().Uint32Value();
  args.capacity = info[4].As<Napi::Number>().Uint32Value();
  args.max = info[5].As<Napi::Number>().Uint32Value();
  args.lengths = TypedArg<uint32_t>(info[6], "lengths", args.max);
  if (!args.Fit()) throw Napi::RangeError::New(env, "tunSplit: slots do not fit the arena");
  const uint32_t first = info.Length() > 7 ? info[7].As<Napi::Number>().Uint32Value() : 0;
  SplitResult s =
      SplitVnetPacket(packet.Data(), packet.Length(), first, args.arena.Data() + args.headroom,
                      args.slot, args.capacity, args.max, args.lengths);
  return Napi::Number::New(env, s.count);
}

// tunCoalesce(arena, offsets, lengths, count, start, out): [length, used]
// CoalesceTcp of packets start.. into `out` (at least 65 545 bytes): the super-packet's length with
// its virtio_net_hdr (0: packet `start` goes alone) and how many packets it holds.
Napi::Value TunCoalesce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsBuffer() || !info[5].IsBuffer()) {
    throw Napi::TypeError::New(env, "tunCoalesce(arena, offsets, lengths, count, start, out)");
  }
  auto arena = info[0].As<Napi::Buffer<uint8_t>>();
  const uint32_t count = info[3].As<Napi::Number>().Uint32Value();
  const uint32_t start = info[4].As<Napi::Number>().Uint32Value();
  auto out = info[5].As<Napi::Buffer<uint8_t>>();
  uint32_t* offsets = TypedArg<uint32_t>(info[1], "offsets", count);
  uint32_t* lengths = TypedArg<uint32_t>(info[2], "lengths", count);
  if (start >= count || out.Length() < kVnetHdr + 65535)
    throw Napi::RangeError::New(env, "tunCoalesce: start past count or out too small");
  for (uint32_t i = 0; i < count; i++) {
    if (static_cast<size_t>(offsets[i]) + lengths[i] > arena.Length())
      throw Napi::RangeError::New(env, "tunCoalesce: packet outside the arena");
  }
  uint32_t used;
  const size_t n = CoalesceTcp(arena.Data(), offsets, lengths, count, start, out.Data(), &used);
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set(0u, Napi::Number::New(env, static_cast<double>(n)));
  r.Set(1u, Napi::Number::New(env, used));
  return r;
}

// tunVnetHdr(fd): whether the TUN fd was opened with IFF_VNET_HDR (TUNGETIFF): a device handed
// over by a predecessor daemon keeps the mode its opener chose.
Napi::Value TunVnetHdr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), TUNGETIFF, &ifr) < 0) {
    throw Napi::Error::New(env, std::string("TUNGETIFF: ") + strerror(errno));
  }
  return Napi::Boolean::New(env, (ifr.ifr_flags & IFF_VNET_HDR) != 0);
}

}  // namespace

bool EnableTunOffload(int fd, std::string* error) {
  if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
    *error = std::string("TUNSETOFFLOAD: ") + strerror(errno);
    return false;
  }
  return true;
}

// A write of a TUN with IFF_VNET_HDR: an all-zero header (no GSO, checksum complete) before the
// packet.
ssize_t WriteVnet(int fd, const uint8_t* packet, size_t len) {
  static const uint8_t zero[kVnetHdr] = {};
  struct iovec iov[2] = {{const_cast<uint8_t*>(zero), kVnetHdr},
                         {const_cast<uint8_t*>(packet), len}};
  return writev(fd, iov, 2);
}

int64_t WriteVnetBatch(int fd, const uint8_t* arena, const uint32_t* offsets,
                       const uint32_t* lengths, uint32_t count) {
  thread_local std::vector<uint8_t> super(kVnetHdr + 65535);
  int64_t written = 0;
  for (uint32_t i = 0; i < count;) {
    uint32_t used;
    const size_t n = CoalesceTcp(arena, offsets, lengths, count, i, super.data(), &used);
    ssize_t r;
    do {
      r = n > 0 ? write(fd, super.data(), n) : WriteVnet(fd, arena + offsets[i], lengths[i]);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) {
      written += used;
    } else if (errno == EBADFD || errno == EIO || errno == EBADF) {
      return -errno;
    }
    i += used;
  }
  return written;
}

void InitOffload(Napi::Env env, Napi::Object exports) {
  exports.Set("tunReadOffload", Napi::Function::New(env, TunReadOffload));
  exports.Set("tunSplit", Napi::Function::New(env, TunSplit));
  exports.Set("tunVnetHdr", Napi::Function::New(env, TunVnetHdr));
  exports.Set("tunCoalesce", Napi::Function::New(env, TunCoalesce));
}

}  // namespace podcrypt
