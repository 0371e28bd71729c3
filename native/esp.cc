// Batched ESP AES-GCM (RFC 4303 tunnel mode, RFC 4106) in place over an arena Buffer, with
// OpenSSL's AES-128-GCM from Node's own bundled OpenSSL. One EVP context per direction is reused
// for every packet and the AES key schedule only changes when the SA does, where node:crypto
// would build a Cipheriv object (and its key schedule) per packet.
//
// Packet layout at offsets[i]:  SPI BE32 | sequence low BE32 | IV = 64-bit sequence BE (8) |
// ciphertext of [inner packet | padding 1, 2, 3 | pad length | next header] | ICV (8, 12 or 16).
// Nonce = salt (4) || IV (8). AAD = SPI || sequence low, or SPI || sequence high || sequence low
// with extended sequence numbers (RFC 4106 section 5).
//
// Key table: `keys` holds 20 bytes per SA (16-byte key || 4-byte salt); `keyInfo` 3 words per SA:
// SPI, ICV length, ESN (0/1).
#include "esp.h"

#include <cstdint>
#include <cstring>

#include "batch.h"
#include "evp.h"

namespace podcrypt {
namespace {

constexpr uint32_t kHeader = 16;  // SPI + sequence + IV
constexpr uint32_t kKeyMat = 20;  // key + salt
constexpr uint32_t kKey = 16;

AeadContexts& Contexts(Napi::Env env) {
  static thread_local AeadContexts ctx;
  return InitAead(env, ctx, "AES-128-GCM");
}

inline void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// The AAD of RFC 4106 section 5 into `aad`; returns its length.
inline int Aad(uint8_t* aad, uint32_t spi, uint64_t seq, bool esn) {
  PutBe32(aad, spi);
  if (!esn) {
    PutBe32(aad + 4, static_cast<uint32_t>(seq));
    return 8;
  }
  PutBe32(aad + 4, static_cast<uint32_t>(seq >> 32));
  PutBe32(aad + 8, static_cast<uint32_t>(seq));
  return 12;
}

struct KeyTable {
  const uint8_t* keys;
  const uint32_t* info;
  size_t count;
};

KeyTable KeyArgs(const Napi::Value& keys, const Napi::Value& info, const char* fn) {
  Napi::Env env = keys.Env();
  if (!keys.IsBuffer())
    throw Napi::TypeError::New(env, std::string(fn) + ": keys must be a Buffer");
  auto k = keys.As<Napi::Buffer<uint8_t>>();
  size_t count = k.Length() / kKeyMat;
  KeyTable t{k.Data(), TypedArg<uint32_t>(info, "keyInfo", count * 3), count};
  return t;
}

// Sets key (when it changed) and nonce on `c`.
inline bool InitKey(EVP_CIPHER_CTX* c, const KeyTable& t, uint32_t k, uint32_t* lastKey,
                    uint64_t seq, int enc) {
  uint8_t nonce[12];
  memcpy(nonce, t.keys + static_cast<size_t>(k) * kKeyMat + kKey, 4);
  for (int b = 0; b < 8; b++) nonce[4 + b] = static_cast<uint8_t>(seq >> (56 - 8 * b));
  const uint8_t* key = k == *lastKey ? nullptr : t.keys + static_cast<size_t>(k) * kKeyMat;
  if (EVP_CipherInit_ex(c, nullptr, nullptr, key, nonce, enc) != 1) {
    *lastKey = UINT32_MAX;
    return false;
  }
  *lastKey = k;
  return true;
}

// espSealBatch(arena, offsets, lengths, nextHeaders: Uint8Array, keys, keyInfo, keyIndex,
//              seqs: Float64Array, count): void
// On input the inner packet is at offsets[i]+16, lengths[i] bytes; on output lengths[i] is the ESP
// packet length at offsets[i]. The caller guarantees 16 + inner + 5 + ICV bytes of room.
Napi::Value EspSealBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 9 || !info[0].IsBuffer()) {
    throw Napi::TypeError::New(
        env,
        "espSealBatch(arena, offsets, lengths, nextHeaders, keys, keyInfo, keyIndex, seqs, count)");
  }
  auto arena = info[0].As<Napi::Buffer<uint8_t>>();
  uint32_t count = info[8].As<Napi::Number>().Uint32Value();
  uint32_t* offsets = TypedArg<uint32_t>(info[1], "offsets", count);
  uint32_t* lengths = TypedArg<uint32_t>(info[2], "lengths", count);
  uint8_t* nextHeaders = TypedArg<uint8_t>(info[3], "nextHeaders", count);
  KeyTable t = KeyArgs(info[4], info[5], "espSealBatch");
  uint32_t* keyIndex = TypedArg<uint32_t>(info[6], "keyIndex", count);
  double* seqs = TypedArg<double>(info[7], "seqs", count);
  AeadContexts& ctx = Contexts(env);
  uint8_t* base = arena.Data();
  size_t arenaLen = arena.Length();
  uint32_t lastKey = UINT32_MAX;
  for (uint32_t i = 0; i < count; i++) {
    size_t len = lengths[i];
    size_t off = offsets[i];
    uint32_t k = keyIndex[i];
    if (k >= t.count || len > kMaxChunk) {
      throw Napi::RangeError::New(env, "espSealBatch: bad key index or length");
    }
    uint32_t spi = t.info[3 * k];
    uint32_t icv = t.info[3 * k + 1];
    bool esn = t.info[3 * k + 2] != 0;
    if (icv != 8 && icv != 12 && icv != 16) {
      throw Napi::RangeError::New(env, "espSealBatch: ICV length must be 8, 12 or 16");
    }
    size_t pad = (4 - ((len + 2) % 4)) % 4;
    size_t body = len + pad + 2;
    if (off + kHeader + body + icv > arenaLen) {
      throw Napi::RangeError::New(env, "espSealBatch: packet outside the arena");
    }
    uint8_t* pkt = base + off;
    uint8_t* data = pkt + kHeader;
    for (size_t p = 1; p <= pad; p++) data[len + p - 1] = static_cast<uint8_t>(p);
    data[len + pad] = static_cast<uint8_t>(pad);
    data[len + pad + 1] = nextHeaders[i];
    uint64_t seq = static_cast<uint64_t>(seqs[i]);
    uint8_t aad[12];
    int aadLen = Aad(aad, spi, seq, esn);
    int outl = 0;
    if (!InitKey(ctx.enc, t, k, &lastKey, seq, 1) ||
        EVP_EncryptUpdate(ctx.enc, nullptr, &outl, aad, aadLen) != 1 ||
        EVP_EncryptUpdate(ctx.enc, data, &outl, data, static_cast<int>(body)) != 1 ||
        EVP_EncryptFinal_ex(ctx.enc, data + body, &outl) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.enc, EVP_CTRL_GCM_GET_TAG, static_cast<int>(icv), data + body) !=
            1) {
      throw Napi::Error::New(env, "espSealBatch: OpenSSL encryption failed");
    }
    PutBe32(pkt, spi);
    PutBe32(pkt + 4, static_cast<uint32_t>(seq));
    PutBe32(pkt + 8, static_cast<uint32_t>(seq >> 32));
    PutBe32(pkt + 12, static_cast<uint32_t>(seq));
    lengths[i] = static_cast<uint32_t>(kHeader + body + icv);
  }
  return env.Undefined();
}

// espOpenBatch(arena, offsets, lengths, keys, keyInfo, keyIndex, seqs: Float64Array, ok: Uint8Array
//              (out), count): number that verified.
// Packet i is at offsets[i], lengths[i] bytes, for the SA keyIndex[i] with full sequence number
// seqs[i] (the caller infers the ESN high half). On success ok[i] = 1 and lengths[i] is the
// plaintext length at offsets[i]+16 (inner packet, padding, pad length, next header); else ok[i]
// = 0 and nothing of the plaintext is to be used.
Napi::Value EspOpenBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 9 || !info[0].IsBuffer()) {
    throw Napi::TypeError::New(
        env, "espOpenBatch(arena, offsets, lengths, keys, keyInfo, keyIndex, seqs, ok, count)");
  }
  auto arena = info[0].As<Napi::Buffer<uint8_t>>();
  uint32_t count = info[8].As<Napi::Number>().Uint32Value();
  uint32_t* offsets = TypedArg<uint32_t>(info[1], "offsets", count);
  uint32_t* lengths = TypedArg<uint32_t>(info[2], "lengths", count);
  KeyTable t = KeyArgs(info[3], info[4], "espOpenBatch");
  uint32_t* keyIndex = TypedArg<uint32_t>(info[5], "keyIndex", count);
  double* seqs = TypedArg<double>(info[6], "seqs", count);
  uint8_t* ok = TypedArg<uint8_t>(info[7], "ok", count);
  AeadContexts& ctx = Contexts(env);
  uint8_t* base = arena.Data();
  size_t arenaLen = arena.Length();
  uint32_t lastKey = UINT32_MAX;
  uint32_t good = 0;
  for (uint32_t i = 0; i < count; i++) {
    ok[i] = 0;
    size_t len = lengths[i];
    size_t off = offsets[i];
    uint32_t k = keyIndex[i];
    lengths[i] = 0;
    if (k >= t.count) continue;
    uint32_t spi = t.info[3 * k];
    uint32_t icv = t.info[3 * k + 1];
    bool esn = t.info[3 * k + 2] != 0;
    if (icv != 8 && icv != 12 && icv != 16) continue;
    if (len < kHeader + icv || off + len > arenaLen || len > kMaxChunk) continue;
    uint8_t* pkt = base + off;
    uint8_t* data = pkt + kHeader;
    size_t clen = len - kHeader - icv;
    uint64_t seq = static_cast<uint64_t>(seqs[i]);
    // The IV on the wire is the nonce's second part whatever the sender chose.
    uint8_t nonce[12];
    memcpy(nonce, t.keys + static_cast<size_t>(k) * kKeyMat + kKey, 4);
    memcpy(nonce + 4, pkt + 8, 8);
    const uint8_t* key = k == lastKey ? nullptr : t.keys + static_cast<size_t>(k) * kKeyMat;
    uint8_t aad[12];
    int aadLen = Aad(aad, spi, seq, esn);
    int outl = 0;
    bool inited = EVP_CipherInit_ex(ctx.dec, nullptr, nullptr, key, nonce, 0) == 1;
    lastKey = inited ? k : UINT32_MAX;
    bool authentic =
        inited &&
        EVP_CIPHER_CTX_ctrl(ctx.dec, EVP_CTRL_GCM_SET_TAG, static_cast<int>(icv), data + clen) ==
            1 &&
        EVP_DecryptUpdate(ctx.dec, nullptr, &outl, aad, aadLen) == 1 &&
        (clen == 0 || EVP_DecryptUpdate(ctx.dec, data, &outl, data, static_cast<int>(clen)) == 1) &&
        EVP_DecryptFinal_ex(ctx.dec, data + clen, &outl) == 1;
    if (authentic) {
      ok[i] = 1;
      lengths[i] = static_cast<uint32_t>(clen);
      good++;
    }
  }
  return Napi::Number::New(env, good);
}

}  // namespace

void InitEsp(Napi::Env env, Napi::Object exports) {
  exports.Set("espSealBatch", Napi::Function::New(env, EspSealBatch));
  exports.Set("espOpenBatch", Napi::Function::New(env, EspOpenBatch));
}

}  // namespace podcrypt
