#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

namespace podcrypt {

// The data pointer of a typed array argument, checked for element size and length.
template <typename T>
T* TypedArg(const Napi::Value& v, const char* name, size_t need) {
  Napi::Env env = v.Env();
  if (!v.IsTypedArray())
    throw Napi::TypeError::New(env, std::string(name) + ": typed array expected");
  auto ta = v.As<Napi::TypedArray>();
  if (ta.ElementSize() != sizeof(T) || ta.ElementLength() < need) {
    throw Napi::RangeError::New(env, std::string(name) + ": wrong element type or too short");
  }
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

// The leading arguments of tunRead and udpRecv: (fd, arena, slotSize, headroom, capacity, max,
// lengths: Uint32Array). Packet i goes to arena[i*slot + headroom], at most `capacity` bytes.
struct RecvSlots {
  int fd;
  Napi::Buffer<uint8_t> arena;
  uint32_t slot;
  uint32_t headroom;
  uint32_t capacity;
  uint32_t max;
  uint32_t* lengths;

  // Whether headroom + capacity fits a slot and `max` slots fit the arena. In size_t: the operands
  // come from JS as uint32 and their uint32 sum or product would wrap (headroom 1 + capacity
  // 0xFFFFFFFF "fits" any slot), letting a read write past the arena.
  bool Fit() const {
    return static_cast<size_t>(headroom) + capacity <= slot &&
           static_cast<size_t>(slot) * max <= arena.Length();
  }
};

// Reads RecvSlots from info[0..6]; the caller has checked the count and that info[1] is a Buffer.
inline RecvSlots RecvSlotArgs(const Napi::CallbackInfo& info) {
  RecvSlots a;
  a.fd = info[0].As<Napi::Number>().Int32Value();
  a.arena = info[1].As<Napi::Buffer<uint8_t>>();
  a.slot = info[2].As<Napi::Number>().Uint32Value();
  a.headroom = info[3].As<Napi::Number>().Uint32Value();
  a.capacity = info[4].As<Napi::Number>().Uint32Value();
  a.max = info[5].As<Napi::Number>().Uint32Value();
  a.lengths = TypedArg<uint32_t>(info[6], "lengths", a.max);
  return a;
}

// Registers tunRead / tunWrite / setMtu / getMtu / setLinkUp / interfaceIndex on `exports`.
void InitTunBatch(Napi::Env env, Napi::Object exports);
// Registers udpOpen / udpSetMark / udpRecv / udpSend / encodeEndpoint / decodeEndpoint on
// `exports`.
void InitUdp(Napi::Env env, Napi::Object exports);

}  // namespace podcrypt
