// A bounded packet capture of one interface (AF_PACKET, ETH_P_ALL), for `verify` run by the
// agents: Node has no raw sockets. The socket sees frames in both directions after the
// interface's egress and before the IP layer's ingress, as tcpdump does, so a packet netfilter
// drops on its way out is not seen and one it drops on its way in is.
#include "capture.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace podcrypt {
namespace {

// packetCaptureOpen(ifname: string, rcvbuf: number): fd. Non-blocking, close-on-exec.
Napi::Value PacketCaptureOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "packetCaptureOpen(ifname: string, rcvbuf: number)");
  }
  std::string ifname = info[0].As<Napi::String>().Utf8Value();
  int rcvbuf = info[1].As<Napi::Number>().Int32Value();
  unsigned index = if_nametoindex(ifname.c_str());
  if (index == 0) throw Napi::Error::New(env, "capture " + ifname + ": no such interface");
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
  if (fd < 0) throw Napi::Error::New(env, std::string("capture socket: ") + strerror(errno));
  // SO_RCVBUFFORCE ignores net.core.rmem_max (needs CAP_NET_ADMIN, which the agent has); fall back.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = static_cast<int>(index);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    int err = errno;
    close(fd);
    throw Napi::Error::New(env, "capture bind " + ifname + ": " + strerror(err));
  }
  return Napi::Number::New(env, fd);
}

// packetCaptureRead(fd, buf): the length of the next frame copied into buf (truncated to its
// size), 0 when none is queued, or a negated errno.
Napi::Value PacketCaptureRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(env, "packetCaptureRead(fd: number, buf: Buffer)");
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto buf = info[1].As<Napi::Buffer<uint8_t>>();
  ssize_t n = recv(fd, buf.Data(), buf.Length(), MSG_DONTWAIT | MSG_TRUNC);
  if (n < 0) return Napi::Number::New(env, errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno);
  size_t got = static_cast<size_t>(n) < buf.Length() ? static_cast<size_t>(n) : buf.Length();
  return Napi::Number::New(env, static_cast<double>(got));
}

}  // namespace

void InitCapture(Napi::Env env, Napi::Object exports) {
  exports.Set("packetCaptureOpen", Napi::Function::New(env, PacketCaptureOpen));
  exports.Set("packetCaptureRead", Napi::Function::New(env, PacketCaptureRead));
}

}  // namespace podcrypt
