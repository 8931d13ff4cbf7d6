#include "vae_ddp/base/digest.h"

#include <array>
#include <stdexcept>

#include <fmt/format.h>
#include <openssl/evp.h>

namespace vae {

namespace {

std::string digest_hex(const void* data, size_t size, const EVP_MD* md, const char* name) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  if (EVP_Digest(data, size, digest.data(), &len, md, nullptr) != 1) {
    throw std::runtime_error(fmt::format("OpenSSL EVP_Digest({}) failed", name));
  }
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

}  // namespace

std::string md5_hex(const void* data, size_t size) { return digest_hex(data, size, EVP_md5(), "md5"); }
std::string sha256_hex(const void* data, size_t size) { return digest_hex(data, size, EVP_sha256(), "sha256"); }

}  // namespace vae
