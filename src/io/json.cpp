#include "vae_ddp/io/json.h"

#include <cmath>

#include <fmt/format.h>

namespace vae {

namespace {

template <typename T, typename Write>
std::string json_array(const std::vector<T>& values, Write write) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + write(values[i]);
  return out + "]";
}

}  // namespace

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char ch : text) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<int>(ch));
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string json_number(double value) { return std::isfinite(value) ? fmt::format("{}", value) : "null"; }

std::string json_number(int64_t value) { return std::to_string(value); }

JsonObject& JsonObject::add_raw(const std::string& key, std::string json) {
  members_.emplace_back(key, std::move(json));
  return *this;
}

JsonObject& JsonObject::add(const std::string& key, const std::string& value) {
  return add_raw(key, json_string(value));
}

JsonObject& JsonObject::add(const std::string& key, const std::vector<int64_t>& values) {
  return add_raw(key, json_array(values, [](int64_t v) { return json_number(v); }));
}

JsonObject& JsonObject::add(const std::string& key, const std::vector<double>& values) {
  return add_raw(key, json_array(values, [](double v) { return json_number(v); }));
}

JsonObject& JsonObject::add(const std::string& key, const JsonObject& value) { return add_raw(key, value.str()); }

JsonObject& JsonObject::add(const std::string& key, const std::vector<JsonObject>& values) {
  return add_raw(key, json_array(values, [](const JsonObject& v) { return v.str(); }));
}

std::string JsonObject::str(bool multiline) const {
  if (members_.empty()) return "{}";
  const char* separator = multiline ? ",\n  " : ", ";
  std::string out = multiline ? "{\n  " : "{";
  for (size_t i = 0; i < members_.size(); ++i) {
    out += (i ? separator : "") + json_string(members_[i].first) + ": " + members_[i].second;
  }
  return out + (multiline ? "\n}" : "}");
}

}  // namespace vae
