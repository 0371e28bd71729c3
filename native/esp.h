#pragma once
#include <napi.h>

namespace podcrypt {
// Registers espSealBatch / espOpenBatch (ESP AES-128-GCM, RFC 4303 / RFC 4106) on `exports`.
void InitEsp(Napi::Env env, Napi::Object exports);
}  // namespace podcrypt
