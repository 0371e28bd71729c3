#pragma once
#include <napi.h>

namespace podcrypt {
// Registers listenTcpInNetns on `exports`.
void InitNetns(Napi::Env env, Napi::Object exports);
}  // namespace podcrypt
