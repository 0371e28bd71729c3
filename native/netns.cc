// A listening TCP socket inside another network namespace. Node has no setns(2); the socket keeps
// the namespace it was created in, so one process can serve listeners in many namespaces (the
// local cluster's datastore relay).
#include "netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace podcrypt {
namespace {

// Creates, binds and listens while the calling thread is in the namespace at `nsPath`, then
// returns the thread to its own namespace. Returns the fd, or -1 with `error` set.
int ListenInNetns(const std::string& nsPath, const std::string& host, int port,
                  std::string* error) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    *error = std::string("open own namespace: ") + strerror(errno);
    return -1;
  }
  int target = open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    *error = "open " + nsPath + ": " + strerror(errno);
    close(self);
    return -1;
  }
  int fd = -1;
  if (setns(target, CLONE_NEWNET) < 0) {
    *error = std::string("setns ") + nsPath + ": " + strerror(errno);
  } else {
    sockaddr_storage addr{};
    socklen_t len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
    int family = AF_INET;
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(port);
      len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
      family = AF_INET6;
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(port);
      len = sizeof(*v6);
    }
    if (len == 0) {
      *error = "not an IP address: " + host;
    } else {
      fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      int one = 1;
      if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
          bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0 || listen(fd, 128) < 0) {
        *error = "listen on " + host + ":" + std::to_string(port) + " in " + nsPath + ": " +
                 strerror(errno);
        if (fd >= 0) close(fd);
        fd = -1;
      }
    }
    // Back to our own namespace whatever happened; failing that, this thread is unusable.
    if (setns(self, CLONE_NEWNET) < 0) {
      *error = std::string("setns back: ") + strerror(errno);
      if (fd >= 0) close(fd);
      fd = -1;
      abort();
    }
  }
  close(target);
  close(self);
  return fd;
}

// listenTcpInNetns(nsPath, host, port): fd
Napi::Value ListenTcpInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "listenTcpInNetns(nsPath: string, host: string, port: number)");
  }
  std::string error;
  int fd =
      ListenInNetns(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                    info[2].As<Napi::Number>().Int32Value(), &error);
  if (fd < 0) throw Napi::Error::New(env, error);
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("listenTcpInNetns", Napi::Function::New(env, ListenTcpInNetns));
}

}  // namespace podcrypt
