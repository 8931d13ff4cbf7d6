#include "vae_ddp/io/json.h"

#include <cmath>
#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace vae {
namespace {

TEST(JsonTest, StringsAreEscaped) {
  EXPECT_EQ(json_string("plain"), "\"plain\"");
  EXPECT_EQ(json_string("a \"quoted\" C:\\path"), "\"a \\\"quoted\\\" C:\\\\path\"");
  EXPECT_EQ(json_string("line\nnext\ttab"), "\"line\\nnext\\ttab\"");
  EXPECT_EQ(json_string(std::string("bell\x07")), "\"bell\\u0007\"");
  EXPECT_EQ(json_string("ünïcode"), "\"ünïcode\"");  // UTF-8 passes through
}

TEST(JsonTest, NumbersReadBackExactly) {
  for (const double v : {0.1, 1.0 / 3.0, 104.12345678901234, 1e-300, -2.5e17, 65536.0}) {
    EXPECT_EQ(std::stod(json_number(v)), v) << json_number(v);
  }
  EXPECT_EQ(json_number(int64_t{9007199254740993}), "9007199254740993");  // not rounded through a double
  EXPECT_EQ(json_number(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(json_number(std::nan("")), "null");
}

TEST(JsonTest, MembersKeepTheirOrderOnOneLineOrMany) {
  JsonObject o;
  o.add("z", 1).add("a", 0.5).add("list", std::vector<int64_t>{3, 4}).add("s", "x");
  o.add("inner", JsonObject().add("k", std::vector<double>{}));
  EXPECT_EQ(o.str(), R"({"z": 1, "a": 0.5, "list": [3, 4], "s": "x", "inner": {"k": []}})");
  EXPECT_EQ(o.str(/*multiline=*/true),
            "{\n  \"z\": 1,\n  \"a\": 0.5,\n  \"list\": [3, 4],\n  \"s\": \"x\",\n  \"inner\": {\"k\": []}\n}");
  EXPECT_EQ(JsonObject().str(), "{}");
  EXPECT_EQ(JsonObject().add("objects", std::vector<JsonObject>{JsonObject().add("b", 1)}).str(),
            R"({"objects": [{"b": 1}]})");
}

}  // namespace
}  // namespace vae
