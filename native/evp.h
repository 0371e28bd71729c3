#pragma once
#include <napi.h>
#include <openssl/evp.h>

#include <cstddef>
#include <string>

namespace podcrypt {

// Longest plaintext one EVP update takes (its length is an int); far beyond any datagram.
constexpr size_t kMaxChunk = 1u << 30;

// One AEAD cipher and an encryption and a decryption context, reused for every packet of a batch.
struct AeadContexts {
  EVP_CIPHER* cipher = nullptr;
  EVP_CIPHER_CTX* enc = nullptr;
  EVP_CIPHER_CTX* dec = nullptr;
};

// Fetches `name` (an OpenSSL cipher name) into `ctx` on first use; throws a JS error when this
// OpenSSL lacks it. `ctx` must be thread_local: EVP contexts are not shareable between threads.
inline AeadContexts& InitAead(Napi::Env env, AeadContexts& ctx, const char* name) {
  if (ctx.cipher == nullptr) {
    ctx.cipher = EVP_CIPHER_fetch(nullptr, name, nullptr);
    ctx.enc = EVP_CIPHER_CTX_new();
    ctx.dec = EVP_CIPHER_CTX_new();
    if (ctx.cipher == nullptr || ctx.enc == nullptr || ctx.dec == nullptr ||
        EVP_CipherInit_ex(ctx.enc, ctx.cipher, nullptr, nullptr, nullptr, 1) != 1 ||
        EVP_CipherInit_ex(ctx.dec, ctx.cipher, nullptr, nullptr, nullptr, 0) != 1) {
      throw Napi::Error::New(env, std::string("OpenSSL ") + name + " is unavailable");
    }
  }
  return ctx;
}

}  // namespace podcrypt
