#pragma once
#include <string>

namespace podcrypt {
// Opens (creating if needed) the TUN interface `requested` in non-blocking mode without packet
// information headers. With `vnetHdr`, with IFF_VNET_HDR too (every read and write carries a
// virtio_net_hdr: native/offload.cc). Returns the fd, or -1 with `error` set.
int OpenTun(const std::string& requested, bool vnetHdr, std::string* actual, std::string* error);
}  // namespace podcrypt
