// Batched WireGuard transport-data AEAD (whitepaper section 5.4.6) in place over an arena Buffer,
// with OpenSSL's ChaCha20-Poly1305 from Node's own bundled OpenSSL (its symbols are exported by
// the node binary). One EVP context is reused for every packet: no allocation per packet.
//
// Message layout at offsets[i]:  type=4 (1) | reserved=0 (3) | receiver LE32 | counter LE64 |
// ciphertext of the zero-padded plaintext | 16-byte tag. Nonce = 4 zero bytes || counter LE64;
// no associated data.
#include "aead.h"

#include <cstdint>
#include <cstring>

#include "batch.h"
#include "evp.h"

namespace podcrypt {
namespace {

constexpr uint32_t kHeader = 16;
constexpr uint32_t kTag = 16;
constexpr uint32_t kKey = 32;

AeadContexts& Contexts(Napi::Env env) {
  static thread_local AeadContexts ctx;
  return InitAead(env, ctx, "ChaCha20-Poly1305");
}

inline void PutLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t GetLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

// WireGuard's padding rule (as wireguard-go calculatePaddingSize): pad to a multiple of 16 but
// never past the MTU.
// In size_t: for a length near 2^32 the uint32 sums wrap, and a "padded" length smaller than the
// plaintext would pass the caller's bound check and then zero-fill gigabytes.
inline size_t PaddedLength(size_t len, size_t mtu) {
  if (mtu == 0) return (len + 15) & ~static_cast<size_t>(15);
  size_t last = len > mtu ? len % mtu : len;
  size_t padded = (last + 15) & ~static_cast<size_t>(15);
  if (padded > mtu) padded = mtu;
  return len + (padded - last);
}

// sealBatch(arena, offsets: Uint32Array, lengths: Uint32Array, keys: Buffer, keyIndex: Uint32Array,
//           receivers: Uint32Array, counters: Float64Array, mtu, count): void
// lengths[i] is the plaintext length at offsets[i]+16 on input and the message length on output.
// The caller guarantees 16 + padded + 16 bytes of room at each offset.
Napi::Value SealBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 9 || !info[0].IsBuffer() || !info[3].IsBuffer()) {
    throw Napi::TypeError::New(
        env, "sealBatch(arena, offsets, lengths, keys, keyIndex, receivers, counters, mtu, count)");
  }
  auto arena = info[0].As<Napi::Buffer<uint8_t>>();
  auto keys = info[3].As<Napi::Buffer<uint8_t>>();
  uint32_t mtu = info[7].As<Napi::Number>().Uint32Value();
  uint32_t count = info[8].As<Napi::Number>().Uint32Value();
  uint32_t* offsets = TypedArg<uint32_t>(info[1], "offsets", count);
  uint32_t* lengths = TypedArg<uint32_t>(info[2], "lengths", count);
  uint32_t* keyIndex = TypedArg<uint32_t>(info[4], "keyIndex", count);
  uint32_t* receivers = TypedArg<uint32_t>(info[5], "receivers", count);
  double* counters = TypedArg<double>(info[6], "counters", count);
  AeadContexts& ctx = Contexts(env);
  uint8_t* base = arena.Data();
  size_t arenaLen = arena.Length();
  size_t keyCount = keys.Length() / kKey;
  for (uint32_t i = 0; i < count; i++) {
    size_t len = lengths[i];
    size_t padded = PaddedLength(len, mtu);
    size_t off = offsets[i];
    if (off + kHeader + padded + kTag > arenaLen || padded > kMaxChunk || keyIndex[i] >= keyCount) {
      throw Napi::RangeError::New(env, "sealBatch: packet outside the arena or bad key index");
    }
    uint8_t* msg = base + off;
    uint8_t* data = msg + kHeader;
    if (padded > len) memset(data + len, 0, padded - len);
    uint64_t counter = static_cast<uint64_t>(counters[i]);
    uint8_t nonce[12] = {0};
    PutLe64(nonce + 4, counter);
    int outl = 0;
    if (EVP_CipherInit_ex(ctx.enc, nullptr, nullptr,
                          keys.Data() + static_cast<size_t>(keyIndex[i]) * kKey, nonce, 1) != 1 ||
        (padded > 0 &&
         EVP_EncryptUpdate(ctx.enc, data, &outl, data, static_cast<int>(padded)) != 1) ||
        EVP_EncryptFinal_ex(ctx.enc, data + padded, &outl) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.enc, EVP_CTRL_AEAD_GET_TAG, kTag, data + padded) != 1) {
      throw Napi::Error::New(env, "sealBatch: OpenSSL encryption failed");
    }
    msg[0] = 4;
    msg[1] = msg[2] = msg[3] = 0;
    uint32_t r = receivers[i];
    msg[4] = r & 0xff;
    msg[5] = (r >> 8) & 0xff;
    msg[6] = (r >> 16) & 0xff;
    msg[7] = (r >> 24) & 0xff;
    PutLe64(msg + 8, counter);
    lengths[i] = static_cast<uint32_t>(kHeader + padded + kTag);  // padded <= kMaxChunk
  }
  return env.Undefined();
}

// openBatch(arena, offsets, lengths, keys, keyIndex, counters: Float64Array (out),
//           ok: Uint8Array (out), count): number of messages that authenticated.
// lengths[i] is the message length on input and the (padded) plaintext length at offsets[i]+16 on
// output. ok[i] = 1 when the tag verified, 0 otherwise (too short or forged).
Napi::Value OpenBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 8 || !info[0].IsBuffer() || !info[3].IsBuffer()) {
    throw Napi::TypeError::New(
        env, "openBatch(arena, offsets, lengths, keys, keyIndex, counters, ok, count)");
  }
  auto arena = info[0].As<Napi::Buffer<uint8_t>>();
  auto keys = info[3].As<Napi::Buffer<uint8_t>>();
  uint32_t count = info[7].As<Napi::Number>().Uint32Value();
  uint32_t* offsets = TypedArg<uint32_t>(info[1], "offsets", count);
  uint32_t* lengths = TypedArg<uint32_t>(info[2], "lengths", count);
  uint32_t* keyIndex = TypedArg<uint32_t>(info[4], "keyIndex", count);
  double* counters = TypedArg<double>(info[5], "counters", count);
  uint8_t* ok = TypedArg<uint8_t>(info[6], "ok", count);
  AeadContexts& ctx = Contexts(env);
  uint8_t* base = arena.Data();
  size_t arenaLen = arena.Length();
  size_t keyCount = keys.Length() / kKey;
  uint32_t good = 0;
  for (uint32_t i = 0; i < count; i++) {
    ok[i] = 0;
    uint32_t len = lengths[i];
    size_t off = offsets[i];
    if (len < kHeader + kTag || off + len > arenaLen || len - kHeader - kTag > kMaxChunk ||
        keyIndex[i] >= keyCount) {
      lengths[i] = 0;
      continue;
    }
    uint8_t* msg = base + off;
    uint8_t* data = msg + kHeader;
    uint32_t clen = len - kHeader - kTag;
    uint64_t counter = GetLe64(msg + 8);
    counters[i] = static_cast<double>(counter);
    uint8_t nonce[12] = {0};
    PutLe64(nonce + 4, counter);
    int outl = 0;
    bool authentic =
        EVP_CipherInit_ex(ctx.dec, nullptr, nullptr,
                          keys.Data() + static_cast<size_t>(keyIndex[i]) * kKey, nonce, 0) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx.dec, EVP_CTRL_AEAD_SET_TAG, kTag, data + clen) == 1 &&
        (clen == 0 || EVP_DecryptUpdate(ctx.dec, data, &outl, data, static_cast<int>(clen)) == 1) &&
        EVP_DecryptFinal_ex(ctx.dec, data + clen, &outl) == 1;
    if (authentic) {
      ok[i] = 1;
      lengths[i] = clen;
      good++;
    } else {
      lengths[i] = 0;
    }
  }
  return Napi::Number::New(env, good);
}

}  // namespace

void InitAead(Napi::Env env, Napi::Object exports) {
  exports.Set("sealBatch", Napi::Function::New(env, SealBatch));
  exports.Set("openBatch", Napi::Function::New(env, OpenBatch));
}

}  // namespace podcrypt
