// Readiness of a file descriptor on the libuv loop (uv_poll_t): TUN and UDP reads wake the event
// loop directly, without a libuv threadpool read per packet. The JS callback then drains the fd in
// batches (tunRead / udpRecv), so one wake-up moves up to a whole batch.
#include "poll.h"

#include <uv.h>

namespace podcrypt {
namespace {

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "FdWatcher",
        {InstanceMethod("start", &FdWatcher::Start), InstanceMethod("stop", &FdWatcher::Stop),
         InstanceMethod("close", &FdWatcher::Close)});
  }

  // new FdWatcher(fd, callback(status, events)). status < 0 is a negated errno from libuv (the fd
  // reported an error, e.g. the TUN interface was deleted); the watcher is then stopped.
  explicit FdWatcher(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<FdWatcher>(info), context_(info.Env(), "podcrypt:FdWatcher") {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
      throw Napi::TypeError::New(env, "new FdWatcher(fd: number, callback: function)");
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      throw Napi::Error::New(env, "FdWatcher: no libuv loop");
    }
    handle_ = new uv_poll_t;
    int rc = uv_poll_init(loop, handle_, info[0].As<Napi::Number>().Int32Value());
    if (rc != 0) {
      delete handle_;
      handle_ = nullptr;
      throw Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(rc));
    }
    handle_->data = this;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  }

  ~FdWatcher() override { CloseHandle(); }

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<FdWatcher*>(handle->data);
    if (self == nullptr || self->callback_.IsEmpty()) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    try {
      self->callback_.MakeCallback(self->Value(),
                                   {Napi::Number::New(env, status), Napi::Number::New(env, events)},
                                   self->context_);
    } catch (const Napi::Error& e) {
      // An exception thrown by the JS callback: report it as uncaught, like any event handler.
      napi_fatal_exception(env, e.Value());
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (handle_ == nullptr) throw Napi::Error::New(info.Env(), "FdWatcher is closed");
    int rc = uv_poll_start(handle_, UV_READABLE | UV_DISCONNECT, OnPoll);
    if (rc != 0)
      throw Napi::Error::New(info.Env(), std::string("uv_poll_start: ") + uv_strerror(rc));
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    return info.Env().Undefined();
  }

  // Stops watching and releases the handle; the fd itself is not closed (its owner closes it).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseHandle();
    callback_.Reset();
    return info.Env().Undefined();
  }

  void CloseHandle() {
    if (handle_ == nullptr) return;
    uv_poll_stop(handle_);
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
  Napi::AsyncContext context_;
};

}  // namespace

void InitFdWatcher(Napi::Env env, Napi::Object exports) {
  exports.Set("FdWatcher", FdWatcher::Define(env));
}

}  // namespace podcrypt
