// JSON text for the machine-readable outputs: `eval --json`, `inspect` and `trace`'s
// trace.json. Members keep the order they were added in; strings are escaped; numbers are
// written exactly (integers as integers, doubles in the shortest text that reads back to
// the same double; inf and NaN, which JSON lacks, as null).
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace vae {

// `text` as a JSON string literal, quotes included.
std::string json_string(const std::string& text);
// A number as JSON text (see above).
std::string json_number(double value);
std::string json_number(int64_t value);

class JsonObject {
 public:
  JsonObject& add(const std::string& key, const std::string& value);
  JsonObject& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  JsonObject& add(const std::string& key, T value) {
    if constexpr (std::is_integral_v<T>) return add_raw(key, json_number(static_cast<int64_t>(value)));
    return add_raw(key, json_number(static_cast<double>(value)));
  }
  JsonObject& add(const std::string& key, const std::vector<int64_t>& values);
  JsonObject& add(const std::string& key, const std::vector<double>& values);
  JsonObject& add(const std::string& key, const JsonObject& value);
  JsonObject& add(const std::string& key, const std::vector<JsonObject>& values);

  // One line, `{"a": 1, "b": [1, 2]}`; or, when `multiline`, one member per line indented
  // by two spaces (nested values stay on their member's line).
  std::string str(bool multiline = false) const;

 private:
  JsonObject& add_raw(const std::string& key, std::string json);
  std::vector<std::pair<std::string, std::string>> members_;  // key, value as JSON text
};

}  // namespace vae
