#pragma once
#include <napi.h>

namespace podcrypt {
// Registers the FdWatcher class on `exports`.
void InitFdWatcher(Napi::Env env, Napi::Object exports);
}  // namespace podcrypt
