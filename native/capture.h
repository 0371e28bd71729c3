#pragma once
#include <napi.h>

namespace podcrypt {
// Registers packetCaptureOpen and packetCaptureRead on `exports`.
void InitCapture(Napi::Env env, Napi::Object exports);
}  // namespace podcrypt
