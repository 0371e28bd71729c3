#pragma once
#include <napi.h>

namespace podcrypt {
// Registers sealBatch / openBatch (WireGuard transport data, ChaCha20-Poly1305) on `exports`.
void InitAead(Napi::Env env, Napi::Object exports);
}  // namespace podcrypt
