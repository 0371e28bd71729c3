// TUN device creation (Linux). Node has no API for the TUNSETIFF ioctl.
#include "tun.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace podcrypt {

int OpenTun(const std::string& requested, bool vnetHdr, std::string* actual, std::string* error) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    *error = std::string("open /dev/net/tun: ") + strerror(errno);
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0);
  if (requested.size() >= IFNAMSIZ) {
    close(fd);
    *error = "interface name too long: " + requested;
    return -1;
  }
  strncpy(ifr.ifr_name, requested.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    *error = std::string("TUNSETIFF ") + requested + ": " + strerror(errno);
    close(fd);
    return -1;
  }
  *actual = ifr.ifr_name;
  return fd;
}

}  // namespace podcrypt

// ---- Batched TUN I/O and link settings ---------------------------------------------------------

#include <sys/socket.h>

// From <net/if.h>, which cannot be included together with <linux/if.h>.
extern "C" unsigned int if_nametoindex(const char* ifname);

#include "batch.h"
#include "offload.h"

namespace podcrypt {
namespace {

// tunRead(fd, arena, slotSize, headroom, capacity, max, lengths: Uint32Array): number
// Reads up to `max` packets without blocking, packet i at arena[i*slotSize + headroom] (up to
// `capacity` bytes), its length into lengths[i]. Returns the count (0 when nothing is queued), or a
// negated errno when the first read fails with anything but EAGAIN (EBADFD/EIO: interface gone).
Napi::Value TunRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(env,
                               "tunRead(fd, arena, slotSize, headroom, capacity, max, lengths)");
  }
  RecvSlots args = RecvSlotArgs(info);
  if (!args.Fit()) throw Napi::RangeError::New(env, "tunRead: slots do not fit the arena");
  auto& [fd, arena, slot, headroom, capacity, max, lengths] = args;
  uint32_t n = 0;
  while (n < max) {
    ssize_t r = read(fd, arena.Data() + static_cast<size_t>(n) * slot + headroom, capacity);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || n > 0) break;
      return Napi::Number::New(env, -errno);
    }
    if (r == 0) {
      if (n > 0) break;
      return Napi::Number::New(env, -EIO);  // EOF: the device went away
    }
    lengths[n++] = static_cast<uint32_t>(r);
  }
  return Napi::Number::New(env, n);
}

// tunWrite(fd, arena, offsets: Uint32Array, lengths: Uint32Array, count, vnetHdr?): number
// Writes each packet (with `vnetHdr`, the fd has IFF_VNET_HDR: behind a virtio_net_hdr, runs of
// one TCP flow coalesced into one write, native/offload.cc); returns how many the kernel took. A
// packet it rejects (EINVAL: not an IP packet) is skipped; a dead fd (EBADFD, EIO, EBADF) returns a
// negated errno.
Napi::Value TunWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(env, "tunWrite(fd, arena, offsets, lengths, count)");
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto arena = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t count = info[4].As<Napi::Number>().Uint32Value();
  uint32_t* offsets = TypedArg<uint32_t>(info[2], "offsets", count);
  uint32_t* lengths = TypedArg<uint32_t>(info[3], "lengths", count);
  const bool vnet = info.Length() > 5 && info[5].ToBoolean().Value();
  if (vnet) {
    for (uint32_t i = 0; i < count; i++) {
      if (static_cast<size_t>(offsets[i]) + lengths[i] > arena.Length()) {
        throw Napi::RangeError::New(env, "tunWrite: packet outside the arena");
      }
    }
    return Napi::Number::New(
        env, static_cast<double>(WriteVnetBatch(fd, arena.Data(), offsets, lengths, count)));
  }
  uint32_t written = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (static_cast<size_t>(offsets[i]) + lengths[i] > arena.Length()) {
      throw Napi::RangeError::New(env, "tunWrite: packet outside the arena");
    }
    ssize_t r;
    do {
      r = write(fd, arena.Data() + offsets[i], lengths[i]);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) {
      written++;
    } else if (errno == EBADFD || errno == EIO || errno == EBADF) {
      return Napi::Number::New(env, -errno);
    }
  }
  return Napi::Number::New(env, written);
}

int LinkIoctl(const std::string& ifname, unsigned long request, struct ifreq* ifr,
              std::string* error) {
  if (ifname.size() >= IFNAMSIZ) {
    *error = "interface name too long: " + ifname;
    return -1;
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *error = std::string("socket: ") + strerror(errno);
    return -1;
  }
  strncpy(ifr->ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  int rc = ioctl(s, request, ifr);
  int saved = errno;
  close(s);
  if (rc < 0) {
    *error = ifname + ": " + strerror(saved);
    return -1;
  }
  return 0;
}

// setMtu(ifname, mtu): SIOCSIFMTU.
Napi::Value SetMtu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_mtu = info[1].As<Napi::Number>().Int32Value();
  std::string error;
  if (LinkIoctl(info[0].As<Napi::String>().Utf8Value(), SIOCSIFMTU, &ifr, &error) < 0) {
    throw Napi::Error::New(env, "set MTU: " + error);
  }
  return env.Undefined();
}

// getMtu(ifname): SIOCGIFMTU.
Napi::Value GetMtu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  std::string error;
  if (LinkIoctl(info[0].As<Napi::String>().Utf8Value(), SIOCGIFMTU, &ifr, &error) < 0) {
    throw Napi::Error::New(env, "get MTU: " + error);
  }
  return Napi::Number::New(env, ifr.ifr_mtu);
}

// setLinkUp(ifname, up): SIOCSIFFLAGS with IFF_UP set or cleared.
Napi::Value SetLinkUp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  std::string error;
  if (LinkIoctl(name, SIOCGIFFLAGS, &ifr, &error) < 0)
    throw Napi::Error::New(env, "link flags: " + error);
  if (info[1].ToBoolean().Value()) {
    ifr.ifr_flags |= IFF_UP;
  } else {
    ifr.ifr_flags &= ~IFF_UP;
  }
  if (LinkIoctl(name, SIOCSIFFLAGS, &ifr, &error) < 0)
    throw Napi::Error::New(env, "link up: " + error);
  return env.Undefined();
}

// setTunPersist(fd, on): TUNSETPERSIST. A persistent device outlives the fds attached to it: its
// addresses, routes and link state stay when the daemon dies, packets routed to it meanwhile are
// dropped by the kernel (no reader), and the next TUNSETIFF of the name attaches to it again.
Napi::Value SetTunPersist(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "setTunPersist(fd, on)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  unsigned long on = info[1].ToBoolean().Value() ? 1 : 0;
  if (ioctl(fd, TUNSETPERSIST, on) < 0) {
    throw Napi::Error::New(env, std::string("TUNSETPERSIST: ") + strerror(errno));
  }
  return env.Undefined();
}

// interfaceIndex(ifname): the ifindex, or 0 when no such interface exists (in this namespace).
Napi::Value InterfaceIndex(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(),
                           if_nametoindex(info[0].As<Napi::String>().Utf8Value().c_str()));
}

}  // namespace

void InitTunBatch(Napi::Env env, Napi::Object exports) {
  exports.Set("tunRead", Napi::Function::New(env, TunRead));
  exports.Set("tunWrite", Napi::Function::New(env, TunWrite));
  exports.Set("setMtu", Napi::Function::New(env, SetMtu));
  exports.Set("getMtu", Napi::Function::New(env, GetMtu));
  exports.Set("setLinkUp", Napi::Function::New(env, SetLinkUp));
  exports.Set("interfaceIndex", Napi::Function::New(env, InterfaceIndex));
  exports.Set("setTunPersist", Napi::Function::New(env, SetTunPersist));
}

}  // namespace podcrypt
