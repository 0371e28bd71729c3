// podcrypt's native addon: only what Node has no API for (TUN, batched UDP, fd readiness, sockets
// in other network namespaces) and the batched AEAD of the WireGuard and ESP fast paths.
#include <errno.h>
#include <napi.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "aead.h"
#include "batch.h"
#include "capture.h"
#include "esp.h"
#include "netns.h"
#include "offload.h"
#include "poll.h"
#include "tun.h"

namespace {

Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    throw Napi::TypeError::New(env, "openTun(name: string, offload?: boolean)");
  }
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const bool offload = info.Length() > 1 && info[1].ToBoolean().Value();
  std::string actual, error, offloadError;
  int fd = podcrypt::OpenTun(name, offload, &actual, &error);
  if (fd >= 0 && offload && !podcrypt::EnableTunOffload(fd, &offloadError)) {
    // The kernel refuses the offloads: the plain device instead (TUNSETIFF of the same name again
    // sets its flags anew, a persistent device included).
    close(fd);
    fd = podcrypt::OpenTun(name, false, &actual, &error);
  }
  if (fd < 0) throw Napi::Error::New(env, error);
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("name", Napi::String::New(env, actual));
  out.Set("vnetHdr", Napi::Boolean::New(env, offload && offloadError.empty()));
  if (!offloadError.empty()) out.Set("offloadError", Napi::String::New(env, offloadError));
  return out;
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// takeFd(pid, fd): a duplicate, in this process, of file descriptor `fd` of process `pid`: the same
// open file (pidfd_open(2) + pidfd_getfd(2), Linux 5.6; the caller needs ptrace rights over `pid`,
// as root has). A daemon handing over to its successor keeps its TUN device and UDP socket open
// while the successor takes them: nothing queued in the kernel for them is lost. The duplicate is
// close-on-exec; file status flags (O_NONBLOCK) are the open file's, shared with the original.
Napi::Value TakeFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "takeFd(pid: number, fd: number)");
  }
  const int64_t pid = info[0].As<Napi::Number>().Int64Value();
  const int64_t fd = info[1].As<Napi::Number>().Int64Value();
  if (pid < 1 || pid > INT32_MAX || fd < 0 || fd > INT32_MAX) {
    throw Napi::RangeError::New(env, "takeFd: pid must be 1..2^31-1 and fd 0..2^31-1");
  }
  const long pidfd = syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0);
  if (pidfd < 0) {
    throw Napi::Error::New(env, "pidfd_open(" + std::to_string(pid) + "): " + strerror(errno));
  }
  const long got = syscall(SYS_pidfd_getfd, static_cast<int>(pidfd), static_cast<int>(fd), 0);
  const int saved = errno;
  close(static_cast<int>(pidfd));
  if (got < 0) {
    throw Napi::Error::New(env, "pidfd_getfd(pid " + std::to_string(pid) + ", fd " +
                                    std::to_string(fd) + "): " + strerror(saved));
  }
  return Napi::Number::New(env, static_cast<double>(got));
}

// setSchedSlice(ns): asks the scheduler for a time slice of `ns` nanoseconds for the calling thread
// (sched_setattr(2) with sched_runtime on SCHED_OTHER / SCHED_BATCH, EEVDF custom slices, Linux
// 6.12). A shorter slice gives a waking thread an earlier virtual deadline, so it runs sooner on a
// busy CPU; its share of the CPU (nice, weight) stays as it was. The policy and nice value are
// kept; a realtime or deadline policy is left alone. Returns the slice in effect afterwards as the
// kernel reports it (0 when the kernel has no custom slices: it ignores the request), -1 when the
// policy is not a fair one; throws naming the syscall and errno.
// struct sched_attr of sched_setattr(2) (SCHED_ATTR_SIZE_VER1; glibc declares no wrapper, and the
// kernel header <linux/sched/types.h> clashes with <sched.h>).
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};
static_assert(sizeof(SchedAttr) == 56, "SCHED_ATTR_SIZE_VER1");

Napi::Value SetSchedSlice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "setSchedSlice(ns: number)");
  }
  const int64_t ns = info[0].As<Napi::Number>().Int64Value();
  if (ns < 100000 || ns > 100000000) {
    throw Napi::RangeError::New(env, "setSchedSlice: ns must be 100000..100000000 (0.1-100 ms)");
  }
  SchedAttr attr = {};
  if (syscall(SYS_sched_getattr, 0, &attr, sizeof(attr), 0) != 0) {
    throw Napi::Error::New(env, std::string("sched_getattr: ") + strerror(errno));
  }
  if (attr.sched_policy != SCHED_OTHER && attr.sched_policy != SCHED_BATCH) {
    return Napi::Number::New(env, -1);
  }
  attr.size = sizeof(attr);
  attr.sched_flags = 0;
  attr.sched_runtime = static_cast<uint64_t>(ns);
  if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
    throw Napi::Error::New(env, std::string("sched_setattr: ") + strerror(errno));
  }
  SchedAttr now = {};
  if (syscall(SYS_sched_getattr, 0, &now, sizeof(now), 0) != 0) {
    throw Napi::Error::New(env, std::string("sched_getattr: ") + strerror(errno));
  }
  return Napi::Number::New(env, static_cast<double>(now.sched_runtime));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openTun", Napi::Function::New(env, OpenTun));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("takeFd", Napi::Function::New(env, TakeFd));
  exports.Set("setSchedSlice", Napi::Function::New(env, SetSchedSlice));
  podcrypt::InitFdWatcher(env, exports);
  podcrypt::InitTunBatch(env, exports);
  podcrypt::InitUdp(env, exports);
  podcrypt::InitAead(env, exports);
  podcrypt::InitEsp(env, exports);
  podcrypt::InitNetns(env, exports);
  podcrypt::InitCapture(env, exports);
  podcrypt::InitOffload(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(podcrypt_native, Init)
