// GGUF reader and writer: round trips through write_gguf, the real default model (skipped when
// absent), and hostile input: every prefix of a valid file, every single-byte corruption of its
// header, and the committed corpus tests/data/broken/*.gguf (made by
// scripts/make_broken_corpus.py, independently of pdvm's writer), each of which must give a
// non-ok Status whose message names the problem, and never a crash (CI runs this under ASan).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "formats/gguf.h"

namespace pdvm::formats {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  return (fs::path(testing::TempDir()) / ("pdvm_test_gguf_" + std::to_string(::getpid()) + "_" +
                                          name))
      .string();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A small file with every value type, tensors of pdvm types and one ggml type pdvm does not
// run (Q3_K), at the given alignment.
struct SmallFile {
  std::vector<float> f32_data = std::vector<float>(64 * 3);
  std::vector<uint8_t> q8_data = std::vector<uint8_t>(34 * 2 * 5);  // Q8_0 [64, 5]
  std::vector<uint8_t> q5_data = std::vector<uint8_t>(22 * 1 * 2);  // Q5_0 [32, 2]
  std::vector<uint8_t> q51_data = std::vector<uint8_t>(24 * 1 * 3);   // Q5_1 [32, 3]
  std::vector<uint8_t> q5k_data = std::vector<uint8_t>(176 * 1 * 1);  // Q5_K [256, 1]
  std::vector<uint8_t> q3k_data = std::vector<uint8_t>(110 * 1 * 1);  // Q3_K [256, 1]
  std::vector<uint8_t> q4k_data = std::vector<uint8_t>(144 * 1 * 2);  // Q4_K [256, 2]
  std::vector<GgufKv> kvs;
  std::vector<GgufTensorToWrite> tensors;

  SmallFile() {
    for (size_t i = 0; i < f32_data.size(); ++i) f32_data[i] = float(i) * 0.5f - 3.0f;
    for (size_t i = 0; i < q8_data.size(); ++i) q8_data[i] = uint8_t(i * 7 + 1);
    for (size_t i = 0; i < q5_data.size(); ++i) q5_data[i] = uint8_t(i * 13 + 5);
    for (size_t i = 0; i < q51_data.size(); ++i) q51_data[i] = uint8_t(i * 5 + 2);
    for (size_t i = 0; i < q5k_data.size(); ++i) q5k_data[i] = uint8_t(i * 11 + 3);
    for (size_t i = 0; i < q3k_data.size(); ++i) q3k_data[i] = uint8_t(i * 17 + 9);
    for (size_t i = 0; i < q4k_data.size(); ++i) q4k_data[i] = uint8_t(i * 3 + 11);
    kvs = {
        {"general.architecture", GgufValue::string("llama")},
        {"llama.block_count", GgufValue::u32(30)},
        {"a.u8", GgufValue::u8(250)},
        {"a.i8", GgufValue::i8(-100)},
        {"a.u16", GgufValue::u16(65000)},
        {"a.i16", GgufValue::i16(-32000)},
        {"a.i32", GgufValue::i32(-2000000000)},
        {"a.u64", GgufValue::u64(uint64_t(1) << 40)},
        {"a.u64_big", GgufValue::u64(~uint64_t(0))},
        {"a.i64", GgufValue::i64(-(int64_t(1) << 50))},
        {"a.f32", GgufValue::f32(1e-5f)},
        {"a.f64", GgufValue::f64(0.1)},
        {"a.bool", GgufValue::boolean(true)},
        {"a.empty", GgufValue::string("")},
        {"a.tokens", GgufValue::string_array({"<s>", "", "h\xc3\xa9llo", std::string("a\0b", 3)})},
        {"a.types", GgufValue::int_array(GgufValueType::kI32, {1, -2, 3})},
        {"a.flags", GgufValue::int_array(GgufValueType::kBool, {1, 0, 1})},
        {"a.scores", GgufValue::float_array(GgufValueType::kF32, {0.5, -1.25})},
        {"a.empty_array", GgufValue::int_array(GgufValueType::kU8, {})},
    };
    tensors = {
        {"blk.0.attn_norm.weight", 0, {64, 3}, f32_data.data(), f32_data.size() * 4},
        {"token_embd.weight", 8, {64, 5}, q8_data.data(), q8_data.size()},
        {"blk.0.attn_q.weight", 6, {32, 2}, q5_data.data(), q5_data.size()},
        {"blk.0.attn_k.weight", 7, {32, 3}, q51_data.data(), q51_data.size()},
        {"blk.0.attn_v.weight", 13, {256, 1}, q5k_data.data(), q5k_data.size()},
        {"odd.q3_k", 11, {256, 1}, q3k_data.data(), q3k_data.size()},
        {"empty", 0, {0}, nullptr, 0},
        {"blk.0.ffn_down.weight", 12, {256, 2}, q4k_data.data(), q4k_data.size()},
    };
  }
};

TEST(Gguf, RoundTripAllValueTypesAndTensors) {
  for (uint32_t alignment : {32u, 64u, 8u, 4096u}) {
    SCOPED_TRACE("alignment " + std::to_string(alignment));
    SmallFile small;
    const std::string path = temp_path("roundtrip.gguf");
    ASSERT_TRUE(write_gguf(path, small.kvs, small.tensors, alignment).is_ok());
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->alignment(), alignment);
    EXPECT_EQ(f->data_offset() % alignment, 0u);
    EXPECT_EQ(f->path(), path);
    ASSERT_NE(f->mapping(), nullptr);

    // Keys in file order; general.alignment appended by the writer when not the default.
    auto keys = f->keys();
    ASSERT_EQ(keys.size(), small.kvs.size() + (alignment != 32));
    for (size_t i = 0; i < small.kvs.size(); ++i) EXPECT_EQ(keys[i], small.kvs[i].key);

    EXPECT_EQ(*f->get_string("general.architecture"), "llama");
    EXPECT_EQ(*f->get_int("llama.block_count"), 30);
    EXPECT_EQ(*f->get_int("a.u8"), 250);
    EXPECT_EQ(*f->get_int("a.i8"), -100);
    EXPECT_EQ(*f->get_int("a.u16"), 65000);
    EXPECT_EQ(*f->get_int("a.i16"), -32000);
    EXPECT_EQ(*f->get_int("a.i32"), -2000000000);
    EXPECT_EQ(*f->get_int("a.u64"), int64_t(1) << 40);
    EXPECT_EQ(f->get_int("a.u64_big").status().code(), StatusCode::kOutOfRange);
    EXPECT_EQ(*f->get_float("a.u64_big"), 18446744073709551615.0);
    EXPECT_EQ(*f->get_int("a.i64"), -(int64_t(1) << 50));
    EXPECT_EQ(*f->get_float("a.f32"), double(1e-5f));  // exact: f32 widened
    EXPECT_EQ(*f->get_float("a.f64"), 0.1);
    EXPECT_EQ(*f->get_float("llama.block_count"), 30.0);
    EXPECT_EQ(*f->get_bool("a.bool"), true);
    EXPECT_EQ(*f->get_int("a.bool"), 1);
    EXPECT_EQ(*f->get_string("a.empty"), "");
    EXPECT_EQ(*f->get_string_array("a.tokens"),
              (std::vector<std::string>{"<s>", "", "h\xc3\xa9llo", std::string("a\0b", 3)}));
    EXPECT_EQ(*f->get_int_array("a.types"), (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(*f->get_int_array("a.flags"), (std::vector<int64_t>{1, 0, 1}));
    EXPECT_EQ(*f->get_float_array("a.scores"), (std::vector<double>{0.5, -1.25}));
    EXPECT_EQ(*f->get_float_array("a.types"), (std::vector<double>{1, -2, 3}));
    EXPECT_TRUE(f->get_int_array("a.empty_array")->empty());
    EXPECT_EQ(f->type_of("a.i16"), GgufValueType::kI16);
    EXPECT_EQ(f->type_of("a.tokens"), GgufValueType::kArray);
    EXPECT_EQ(f->type_of("nope"), std::nullopt);
    EXPECT_TRUE(f->has("a.f64"));
    EXPECT_FALSE(f->has("a.f6"));

    ASSERT_EQ(f->tensors().size(), small.tensors.size());
    for (size_t i = 0; i < small.tensors.size(); ++i) {
      const auto& want = small.tensors[i];
      const GgufTensorInfo* t = f->find(want.name);
      ASSERT_NE(t, nullptr) << want.name;
      EXPECT_EQ(&f->tensors()[i], t);  // file order
      EXPECT_EQ(t->ggml_type, want.ggml_type);
      EXPECT_EQ(t->dims, want.dims);
      EXPECT_EQ(t->n_bytes, want.n_bytes);
      EXPECT_EQ(t->offset % alignment, 0u);
      if (want.n_bytes) {
        EXPECT_EQ(std::memcmp(t->data, want.data, want.n_bytes), 0) << want.name;
      }
      EXPECT_EQ(t->data, f->mapping()->data() + f->data_offset() + t->offset);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 8, 0u);
    }
    EXPECT_EQ(f->find("token_embd.weight")->weight_type, core::WeightType::kQ8_0);
    EXPECT_EQ(f->find("blk.0.ffn_down.weight")->weight_type, core::WeightType::kQ4_K);
    EXPECT_EQ(f->find("blk.0.attn_norm.weight")->weight_type, core::WeightType::kF32);
    EXPECT_EQ(f->find("blk.0.attn_q.weight")->weight_type, core::WeightType::kQ5_0);
    EXPECT_EQ(f->find("blk.0.attn_k.weight")->weight_type, core::WeightType::kQ5_1);
    EXPECT_EQ(f->find("blk.0.attn_v.weight")->weight_type, core::WeightType::kQ5_K);
    // A type ggml defines but pdvm does not run loads, with its size known, and no WeightType.
    EXPECT_EQ(f->find("odd.q3_k")->weight_type, std::nullopt);
    EXPECT_EQ(f->find("missing"), nullptr);
    fs::remove(path);
  }
}

TEST(Gguf, GettersSayWhatWasExpected) {
  SmallFile small;
  const std::string path = temp_path("getters.gguf");
  ASSERT_TRUE(write_gguf(path, small.kvs, small.tensors).is_ok());
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  auto missing = f->get_int("llama.nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("'llama.nope' not found"), std::string::npos);
  auto wrong = f->get_string("llama.block_count");
  EXPECT_FALSE(wrong.is_ok());
  EXPECT_NE(wrong.status().message().find("is a u32, expected a string"), std::string::npos)
      << wrong.status().message();
  EXPECT_NE(wrong.status().message().find(path), std::string::npos);
  EXPECT_FALSE(f->get_int("general.architecture").is_ok());
  EXPECT_FALSE(f->get_bool("llama.block_count").is_ok());
  EXPECT_FALSE(f->get_float("a.bool").is_ok());
  EXPECT_FALSE(f->get_string_array("a.types").is_ok());
  auto wrong_array = f->get_int_array("a.tokens");
  EXPECT_NE(wrong_array.status().message().find("array of string"), std::string::npos);
  EXPECT_FALSE(f->get_float_array("a.flags").is_ok());
  fs::remove(path);
}

TEST(Gguf, CopiesKeepTheMappingAlive) {
  SmallFile small;
  const std::string path = temp_path("alive.gguf");
  ASSERT_TRUE(write_gguf(path, small.kvs, small.tensors).is_ok());
  std::optional<GgufFile> copy;
  std::weak_ptr<const core::MappedFile> weak;
  {
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f.is_ok());
    copy = *f;
    weak = f->mapping();
  }
  fs::remove(path);  // the mapping outlives the directory entry
  ASSERT_FALSE(weak.expired());
  const GgufTensorInfo* t = copy->find("blk.0.attn_norm.weight");
  ASSERT_NE(t, nullptr);
  float x;
  std::memcpy(&x, t->data + 4 * 5, 4);
  EXPECT_EQ(x, small.f32_data[5]);
  EXPECT_EQ(*copy->get_int("llama.block_count"), 30);
  copy.reset();
  EXPECT_TRUE(weak.expired());
}

TEST(Gguf, WriterRejectsInconsistentInput) {
  const std::string path = temp_path("bad_write.gguf");
  std::vector<uint8_t> bytes(34);
  EXPECT_FALSE(write_gguf(path, {}, {{"t", 8, {33}, bytes.data(), 34}}).is_ok());  // 33 % 32
  EXPECT_FALSE(write_gguf(path, {}, {{"t", 8, {32}, bytes.data(), 33}}).is_ok());  // size
  EXPECT_FALSE(write_gguf(path, {}, {{"t", 4, {32}, bytes.data(), 34}}).is_ok());  // removed id
  EXPECT_FALSE(write_gguf(path, {}, {{"t", 8, {32}, bytes.data(), 34},
                                     {"t", 8, {32}, bytes.data(), 34}}).is_ok());  // dup name
  EXPECT_FALSE(write_gguf(path, {{"k", GgufValue::u8(1)}, {"k", GgufValue::u8(2)}}, {}).is_ok());
  EXPECT_FALSE(write_gguf(path, {{"k", {GgufValueType::kU8, {}, int64_t(256)}}}, {}).is_ok());
  EXPECT_FALSE(write_gguf(path, {{"k", {GgufValueType::kString, {}, int64_t(1)}}}, {}).is_ok());
  EXPECT_FALSE(write_gguf(path, {}, {}, 48).is_ok());
  EXPECT_FALSE(write_gguf(path, {}, {}, 4).is_ok());  // GGUF requires a multiple of 8
  EXPECT_FALSE(write_gguf(path, {{"general.alignment", GgufValue::u32(64)}}, {}, 32).is_ok());
  fs::remove(path);
}

// ---- hostile input --------------------------------------------------------------------------

// Bytes of a small valid file whose last tensor ends exactly at the end of the file (its size
// is a multiple of the alignment), so that every proper prefix is invalid.
std::vector<uint8_t> small_valid_bytes() {
  SmallFile small;
  const std::string path = temp_path("prefix.gguf");
  PDVM_ASSERT(small.tensors.back().n_bytes % 32 == 0);
  PDVM_ASSERT(write_gguf(path, small.kvs, small.tensors).is_ok());
  auto bytes = read_bytes(path);
  fs::remove(path);
  return bytes;
}

TEST(GgufBroken, EveryTruncationIsAnError) {
  const auto bytes = small_valid_bytes();
  ASSERT_TRUE(GgufFile::open_memory(bytes, "full.gguf").is_ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto f = GgufFile::open_memory(std::span(bytes.data(), n), "cut.gguf");
    ASSERT_FALSE(f.is_ok()) << "prefix of " << n << " of " << bytes.size() << " bytes loaded";
    ASSERT_NE(f.status().message().find("cut.gguf: "), std::string::npos);
  }
}

TEST(GgufBroken, SingleByteCorruptionsNeverCrash) {
  // Any outcome is allowed except a crash or a sanitizer report; a corruption that loads must
  // still describe tensors inside the buffer.
  const auto bytes = small_valid_bytes();
  auto f0 = GgufFile::open_memory(bytes, "x.gguf");
  ASSERT_TRUE(f0.is_ok());
  const size_t header_bytes = size_t(f0->data_offset());
  int loaded = 0, rejected = 0;
  volatile uint64_t sink = 0;
  for (size_t i = 0; i < header_bytes; ++i) {
    for (uint8_t v : {uint8_t(0x00), uint8_t(0xff), uint8_t(bytes[i] ^ 0x01), uint8_t(0x80)}) {
      auto copy = bytes;
      copy[i] = v;
      auto f = GgufFile::open_memory(copy, "x.gguf");
      if (!f.is_ok()) {
        ++rejected;
        EXPECT_FALSE(f.status().message().empty());
        continue;
      }
      ++loaded;
      for (const auto& t : f->tensors()) {
        uint64_t sum = 0;
        for (size_t k = 0; k < t.n_bytes; ++k) sum += t.data[k];  // ASan checks the bounds
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
    if (c.file.size() > ext.size() && c.file.ends_with(ext)) out.push_back(c);
  }
  return out;
}

TEST(GgufBroken, CorpusFilesGiveTheExpectedError) {
  const auto cases = broken_cases(".gguf");
  ASSERT_GE(cases.size(), 30u) << "tests/data/broken/EXPECTED.txt missing or short";
  for (const auto& c : cases) {
    const std::string path = std::string(PDVM_TEST_DATA) + "/broken/" + c.file;
    auto f = GgufFile::open(path);
    ASSERT_FALSE(f.is_ok()) << c.file << " loaded";
    EXPECT_NE(f.status().message().find(c.expected), std::string::npos)
        << c.file << ": expected the message to contain \"" << c.expected << "\", got \""
        << f.status().message() << "\"";
    EXPECT_EQ(f.status().message().rfind(path + ": ", 0), 0u) << f.status().message();
    // Same verdict from memory.
    EXPECT_FALSE(GgufFile::open_memory(read_bytes(path), c.file).is_ok()) << c.file;
  }
}

TEST(GgufBroken, MessagesNameTensorOffsetAndSize) {
  // The brief's example: "x.gguf: tensor 'blk.3.attn_q.weight': data [offset 0x..., N bytes]
  // runs past the end of the file (size 0x...)".
  std::vector<float> data(64);
  const std::string path = temp_path("past_end.gguf");
  ASSERT_TRUE(write_gguf(path, {}, {{"blk.3.attn_q.weight", 0, {64}, data.data(), 256}}).is_ok());
  auto bytes = read_bytes(path);
  fs::remove(path);
  bytes.resize(bytes.size() - 16);
  auto f = GgufFile::open_memory(bytes, "x.gguf");
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(f.status().message().find(
                "x.gguf: tensor 'blk.3.attn_q.weight': data [offset 0x60, 256 bytes] runs past "
                "the end of the file (size 0x150)"),
            std::string::npos)
      << f.status().message();
}

// ggml's ids (ggml.h enum ggml_type) of the types pdvm runs, written out, not derived.
TEST(Gguf, GgmlIdsOfTheQ5Types) {
  EXPECT_EQ(ggml_type_from_weight_type(core::WeightType::kQ5_0), 6u);
  EXPECT_EQ(ggml_type_from_weight_type(core::WeightType::kQ5_1), 7u);
  EXPECT_EQ(ggml_type_from_weight_type(core::WeightType::kQ5_K), 13u);
  EXPECT_EQ(weight_type_from_ggml(13), core::WeightType::kQ5_K);
  EXPECT_EQ(ggml_type_info(7)->block_bytes, 24);
}

TEST(GgufBroken, Q5KRowNotWholeBlocksNamesTheTensor) {
  // A Q5_K tensor of 256 columns, then ne[0] patched to 128 (half a super-block): the reader
  // rejects it at load, naming the tensor, as for every block type.
  std::vector<uint8_t> data(176 * 2);
  const std::string path = temp_path("q5k_half.gguf");
  ASSERT_TRUE(
      write_gguf(path, {}, {{"blk.2.ffn_up.weight", 13, {256, 2}, data.data(), data.size()}})
          .is_ok());
  auto bytes = read_bytes(path);
  fs::remove(path);
  const std::string name = "blk.2.ffn_up.weight";
  const auto it = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
  ASSERT_NE(it, bytes.end());
  const size_t ne0_at = size_t(it - bytes.begin()) + name.size() + 4;  // after u32 n_dims
  uint64_t ne0 = 0;
  std::memcpy(&ne0, &bytes[ne0_at], 8);
  ASSERT_EQ(ne0, 256u);
  ne0 = 128;
  std::memcpy(&bytes[ne0_at], &ne0, 8);
  auto f = GgufFile::open_memory(bytes, "x.gguf");
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), StatusCode::kCorrupt);
  EXPECT_NE(f.status().message().find("x.gguf: tensor 'blk.2.ffn_up.weight'"), std::string::npos)
      << f.status().message();
  EXPECT_NE(f.status().message().find("not a multiple of the Q5_K block size 256"),
            std::string::npos)
      << f.status().message();
}

TEST(GgufBroken, Version1IsUnsupported) {
  auto f = GgufFile::open(std::string(PDVM_TEST_DATA) + "/broken/v1.gguf");
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), StatusCode::kUnsupported);
}

TEST(GgufBroken, MissingFileIsAnIoError) {
  auto f = GgufFile::open(temp_path("does_not_exist.gguf"));
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), StatusCode::kIoError);
}

// ---- the real default model -----------------------------------------------------------------

std::string default_model_path() {
  if (const char* p = std::getenv("PDVM_MODEL"); p && *p) return p;
  return std::string(PDVM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

TEST(GgufModel, SmolLM2DefaultModel) {
  const std::string path = default_model_path();
  if (!fs::exists(path))
    GTEST_SKIP() << "default model not found at " << path
                 << " (set PDVM_MODEL or put it under models/)";
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->tensors().size(), 272u);
  EXPECT_EQ(*f->get_int("llama.block_count"), 30);
  EXPECT_EQ(*f->get_string("general.architecture"), "llama");
  const GgufTensorInfo* embd = f->find("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->ggml_type, 8u);
  EXPECT_EQ(embd->weight_type, core::WeightType::kQ8_0);
  EXPECT_EQ(embd->dims, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(embd->n_bytes, size_t(49152) * (576 / 32) * 34);
  auto tokens = f->get_string_array("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.is_ok()) << tokens.status().message();
  EXPECT_EQ(tokens->size(), 49152u);
  EXPECT_EQ(f->get_int_array("tokenizer.ggml.token_type")->size(), 49152u);
  EXPECT_GT(f->get_string_array("tokenizer.ggml.merges")->size(), 40000u);
  EXPECT_EQ(*f->get_float("llama.rope.freq_base"), 100000.0);
  // Every tensor has a pdvm type here (Q4_1, Q8_0, F32) and lies inside the mapping.
  size_t total = 0;
  for (const auto& t : f->tensors()) {
    EXPECT_TRUE(t.weight_type.has_value()) << t.name;
    EXPECT_GE(t.data, f->mapping()->data());
    EXPECT_LE(t.data + t.n_bytes, f->mapping()->data() + f->mapping()->size());
    total += t.n_bytes;
  }
  EXPECT_LE(f->data_offset() + total, f->mapping()->size());
}

}  // namespace
}  // namespace pdvm::formats
