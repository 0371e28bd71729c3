#pragma once
#include <napi.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace podcrypt {

// What SplitVnetPacket produced: `count` slots filled; `done` false when the slots ran out before
// the last segment (call again with `first` advanced by `count`).
struct SplitResult {
  uint32_t count;
  bool done;
};

// Splits one read of a TUN with IFF_VNET_HDR (`len` bytes at `in`: virtio_net_hdr + packet) into
// packets at out, out + slot, ... (at most `room`, each under `capacity` bytes), starting with
// segment `first`; lengths[i] gets each length. A plain packet is copied (its partial checksum
// completed); a TCP super-segment is cut into MSS-sized segments with headers and checksums fixed.
// Garbage (a header that does not match the packet, an unknown GSO type) fills one slot with
// length 0, a plain packet too long one with length `capacity`: the caller drops both as malformed.
SplitResult SplitVnetPacket(const uint8_t* in, size_t len, uint32_t first, uint8_t* out,
                            uint32_t slot, uint32_t capacity, uint32_t room, uint32_t* lengths);

// TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) on a TUN fd opened with IFF_VNET_HDR.
bool EnableTunOffload(int fd, std::string* error);

// Writes one packet to a TUN fd opened with IFF_VNET_HDR (behind an all-zero virtio_net_hdr).
ssize_t WriteVnet(int fd, const uint8_t* packet, size_t len);

// Coalesces the TCP packets at arena + offsets[start], ... (lengths[]) that continue one another
// (the same flow, ack, window, options and IP fields; each a full segment of the first's payload
// size but the last, which may be shorter or carry PSH; their checksums valid; up to 64 KiB) into
// one virtio_net_hdr (gso TCPV4 / TCPV6, partial checksum) + super-packet at `out` (room for
// 10 + 65535 bytes): what the kernel's GRO would have made of them. Returns its length and sets
// `used` to the packets it holds, or returns 0 with `used` 1 when packet `start` goes alone.
size_t CoalesceTcp(const uint8_t* arena, const uint32_t* offsets, const uint32_t* lengths,
                   uint32_t count, uint32_t start, uint8_t* out, uint32_t* used);

// Writes `count` packets to a TUN fd with IFF_VNET_HDR, runs of one TCP flow coalesced
// (CoalesceTcp): one write per run. Returns the packets the kernel took, or a negated errno when
// the fd is dead (EBADFD, EIO, EBADF); a packet or run it refuses otherwise is skipped.
int64_t WriteVnetBatch(int fd, const uint8_t* arena, const uint32_t* offsets,
                       const uint32_t* lengths, uint32_t count);

// Registers tunReadOffload / tunSplit / tunVnetHdr on `exports`.
void InitOffload(Napi::Env env, Napi::Object exports);

}  // namespace podcrypt
