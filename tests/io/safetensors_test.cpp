#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "test_util.h"

namespace sdrt {
namespace {

// Builds a file image from a header text and a data section.
std::vector<uint8_t> image(const std::string& header, size_t data_bytes, uint64_t declared_len = UINT64_MAX) {
  uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::vector<uint8_t> bytes(8);
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(n >> (8 * i));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.resize(bytes.size() + data_bytes, 0);
  return bytes;
}

// Expects parse() to fail with a message containing every fragment.
void expect_error(const std::vector<uint8_t>& bytes, std::initializer_list<std::string> fragments) {
  try {
    SafeTensors::parse(bytes, "test.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("test.safetensors"), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

TEST(SafeTensors, ReadsGoldenFile) {
  auto st = SafeTensors::open(testing::case_path("unet_case0.safetensors"));
  EXPECT_EQ(st.info("sample").shape, (Shape{2, 4, 32, 32}));
  EXPECT_EQ(st.load_f32("sample").numel(), 2 * 4 * 32 * 32);
  EXPECT_TRUE(st.metadata().count("producer"));
}

TEST(SafeTensors, WriterRoundTripsAllDtypes) {
  Tensor t = Tensor::from_vector({2, 3}, {0.0f, -1.5f, 3.25f, 65504.0f, 1e-5f, -0.1f});
  SafeTensorsWriter w;
  w.add("f32", t);
  w.add("f16", t, DType::F16);
  w.add("bf16", t, DType::BF16);
  w.add_i64("ids", {3}, {1, -2, 49407});
  w.set_metadata("k", "v");
  std::string path = testing::scratch_dir("safetensors") + "/rt.safetensors";
  w.write(path);
  auto st = SafeTensors::open(path);
  EXPECT_EQ(st.metadata().at("k"), "v");
  EXPECT_REL_LE(st.load_f32("f32"), t, 0.0);
  EXPECT_REL_LE(st.load_f32("f16"), t, 1e-3);
  EXPECT_REL_LE(st.load_f32("bf16"), t, 8e-3);
  EXPECT_EQ(st.load_i64("ids"), (std::vector<int64_t>{1, -2, 49407}));
}

TEST(SafeTensors, TruncatedFile) {
  auto full = image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16);
  full.resize(full.size() - 5);
  expect_error(full, {"'a'", "past the end", "truncated"});
  expect_error(std::vector<uint8_t>(5, 0), {"too short"});
}

TEST(SafeTensors, HeaderLengthPastEof) { expect_error(image("{}", 0, 1000), {"header length 1000", "truncated"}); }

TEST(SafeTensors, HugeHeaderLength) { expect_error(image("{}", 0, 1ull << 40), {"exceeds"}); }

TEST(SafeTensors, MalformedJson) { expect_error(image(R"({"a": {"dtype": )", 0), {"not valid JSON"}); }

TEST(SafeTensors, HeaderNotAnObject) { expect_error(image("[1,2]", 0), {"not a JSON object"}); }

TEST(SafeTensors, OffsetsOutOfRange) {
  expect_error(image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}})", 16), {"'a'", "past the end"});
  expect_error(image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 16), {"'a'", "reversed"});
  expect_error(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 16), {"'a'", "data_offsets"});
}

TEST(SafeTensors, OverlappingTensors) {
  expect_error(image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                     16),
               {"'a'", "'b'", "overlap"});
}

TEST(SafeTensors, UnknownDtype) {
  expect_error(image(R"({"a":{"dtype":"F8_E9","shape":[4],"data_offsets":[0,4]}})", 4), {"'a'", "unknown dtype 'F8_E9'"});
}

TEST(SafeTensors, ShapeByteMismatch) {
  expect_error(image(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 16),
               {"'a'", "[2, 3]", "24", "span 16"});
  expect_error(image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})", 16),
               {"'a'", "overflows"});
  expect_error(image(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", 16), {"'a'", "non-integer"});
}

TEST(SafeTensors, MissingFieldsAndTensors) {
  expect_error(image(R"({"a":{"dtype":"F32","shape":[4]}})", 16), {"'a'", "data_offsets"});
  auto st = SafeTensors::parse(image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16), "x.st");
  try {
    st.load_f32("b");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'b'"), std::string::npos);
  }
  EXPECT_THROW(st.load_i64("a"), Error);
}

TEST(SafeTensors, MissingFile) {
  try {
    SafeTensors::open("/nonexistent/model.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.safetensors"), std::string::npos);
  }
}

TEST(Half, ConversionsRoundTripAndRound) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333333f}) {
    EXPECT_NEAR(f16_to_float(float_to_f16(v)), v, std::fabs(v) * 1e-3 + 1e-12) << v;
    EXPECT_NEAR(bf16_to_float(float_to_bf16(v)), v, std::fabs(v) * 8e-3) << v;
  }
  EXPECT_EQ(float_to_f16(1e6f), 0x7c00);        // overflow -> inf
  EXPECT_EQ(float_to_f16(1.0f + 1.0f / 4096), 0x3c00);  // ties round to even
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
}

}  // namespace
}  // namespace sdrt
