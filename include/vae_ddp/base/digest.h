// Message digests through OpenSSL's EVP interface: MNIST's md5s, checkpoints' SHA-256.
#pragma once

#include <cstddef>
#include <string>

namespace vae {

// Lower-case hex digests. Throw std::runtime_error if OpenSSL fails.
std::string md5_hex(const void* data, size_t size);
std::string sha256_hex(const void* data, size_t size);

}  // namespace vae
