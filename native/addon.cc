// podcrypt's native addon: only what Node has no API for (TUN, batched UDP, fd readiness, sockets
// in other network namespaces) and the batched AEAD of the WireGuard fast path.
#include <napi.h>
#include <unistd.h>

#include "aead.h"
#include "batch.h"
#include "capture.h"
#include "netns.h"
#include "poll.h"
#include "tun.h"

namespace {

Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    throw Napi::TypeError::New(env, "openTun(name: string)");
  }
  std::string actual, error;
  int fd = podcrypt::OpenTun(info[0].As<Napi::String>().Utf8Value(), &actual, &error);
  if (fd < 0) throw Napi::Error::New(env, error);
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("name", Napi::String::New(env, actual));
  return out;
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openTun", Napi::Function::New(env, OpenTun));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  podcrypt::InitFdWatcher(env, exports);
  podcrypt::InitTunBatch(env, exports);
  podcrypt::InitUdp(env, exports);
  podcrypt::InitAead(env, exports);
  podcrypt::InitNetns(env, exports);
  podcrypt::InitCapture(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(podcrypt_native, Init)
