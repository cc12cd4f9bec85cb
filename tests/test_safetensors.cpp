// safetensors reader and writer: round trips through write_safetensors, a file written by the
// reference Python package (tests/data/quant/reference.safetensors, see
// scripts/make_quant_fixtures.py), and hostile input: every prefix of a valid file, single-byte
// corruptions, and the committed corpus tests/data/broken/*.safetensors, each of which must
// give a non-ok Status naming the problem, never a crash (CI runs this under ASan/UBSan).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/half.h"
#include "formats/safetensors.h"

namespace pdvm::formats {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  return (fs::path(testing::TempDir()) /
          ("pdvm_test_st_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Small {
  std::vector<float> w = std::vector<float>(3 * 5);
  std::vector<uint16_t> h = std::vector<uint16_t>(7);
  std::vector<int8_t> q = std::vector<int8_t>(11);
  std::vector<int64_t> ids = {1, -2, int64_t(1) << 40};
  std::vector<SafetensorsTensorToWrite> tensors;
  Small() {
    for (size_t i = 0; i < w.size(); ++i) w[i] = float(i) - 7.5f;
    for (size_t i = 0; i < h.size(); ++i) h[i] = core::f32_to_bf16(float(i) * 0.25f);
    for (size_t i = 0; i < q.size(); ++i) q[i] = int8_t(i * 23 - 100);
    tensors = {
        {"model.layers.0.mlp.down_proj.weight", "F32", {3, 5}, w.data(), w.size() * 4},
        {"norm", "BF16", {7}, h.data(), h.size() * 2},
        {"scalar_empty", "F32", {0, 4}, nullptr, 0},
        {"q", "I8", {11}, q.data(), q.size()},
        {"ids", "I64", {3}, ids.data(), ids.size() * 8},  // lands at an offset % 8 == 2
    };
  }
};

TEST(Safetensors, RoundTrip) {
  Small s;
  const std::string path = temp_path("rt.safetensors");
  ASSERT_TRUE(write_safetensors(path, s.tensors, {{"format", "pt"}, {"pdvm.version", "1"}}).is_ok());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->path(), path);
  ASSERT_NE(f->mapping(), nullptr);
  EXPECT_EQ(f->metadata(), (std::map<std::string, std::string>{{"format", "pt"},
                                                               {"pdvm.version", "1"}}));
  ASSERT_EQ(f->tensors().size(), s.tensors.size());
  for (const auto& want : s.tensors) {
    const SafetensorsTensor* t = f->find(want.name);
    ASSERT_NE(t, nullptr) << want.name;
    EXPECT_EQ(t->dtype, want.dtype);
    EXPECT_EQ(t->shape, want.shape);
    EXPECT_EQ(t->n_bytes, want.n_bytes);
    EXPECT_TRUE(t->dtype_known());
    if (want.n_bytes) {
      EXPECT_EQ(std::memcmp(t->data, want.data, want.n_bytes), 0) << want.name;
    }
  }
  // tensors() is in data order; the header is padded so data starts 8-byte aligned.
  for (size_t i = 1; i < f->tensors().size(); ++i)
    EXPECT_LE(f->tensors()[i - 1].data, f->tensors()[i].data);
  const uint8_t* data0 = f->find("model.layers.0.mlp.down_proj.weight")->data;
  EXPECT_EQ((data0 - f->mapping()->data()) % 8, 0);
  EXPECT_EQ(f->find("nope"), nullptr);
  fs::remove(path);
}

TEST(Safetensors, CopiesKeepTheMappingAlive) {
  Small s;
  const std::string path = temp_path("alive.safetensors");
  ASSERT_TRUE(write_safetensors(path, s.tensors).is_ok());
  std::optional<SafetensorsFile> copy;
  std::weak_ptr<const core::MappedFile> weak;
  {
    auto f = SafetensorsFile::open(path);
    ASSERT_TRUE(f.is_ok());
    copy = *f;
    weak = f->mapping();
  }
  fs::remove(path);
  ASSERT_FALSE(weak.expired());
  float x;
  std::memcpy(&x, copy->find("model.layers.0.mlp.down_proj.weight")->data + 4 * 9, 4);
  EXPECT_EQ(x, s.w[9]);
  copy.reset();
  EXPECT_TRUE(weak.expired());
}

TEST(Safetensors, UnknownDtypeLoadsButIsMarked) {
  // A dtype pdvm does not know (e.g. a future one) loads with its byte range checked; its size
  // against the shape cannot be checked, and dtype_known() says so.
  std::vector<uint8_t> bytes(10);
  const std::string path = temp_path("unknown.safetensors");
  ASSERT_TRUE(write_safetensors(path, {{"x", "Q3_FUTURE", {4}, bytes.data(), 10}}).is_ok());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_FALSE(f->find("x")->dtype_known());
  EXPECT_EQ(f->find("x")->n_bytes, 10u);
  fs::remove(path);
}

TEST(Safetensors, SubByteDtypes) {
  std::vector<uint8_t> bytes(3);
  const std::string path = temp_path("f4.safetensors");
  ASSERT_TRUE(write_safetensors(path, {{"x", "F4", {2, 3}, bytes.data(), 3},
                                       {"y", "F6_E2M3", {4}, bytes.data(), 3}}).is_ok());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->find("x")->dtype_bits, 4);
  EXPECT_EQ(f->find("y")->dtype_bits, 6);
  fs::remove(path);
}

TEST(Safetensors, WriterRejectsInconsistentInput) {
  const std::string path = temp_path("bad.safetensors");
  std::vector<float> w(4);
  EXPECT_FALSE(write_safetensors(path, {{"a", "F32", {5}, w.data(), 16}}).is_ok());
  EXPECT_FALSE(write_safetensors(path, {{"a", "F32", {4}, w.data(), 16},
                                        {"a", "F32", {4}, w.data(), 16}}).is_ok());
  EXPECT_FALSE(write_safetensors(path, {{"__metadata__", "F32", {4}, w.data(), 16}}).is_ok());
  EXPECT_FALSE(write_safetensors(path, {{"a", "F32", {-4}, w.data(), 16}}).is_ok());
  EXPECT_FALSE(write_safetensors(path, {{"a", "", {4}, w.data(), 16}}).is_ok());
  fs::remove(path);
}

TEST(Safetensors, ReadsAFileFromTheReferenceWriter) {
  // Written by the `safetensors` Python package (scripts/make_quant_fixtures.py).
  const std::string path = std::string(PDVM_TEST_DATA) + "/quant/reference.safetensors";
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const SafetensorsTensor* a = f->find("arange_f32");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, "F32");
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 4}));
  for (int i = 0; i < 12; ++i) {
    float x;
    std::memcpy(&x, a->data + 4 * i, 4);
    EXPECT_EQ(x, float(i));
  }
  const SafetensorsTensor* b = f->find("ones_bf16");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, "BF16");
  uint16_t h;
  std::memcpy(&h, b->data, 2);
  EXPECT_EQ(core::bf16_to_f32(h), 1.0f);
  ASSERT_NE(f->find("flags_bool"), nullptr);
  EXPECT_EQ(f->find("flags_bool")->dtype, "BOOL");
  ASSERT_NE(f->find("empty_i64"), nullptr);
  EXPECT_EQ(f->find("empty_i64")->n_bytes, 0u);
}

// ---- hostile input --------------------------------------------------------------------------

std::vector<uint8_t> small_valid_bytes() {
  Small s;
  const std::string path = temp_path("prefix.safetensors");
  PDVM_ASSERT(write_safetensors(path, s.tensors, {{"format", "pt"}}).is_ok());
  auto bytes = read_bytes(path);
  fs::remove(path);
  return bytes;
}

TEST(SafetensorsBroken, EveryTruncationIsAnError) {
  const auto bytes = small_valid_bytes();
  ASSERT_TRUE(SafetensorsFile::open_memory(bytes, "full.safetensors").is_ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto f = SafetensorsFile::open_memory(std::span(bytes.data(), n), "cut.safetensors");
    ASSERT_FALSE(f.is_ok()) << "prefix of " << n << " of " << bytes.size() << " bytes loaded";
    ASSERT_EQ(f.status().message().rfind("cut.safetensors: ", 0), 0u) << f.status().message();
  }
}

TEST(SafetensorsBroken, SingleByteCorruptionsNeverCrash) {
  const auto bytes = small_valid_bytes();
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  int loaded = 0, rejected = 0;
  volatile uint64_t sink = 0;
  for (size_t i = 0; i < 8 + header_len; ++i) {
    for (uint8_t v : {uint8_t('0'), uint8_t('9'), uint8_t(0xff), uint8_t(bytes[i] ^ 0x01),
                      uint8_t('"'), uint8_t(']')}) {
      auto copy = bytes;
      copy[i] = v;
      auto f = SafetensorsFile::open_memory(copy, "x.safetensors");
      if (!f.is_ok()) {
        ++rejected;
        continue;
      }
      ++loaded;
      for (const auto& t : f->tensors()) {
        uint64_t sum = 0;
        for (size_t k = 0; k < t.n_bytes; ++k) sum += t.data[k];
        sink = sink + sum;
      }
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(loaded, 0);
}

struct BrokenCase {
  std::string file, expected;
};

std::vector<BrokenCase> broken_cases(const std::string& ext) {
  std::ifstream in(std::string(PDVM_TEST_DATA) + "/broken/EXPECTED.txt");
  std::vector<BrokenCase> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    BrokenCase c{line.substr(0, tab), line.substr(tab + 1)};
    if (c.file.ends_with(ext)) out.push_back(c);
  }
  return out;
}

TEST(SafetensorsBroken, CorpusFilesGiveTheExpectedError) {
  const auto cases = broken_cases(".safetensors");
  ASSERT_GE(cases.size(), 25u) << "tests/data/broken/EXPECTED.txt missing or short";
  for (const auto& c : cases) {
    const std::string path = std::string(PDVM_TEST_DATA) + "/broken/" + c.file;
    auto f = SafetensorsFile::open(path);
    ASSERT_FALSE(f.is_ok()) << c.file << " loaded";
    EXPECT_EQ(f.status().code(), StatusCode::kCorrupt) << c.file;
    EXPECT_NE(f.status().message().find(c.expected), std::string::npos)
        << c.file << ": expected the message to contain \"" << c.expected << "\", got \""
        << f.status().message() << "\"";
    EXPECT_EQ(f.status().message().rfind(path + ": ", 0), 0u) << f.status().message();
    EXPECT_FALSE(SafetensorsFile::open_memory(read_bytes(path), c.file).is_ok()) << c.file;
  }
}

TEST(SafetensorsBroken, MessageNamesTensorAndSizes) {
  std::vector<float> w(6);
  const std::string path = temp_path("mismatch.safetensors");
  // Written as U8 [24], then the header patched to say F32 [2, 2] (16 bytes) over 24 bytes.
  ASSERT_TRUE(write_safetensors(path, {{"blk.w", "U8", {24}, w.data(), 24}}).is_ok());
  auto bytes = read_bytes(path);
  fs::remove(path);
  std::string text(bytes.begin(), bytes.end());
  const auto at = text.find("\"U8\",\"shape\":[24]");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 17, "\"F32\",\"shape\":[6]");
  auto f = SafetensorsFile::open_memory(std::span(reinterpret_cast<const uint8_t*>(text.data()),
                                                  text.size()),
                                        "m.safetensors");
  ASSERT_TRUE(f.is_ok()) << f.status().message();  // 6 * 4 == 24: consistent
  text.replace(at, 17, "\"F32\",\"shape\":[5]");
  f = SafetensorsFile::open_memory(std::span(reinterpret_cast<const uint8_t*>(text.data()),
                                             text.size()),
                                   "m.safetensors");
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().message(),
            "m.safetensors: tensor 'blk.w': F32 [5] needs 20 bytes but data_offsets [0, 24] "
            "hold 24");
}

}  // namespace
}  // namespace pdvm::formats
