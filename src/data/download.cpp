#include "vae_ddp/data/download.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#ifdef VAE_WITH_DOWNLOAD
#include <curl/curl.h>
#endif
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vae_ddp/base/errors.h"
#include "vae_ddp/data/mnist.h"

namespace vae {

#ifdef VAE_WITH_DOWNLOAD

namespace {

size_t write_to_file(char* data, size_t size, size_t count, void* file) {
  return std::fwrite(data, size, count, static_cast<FILE*>(file)) * size;
}

// Fetches `url` into `path`; returns "" on success, else the error.
std::string fetch(const std::string& url, const std::string& path) {
  FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) return fmt::format("cannot write {}", path);
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    std::fclose(out);
    return "curl_easy_init failed";
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_to_file);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
  const CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  const bool closed = std::fclose(out) == 0;
  if (rc != CURLE_OK) return curl_easy_strerror(rc);
  if (!closed) return fmt::format("cannot write {}", path);
  return "";
}

}  // namespace

void download_mnist(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw UsageError(fmt::format("--data-dir {}: cannot create: {}", dir, ec.message()));
  curl_global_init(CURL_GLOBAL_DEFAULT);
  for (Split split : {Split::kTrain, Split::kTest}) {
    for (bool labels : {false, true}) {
      const std::string name = mnist_file_name(split, labels);
      const std::string target = dir + "/" + name + ".gz";
      if (std::filesystem::exists(dir + "/" + name) || std::filesystem::exists(target)) continue;
      std::string error;
      for (const std::string& mirror : mnist_mirrors()) {
        const std::string url = mirror + name + ".gz";
        spdlog::info("downloading {}", url);
        error = fetch(url, target + ".part");
        if (error.empty()) break;
        spdlog::warn("warning: {}: {}", url, error);
      }
      if (!error.empty()) {
        std::filesystem::remove(target + ".part", ec);
        throw std::runtime_error(
            fmt::format("--download: could not fetch {}.gz from any mirror (last error: {}); "
                        "offline, put the four files in the data directory (./launch/setup does)",
                        name, error));
      }
      std::filesystem::rename(target + ".part", target);
    }
  }
  curl_global_cleanup();
}

#else  // !VAE_WITH_DOWNLOAD

void download_mnist(const std::string& dir) {
  throw UsageError(
      fmt::format("--download: this vae_ddp was built without libcurl (libcurl4-openssl-dev); put the "
                  "four MNIST files in {} (./launch/setup does)",
                  dir));
}

#endif  // VAE_WITH_DOWNLOAD

}  // namespace vae
