// GGUF v2/v3 reader and writer. Layout (little-endian): "GGUF", u32 version, u64 tensor_count,
// u64 kv_count, kv_count x {string key, u32 type, value}, tensor_count x {string name,
// u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset}, padding to general.alignment (32),
// data. A string is u64 length + bytes. Every length and count is checked against the bytes
// left before anything is allocated or read, so a hostile header gives a Status, never a crash.
#include "formats/gguf.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <set>

namespace pdvm::formats {
namespace {

static_assert(std::endian::native == std::endian::little,
              "GGUF is read by memcpy of little-endian fields");

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Ids are ggml's enum ggml_type; empty names are ids ggml removed (4, 5, 31-33, 36-38).
// Sizes checked against gguf-py 0.19 GGML_QUANT_SIZES, except Q8_1: ggml's block_q8_1 is
// 2 halves + 32 int8 = 36 bytes (gguf-py says 40); it is a runtime-only type in any case.
constexpr std::array<GgmlTypeInfo, 42> kGgmlTypes = {{
    {"F32", 1, 4},         {"F16", 1, 2},        {"Q4_0", 32, 18},     {"Q4_1", 32, 20},
    {"", 0, 0},            {"", 0, 0},           {"Q5_0", 32, 22},     {"Q5_1", 32, 24},
    {"Q8_0", 32, 34},      {"Q8_1", 32, 36},     {"Q2_K", 256, 84},    {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},    {"Q5_K", 256, 176},   {"Q6_K", 256, 210},   {"Q8_K", 256, 292},
    {"IQ2_XXS", 256, 66},  {"IQ2_XS", 256, 74},  {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18},    {"IQ3_S", 256, 110},  {"IQ2_S", 256, 82},   {"IQ4_XS", 256, 136},
    {"I8", 1, 1},          {"I16", 1, 2},        {"I32", 1, 4},        {"I64", 1, 8},
    {"F64", 1, 8},         {"IQ1_M", 256, 56},   {"BF16", 1, 2},       {"", 0, 0},
    {"", 0, 0},            {"", 0, 0},           {"TQ1_0", 256, 54},   {"TQ2_0", 256, 66},
    {"", 0, 0},            {"", 0, 0},           {"", 0, 0},           {"MXFP4", 32, 17},
    {"NVFP4", 64, 36},     {"Q1_0", 128, 18},
}};

struct WeightTypeGgml { core::WeightType type; uint32_t ggml; };
constexpr WeightTypeGgml kWeightTypes[] = {
    {core::WeightType::kF32, 0},   {core::WeightType::kF16, 1},   {core::WeightType::kBF16, 30},
    {core::WeightType::kQ8_0, 8},  {core::WeightType::kQ4_0, 2},  {core::WeightType::kQ4_1, 3},
    {core::WeightType::kQ4_K, 12}, {core::WeightType::kQ6_K, 14}, {core::WeightType::kQ5_0, 6},
    {core::WeightType::kQ5_1, 7},  {core::WeightType::kQ5_K, 13},
};

bool is_integer_type(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kU16:
    case GgufValueType::kI16: case GgufValueType::kU32: case GgufValueType::kI32:
    case GgufValueType::kU64: case GgufValueType::kI64: case GgufValueType::kBool:
      return true;
    default:
      return false;
  }
}
bool is_float_type(GgufValueType t) {
  return t == GgufValueType::kF32 || t == GgufValueType::kF64;
}
bool is_known_type(uint32_t t) { return t <= uint32_t(GgufValueType::kF64); }

// Bytes of one scalar of type t (0 for string and array).
size_t scalar_bytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kBool: return 1;
    case GgufValueType::kU16: case GgufValueType::kI16: return 2;
    case GgufValueType::kU32: case GgufValueType::kI32: case GgufValueType::kF32: return 4;
    case GgufValueType::kU64: case GgufValueType::kI64: case GgufValueType::kF64: return 8;
    default: return 0;
  }
}

// Whether integer v fits integer type t (u64 values above INT64_MAX are held bit-cast, so any
// int64 fits u64).
bool int_fits(GgufValueType t, int64_t v) {
  switch (t) {
    case GgufValueType::kU8: return v >= 0 && v <= 0xff;
    case GgufValueType::kI8: return v >= -128 && v <= 127;
    case GgufValueType::kU16: return v >= 0 && v <= 0xffff;
    case GgufValueType::kI16: return v >= -32768 && v <= 32767;
    case GgufValueType::kU32: return v >= 0 && v <= 0xffffffffLL;
    case GgufValueType::kI32: return v >= INT32_MIN && v <= INT32_MAX;
    case GgufValueType::kBool: return v == 0 || v == 1;
    case GgufValueType::kU64: case GgufValueType::kI64: return true;
    default: return false;
  }
}

// Bounds-checked little-endian cursor over the file. Every read states what it reads so that
// a failure says what was expected where.
class Reader {
 public:
  Reader(const uint8_t* base, size_t size, const std::string& where)
      : base_(base), size_(size), where_(where) {}
  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }

  Status need(uint64_t n, const std::string& what) const {
    if (n > left())
      return corrupt(where_ + ": " + what + " at offset " + hex(pos_) + " needs " +
                     std::to_string(n) + " bytes, but the file (size " + hex(size_) + ") has " +
                     std::to_string(left()) + " left");
    return Status::ok();
  }
  template <typename T>
  Status read(T* out, const std::string& what) {
    PDVM_TRY(need(sizeof(T), what));
    std::memcpy(out, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::ok();
  }
  Status read_string(std::string* out, const std::string& what) {
    uint64_t len = 0;
    PDVM_TRY(read(&len, what + " length"));
    if (len > left())
      return corrupt(where_ + ": " + what + " at offset " + hex(pos_ - 8) + " says " +
                     std::to_string(len) + " bytes, but the file (size " + hex(size_) +
                     ") has " + std::to_string(left()) + " left");
    out->assign(reinterpret_cast<const char*>(base_ + pos_), size_t(len));
    pos_ += size_t(len);
    return Status::ok();
  }
  // Reads one integer-or-bool scalar of type t into int64 (u64 bit-cast).
  Status read_int(GgufValueType t, int64_t* out, const std::string& what) {
    switch (t) {
      case GgufValueType::kU8: { uint8_t x = 0; PDVM_TRY(read(&x, what)); *out = x; break; }
      case GgufValueType::kI8: { int8_t x = 0; PDVM_TRY(read(&x, what)); *out = x; break; }
      case GgufValueType::kU16: { uint16_t x = 0; PDVM_TRY(read(&x, what)); *out = x; break; }
      case GgufValueType::kI16: { int16_t x = 0; PDVM_TRY(read(&x, what)); *out = x; break; }
      case GgufValueType::kU32: { uint32_t x = 0; PDVM_TRY(read(&x, what)); *out = x; break; }
      case GgufValueType::kI32: { int32_t x = 0; PDVM_TRY(read(&x, what)); *out = x; break; }
      case GgufValueType::kU64: { uint64_t x = 0; PDVM_TRY(read(&x, what)); *out = int64_t(x); break; }
      case GgufValueType::kI64: { int64_t x = 0; PDVM_TRY(read(&x, what)); *out = x; break; }
      case GgufValueType::kBool: {
        uint8_t x = 0;
        PDVM_TRY(read(&x, what));
        if (x > 1)
          return corrupt(where_ + ": " + what + " at offset " + hex(pos_ - 1) + " is a bool " +
                         "holding " + std::to_string(x) + ", expected 0 or 1");
        *out = x;
        break;
      }
      default: PDVM_ASSERT(false && "read_int on a non-integer type");
    }
    return Status::ok();
  }
  Status read_float(GgufValueType t, double* out, const std::string& what) {
    if (t == GgufValueType::kF32) {
      float x = 0;
      PDVM_TRY(read(&x, what));
      *out = x;
    } else {
      PDVM_TRY(read(out, what));
    }
    return Status::ok();
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& where_;
};

Status read_value(Reader& r, GgufValueType type, GgufValue* out, const std::string& where,
                  const std::string& what) {
  out->type = type;
  if (is_integer_type(type)) {
    int64_t x = 0;
    PDVM_TRY(r.read_int(type, &x, what));
    out->v = x;
  } else if (is_float_type(type)) {
    double x = 0;
    PDVM_TRY(r.read_float(type, &x, what));
    out->v = x;
  } else if (type == GgufValueType::kString) {
    std::string s;
    PDVM_TRY(r.read_string(&s, what));
    out->v = std::move(s);
  } else {  // array
    uint32_t elem = 0;
    uint64_t count = 0;
    PDVM_TRY(r.read(&elem, what + " element type"));
    if (!is_known_type(elem))
      return corrupt(where + ": " + what + " has element type " + std::to_string(elem) +
                     ", expected 0..12");
    const auto et = GgufValueType(elem);
    if (et == GgufValueType::kArray)
      return unsupported(where + ": " + what + " is an array of arrays, which pdvm does not read");
    PDVM_TRY(r.read(&count, what + " length"));
    out->array_type = et;
    // Each element takes at least min_bytes, so count is bounded by the bytes left before any
    // allocation (a header claiming 2^60 elements stops here).
    const size_t min_bytes = et == GgufValueType::kString ? 8 : scalar_bytes(et);
    if (count > r.left() / min_bytes)
      return corrupt(where + ": " + what + " at offset " + hex(r.pos() - 8) + " claims " +
                     std::to_string(count) + " " + std::string(gguf_value_type_name(et)) +
                     " elements (at least " + std::to_string(min_bytes) +
                     " bytes each), but the file has " + std::to_string(r.left()) +
                     " bytes left");
    const auto n = size_t(count);
    if (is_integer_type(et)) {
      std::vector<int64_t> xs(n);
      for (size_t i = 0; i < n; ++i) PDVM_TRY(r.read_int(et, &xs[i], what + " element"));
      out->v = std::move(xs);
    } else if (is_float_type(et)) {
      std::vector<double> xs(n);
      for (size_t i = 0; i < n; ++i) PDVM_TRY(r.read_float(et, &xs[i], what + " element"));
      out->v = std::move(xs);
    } else {
      std::vector<std::string> xs(n);
      for (size_t i = 0; i < n; ++i) PDVM_TRY(r.read_string(&xs[i], what + " element"));
      out->v = std::move(xs);
    }
  }
  return Status::ok();
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Bytes of a tensor of ggml type `info` and dims `ne` (innermost first); checks ne[0] against
// the block size and every product for overflow. `at` prefixes the messages.
Status tensor_bytes(const GgmlTypeInfo& info, const std::vector<int64_t>& ne,
                    const std::string& at, uint64_t* n_bytes) {
  const int64_t ne0 = ne.empty() ? 1 : ne[0];
  if (ne0 % info.block_size != 0)
    return corrupt(at + ": dims " + dims_str(ne) + ": ne[0] = " + std::to_string(ne0) +
                   " is not a multiple of the " + std::string(info.name) + " block size " +
                   std::to_string(info.block_size));
  uint64_t bytes = 0;
  uint64_t n_elements = uint64_t(ne0);
  if (__builtin_mul_overflow(uint64_t(ne0 / info.block_size), uint64_t(info.block_bytes), &bytes))
    return corrupt(at + ": dims " + dims_str(ne) + " overflow 64 bits");
  for (size_t i = 1; i < ne.size(); ++i) {
    if (__builtin_mul_overflow(bytes, uint64_t(ne[i]), &bytes) ||
        __builtin_mul_overflow(n_elements, uint64_t(ne[i]), &n_elements) ||
        n_elements > uint64_t(INT64_MAX))
      return corrupt(at + ": dims " + dims_str(ne) + " overflow 64 bits");
  }
  if (bytes > SIZE_MAX) return corrupt(at + ": dims " + dims_str(ne) + " overflow size_t");
  *n_bytes = bytes;
  return Status::ok();
}

}  // namespace

std::string_view gguf_value_type_name(GgufValueType type) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",     "u16",   "i16", "u32",
                                                "i32", "f32",    "bool",  "string", "array",
                                                "u64", "i64",    "f64"};
  const auto i = uint32_t(type);
  return i < std::size(kNames) ? kNames[i] : std::string_view("unknown");
}

std::optional<GgmlTypeInfo> ggml_type_info(uint32_t ggml_type) {
  if (ggml_type >= kGgmlTypes.size() || kGgmlTypes[ggml_type].block_size == 0) return std::nullopt;
  return kGgmlTypes[ggml_type];
}

std::optional<core::WeightType> weight_type_from_ggml(uint32_t ggml_type) {
  for (const auto& w : kWeightTypes)
    if (w.ggml == ggml_type) return w.type;
  return std::nullopt;
}

uint32_t ggml_type_from_weight_type(core::WeightType type) {
  for (const auto& w : kWeightTypes)
    if (w.type == type) return w.ggml;
  PDVM_ASSERT(false && "WeightType without a ggml id");
  return 0;
}

// --- reader ----------------------------------------------------------------------------------

Result<GgufFile> GgufFile::open(const std::string& path) {
  PDVM_ASSIGN_OR_RETURN(std::shared_ptr<core::MappedFile> m, core::MappedFile::open(path));
  std::shared_ptr<const core::MappedFile> mapping = std::move(m);
  PDVM_ASSIGN_OR_RETURN(GgufFile f, parse(mapping, mapping->data(), mapping->size(), path));
  f.mapping_ = std::move(mapping);
  return f;
}

Result<GgufFile> GgufFile::open_memory(std::span<const uint8_t> bytes, std::string name) {
  auto copy = std::make_shared<std::vector<uint8_t>>(bytes.begin(), bytes.end());
  const uint8_t* base = copy->data();
  const size_t size = copy->size();
  return parse(std::move(copy), base, size, std::move(name));
}

Result<GgufFile> GgufFile::parse(std::shared_ptr<const void> keepalive, const uint8_t* base,
                                 size_t size, std::string name) {
  const std::string where = name;
  Reader r(base, size, where);

  // Header.
  uint32_t magic = 0, version = 0;
  if (size < 4 || std::memcmp(base, "GGUF", 4) != 0)
    return corrupt(where + ": not a GGUF file (the first 4 bytes are not \"GGUF\")");
  PDVM_TRY(r.read(&magic, "magic"));
  PDVM_TRY(r.read(&version, "version"));
  if (version == 1)
    return unsupported(where + ": GGUF version 1 (pre-2023 files) is not supported; "
                       "expected version 2 or 3 (re-convert the model with a current llama.cpp)");
  if ((version & 0xffff) == 0 && (__builtin_bswap32(version) == 2 || __builtin_bswap32(version) == 3))
    return unsupported(where + ": big-endian GGUF (version field " + hex(version) +
                       ") is not supported; expected a little-endian file");
  if (version != 2 && version != 3)
    return unsupported(where + ": GGUF version " + std::to_string(version) +
                       ", expected 2 or 3");
  uint64_t n_tensors = 0, n_kvs = 0;
  PDVM_TRY(r.read(&n_tensors, "tensor count"));
  PDVM_TRY(r.read(&n_kvs, "key/value count"));
  // Smallest KV: 8-byte key length + 4-byte type + 1-byte value. Smallest tensor info: 8-byte
  // name length + 4-byte n_dims + 4-byte type + 8-byte offset. Counts above what the bytes left
  // could hold are rejected before anything is reserved.
  if (n_kvs > r.left() / 13)
    return corrupt(where + ": header claims " + std::to_string(n_kvs) +
                   " key/value pairs, but only " + std::to_string(r.left()) + " bytes follow");
  if (n_tensors > r.left() / 24)
    return corrupt(where + ": header claims " + std::to_string(n_tensors) +
                   " tensors, but only " + std::to_string(r.left()) + " bytes follow");

  GgufFile f;
  f.path_ = std::move(name);
  f.version_ = version;

  // Key/value pairs.
  auto kvs = std::make_shared<std::vector<std::pair<std::string, GgufValue>>>();
  auto kv_index = std::make_shared<std::map<std::string, size_t, std::less<>>>();
  kvs->reserve(size_t(n_kvs));
  for (uint64_t i = 0; i < n_kvs; ++i) {
    std::string key;
    PDVM_TRY(r.read_string(&key, "key #" + std::to_string(i)));
    const std::string what = "key '" + key + "'";
    uint32_t type = 0;
    PDVM_TRY(r.read(&type, what + " type"));
    if (!is_known_type(type))
      return corrupt(where + ": " + what + " at offset " + hex(r.pos() - 4) + " has value type " +
                     std::to_string(type) + ", expected 0..12");
    GgufValue value;
    PDVM_TRY(read_value(r, GgufValueType(type), &value, where, what));
    if (!kv_index->emplace(key, kvs->size()).second)
      return corrupt(where + ": " + what + " appears twice");
    kvs->emplace_back(std::move(key), std::move(value));
  }
  f.kvs_ = std::move(kvs);
  f.kv_index_ = std::move(kv_index);

  if (f.has("general.alignment")) {
    const auto type = *f.type_of("general.alignment");
    const auto a = f.get_int("general.alignment");
    if (!a.is_ok() || type == GgufValueType::kBool)
      return corrupt(where + ": general.alignment is a " +
                     std::string(gguf_value_type_name(type)) + ", expected a u32");
    // The spec requires a multiple of 8; with it every tensor starts 8-byte aligned in the
    // file, so block structs and f32 rows may be read in place without misaligned access.
    if (*a < 8 || *a > (int64_t(1) << 30) || !std::has_single_bit(uint64_t(*a)))
      return corrupt(where + ": general.alignment is " + std::to_string(*a) +
                     ", expected a power of two, at least 8 (GGUF requires a multiple of 8)");
    f.alignment_ = uint32_t(*a);
  }

  // Tensor infos.
  f.tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    PDVM_TRY(r.read_string(&t.name, "tensor #" + std::to_string(i) + " name"));
    const std::string at = where + ": tensor '" + t.name + "'";
    const std::string what = "tensor '" + t.name + "'";
    uint32_t n_dims = 0;
    PDVM_TRY(r.read(&n_dims, what + " n_dims"));
    if (n_dims > kMaxDims)
      return corrupt(at + ": has " + std::to_string(n_dims) + " dims, at most " +
                     std::to_string(kMaxDims) + " expected");
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      PDVM_TRY(r.read(&ne, what + " dim " + std::to_string(d)));
      if (ne > uint64_t(INT64_MAX))
        return corrupt(at + ": dim " + std::to_string(d) + " is " + std::to_string(ne) +
                       ", above 2^63 - 1");
      t.dims.push_back(int64_t(ne));
    }
    PDVM_TRY(r.read(&t.ggml_type, what + " type"));
    PDVM_TRY(r.read(&t.offset, what + " offset"));
    const auto info = ggml_type_info(t.ggml_type);
    if (!info)
      return corrupt(at + ": unknown ggml type id " + std::to_string(t.ggml_type) +
                     " (its block size, hence its byte size, is unknown)");
    t.weight_type = weight_type_from_ggml(t.ggml_type);
    uint64_t n_bytes = 0;
    PDVM_TRY(tensor_bytes(*info, t.dims, at, &n_bytes));
    t.n_bytes = size_t(n_bytes);
    if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second)
      return corrupt(at + ": name appears twice");
    f.tensors_.push_back(std::move(t));
  }

  // Data section: starts at the next multiple of the alignment.
  const uint64_t a = f.alignment_;
  const uint64_t data_offset = (uint64_t(r.pos()) + a - 1) / a * a;  // pos < 2^63: no overflow
  f.data_offset_ = data_offset;
  if (!f.tensors_.empty() && data_offset > size)
    return corrupt(where + ": the data section would start at " + hex(data_offset) +
                   ", past the end of the file (size " + hex(size) + ")");
  const uint64_t data_size = data_offset <= size ? size - data_offset : 0;
  for (auto& t : f.tensors_) {
    const std::string at = where + ": tensor '" + t.name + "'";
    if (t.offset % a != 0)
      return corrupt(at + ": data offset " + hex(t.offset) + " is not a multiple of the " +
                     "alignment " + std::to_string(a));
    if (t.offset > data_size || t.n_bytes > data_size - t.offset)
      return corrupt(at + ": data [offset " + hex(data_offset + t.offset) + ", " +
                     std::to_string(t.n_bytes) + " bytes] runs past the end of the file (size " +
                     hex(size) + ")");
    t.data = base + data_offset + t.offset;
  }
  // No two tensors may share bytes (ggml requires them packed in order; we require only that
  // they do not overlap). Zero-byte tensors overlap nothing.
  std::vector<size_t> order(f.tensors_.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    return f.tensors_[x].offset < f.tensors_[y].offset;
  });
  const GgufTensorInfo* prev = nullptr;
  for (size_t i : order) {
    const auto& t = f.tensors_[i];
    if (t.n_bytes == 0) continue;
    if (prev && t.offset < prev->offset + prev->n_bytes)
      return corrupt(where + ": tensor '" + t.name + "': data [offset " + hex(t.offset) + ", " +
                     std::to_string(t.n_bytes) + " bytes] overlaps tensor '" + prev->name +
                     "' [offset " + hex(prev->offset) + ", " + std::to_string(prev->n_bytes) +
                     " bytes] (offsets relative to the data section)");
    prev = &t;
  }
  f.keepalive_ = std::move(keepalive);
  return f;
}

std::vector<std::string> GgufFile::keys() const {
  std::vector<std::string> out;
  out.reserve(kvs_->size());
  for (const auto& kv : *kvs_) out.push_back(kv.first);
  return out;
}

bool GgufFile::has(std::string_view key) const { return kv_index_->find(key) != kv_index_->end(); }

const GgufValue* GgufFile::value(std::string_view key) const {
  const auto it = kv_index_->find(key);
  return it == kv_index_->end() ? nullptr : &(*kvs_)[it->second].second;
}

std::optional<GgufValueType> GgufFile::type_of(std::string_view key) const {
  const GgufValue* v = value(key);
  return v ? std::optional(v->type) : std::nullopt;
}

Result<const GgufValue*> GgufFile::lookup(std::string_view key) const {
  const GgufValue* v = value(key);
  if (!v) return not_found(path_ + ": key '" + std::string(key) + "' not found");
  return v;
}

namespace {
std::string type_desc(const GgufValue& v) {
  std::string s(gguf_value_type_name(v.type));
  if (v.type == GgufValueType::kArray) s += " of " + std::string(gguf_value_type_name(v.array_type));
  return s;
}
Status wrong_type(const std::string& path, std::string_view key, const GgufValue& v,
                  const char* expected) {
  return invalid_argument(path + ": key '" + std::string(key) + "' is a " + type_desc(v) +
                          ", expected " + expected);
}
}  // namespace

Result<std::string> GgufFile::get_string(std::string_view key) const {
  PDVM_ASSIGN_OR_RETURN(const GgufValue* v, lookup(key));
  if (v->type != GgufValueType::kString) return wrong_type(path_, key, *v, "a string");
  return std::get<std::string>(v->v);
}

Result<int64_t> GgufFile::get_int(std::string_view key) const {
  PDVM_ASSIGN_OR_RETURN(const GgufValue* v, lookup(key));
  if (!is_integer_type(v->type)) return wrong_type(path_, key, *v, "an integer");
  const int64_t x = std::get<int64_t>(v->v);
  if (v->type == GgufValueType::kU64 && x < 0)
    return out_of_range(path_ + ": key '" + std::string(key) + "' is the u64 " +
                        std::to_string(uint64_t(x)) + ", above the int64 range");
  return x;
}

Result<double> GgufFile::get_float(std::string_view key) const {
  PDVM_ASSIGN_OR_RETURN(const GgufValue* v, lookup(key));
  if (is_float_type(v->type)) return std::get<double>(v->v);
  if (is_integer_type(v->type) && v->type != GgufValueType::kBool) {
    const int64_t x = std::get<int64_t>(v->v);
    return v->type == GgufValueType::kU64 ? double(uint64_t(x)) : double(x);
  }
  return wrong_type(path_, key, *v, "a number");
}

Result<bool> GgufFile::get_bool(std::string_view key) const {
  PDVM_ASSIGN_OR_RETURN(const GgufValue* v, lookup(key));
  if (v->type != GgufValueType::kBool) return wrong_type(path_, key, *v, "a bool");
  return std::get<int64_t>(v->v) != 0;
}

Result<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  PDVM_ASSIGN_OR_RETURN(const GgufValue* v, lookup(key));
  if (v->type != GgufValueType::kArray || v->array_type != GgufValueType::kString)
    return wrong_type(path_, key, *v, "an array of string");
  return std::get<std::vector<std::string>>(v->v);
}

Result<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  PDVM_ASSIGN_OR_RETURN(const GgufValue* v, lookup(key));
  if (v->type != GgufValueType::kArray || !is_integer_type(v->array_type))
    return wrong_type(path_, key, *v, "an array of integers");
  const auto& xs = std::get<std::vector<int64_t>>(v->v);
  if (v->array_type == GgufValueType::kU64) {
    for (size_t i = 0; i < xs.size(); ++i)
      if (xs[i] < 0)
        return out_of_range(path_ + ": key '" + std::string(key) + "' element " +
                            std::to_string(i) + " is the u64 " + std::to_string(uint64_t(xs[i])) +
                            ", above the int64 range");
  }
  return xs;
}

Result<std::vector<double>> GgufFile::get_float_array(std::string_view key) const {
  PDVM_ASSIGN_OR_RETURN(const GgufValue* v, lookup(key));
  if (v->type == GgufValueType::kArray && is_float_type(v->array_type))
    return std::get<std::vector<double>>(v->v);
  if (v->type == GgufValueType::kArray && is_integer_type(v->array_type) &&
      v->array_type != GgufValueType::kBool) {
    const auto& xs = std::get<std::vector<int64_t>>(v->v);
    std::vector<double> out(xs.size());
    for (size_t i = 0; i < xs.size(); ++i)
      out[i] = v->array_type == GgufValueType::kU64 ? double(uint64_t(xs[i])) : double(xs[i]);
    return out;
  }
  return wrong_type(path_, key, *v, "an array of numbers");
}

const GgufTensorInfo* GgufFile::find(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// --- writer ----------------------------------------------------------------------------------

namespace {

class Writer {
 public:
  template <typename T>
  void put(T x) {
    const auto* p = reinterpret_cast<const uint8_t*>(&x);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put(uint64_t(s.size()));
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void put_int(GgufValueType t, int64_t v) {
    switch (t) {
      case GgufValueType::kU8: case GgufValueType::kBool: put(uint8_t(v)); break;
      case GgufValueType::kI8: put(int8_t(v)); break;
      case GgufValueType::kU16: put(uint16_t(v)); break;
      case GgufValueType::kI16: put(int16_t(v)); break;
      case GgufValueType::kU32: put(uint32_t(v)); break;
      case GgufValueType::kI32: put(int32_t(v)); break;
      case GgufValueType::kU64: put(uint64_t(v)); break;
      case GgufValueType::kI64: put(v); break;
      default: PDVM_ASSERT(false && "put_int on a non-integer type");
    }
  }
  void put_float(GgufValueType t, double v) {
    if (t == GgufValueType::kF32) put(float(v)); else put(v);
  }
  std::vector<uint8_t> bytes;
};

Status check_and_put_value(Writer& w, const std::string& key, const GgufValue& value) {
  const std::string at = "key '" + key + "'";
  const GgufValueType t = value.type;
  const auto mismatch = [&] {
    return invalid_argument(at + ": value of type " + type_desc(value) +
                            " holds the wrong C++ alternative");
  };
  if (!is_known_type(uint32_t(t))) return invalid_argument(at + ": unknown value type");
  w.put(uint32_t(t));
  if (is_integer_type(t)) {
    const int64_t* x = std::get_if<int64_t>(&value.v);
    if (!x) return mismatch();
    if (!int_fits(t, *x))
      return invalid_argument(at + ": " + std::to_string(*x) + " does not fit a " +
                              std::string(gguf_value_type_name(t)));
    w.put_int(t, *x);
  } else if (is_float_type(t)) {
    const double* x = std::get_if<double>(&value.v);
    if (!x) return mismatch();
    w.put_float(t, *x);
  } else if (t == GgufValueType::kString) {
    const std::string* s = std::get_if<std::string>(&value.v);
    if (!s) return mismatch();
    w.put_string(*s);
  } else {
    const GgufValueType et = value.array_type;
    w.put(uint32_t(et));
    if (is_integer_type(et)) {
      const auto* xs = std::get_if<std::vector<int64_t>>(&value.v);
      if (!xs) return mismatch();
      w.put(uint64_t(xs->size()));
      for (int64_t x : *xs) {
        if (!int_fits(et, x))
          return invalid_argument(at + ": element " + std::to_string(x) + " does not fit a " +
                                  std::string(gguf_value_type_name(et)));
        w.put_int(et, x);
      }
    } else if (is_float_type(et)) {
      const auto* xs = std::get_if<std::vector<double>>(&value.v);
      if (!xs) return mismatch();
      w.put(uint64_t(xs->size()));
      for (double x : *xs) w.put_float(et, x);
    } else if (et == GgufValueType::kString) {
      const auto* xs = std::get_if<std::vector<std::string>>(&value.v);
      if (!xs) return mismatch();
      w.put(uint64_t(xs->size()));
      for (const auto& s : *xs) w.put_string(s);
    } else {
      return invalid_argument(at + ": arrays of " + std::string(gguf_value_type_name(et)) +
                              " are not supported");
    }
  }
  return Status::ok();
}

}  // namespace

Status write_gguf(const std::string& path, const std::vector<GgufKv>& kvs,
                  const std::vector<GgufTensorToWrite>& tensors, uint32_t alignment) {
  if (alignment < 8 || !std::has_single_bit(alignment) || alignment > (1u << 30))
    return invalid_argument(path + ": alignment " + std::to_string(alignment) +
                            " is not a power of two of at least 8");
  std::vector<GgufKv> all = kvs;
  bool has_alignment_kv = false;
  std::set<std::string> keys;
  for (const auto& kv : all) {
    if (!keys.insert(kv.key).second)
      return invalid_argument(path + ": key '" + kv.key + "' given twice");
    if (kv.key == "general.alignment") {
      const int64_t* x = std::get_if<int64_t>(&kv.value.v);
      if (!x || *x != int64_t(alignment))
        return invalid_argument(path + ": general.alignment disagrees with alignment " +
                                std::to_string(alignment));
      has_alignment_kv = true;
    }
  }
  if (!has_alignment_kv && alignment != kDefaultAlignment)
    all.push_back({"general.alignment", GgufValue::u32(alignment)});

  Writer w;
  w.put(kGgufMagic);
  w.put(uint32_t(3));
  w.put(uint64_t(tensors.size()));
  w.put(uint64_t(all.size()));
  for (const auto& kv : all) {
    w.put_string(kv.key);
    if (Status s = check_and_put_value(w, kv.key, kv.value); !s) return s.with_context(path);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors) {
    const std::string at = path + ": tensor '" + t.name + "'";
    if (!names.insert(t.name).second) return invalid_argument(at + ": name given twice");
    const auto info = ggml_type_info(t.ggml_type);
    if (!info) return invalid_argument(at + ": unknown ggml type " + std::to_string(t.ggml_type));
    if (t.dims.size() > kMaxDims) return invalid_argument(at + ": more than 4 dims");
    for (int64_t d : t.dims)
      if (d < 0) return invalid_argument(at + ": negative dim in " + dims_str(t.dims));
    uint64_t expected = 0;
    if (Status s = tensor_bytes(*info, t.dims, at, &expected); !s)
      return invalid_argument(s.message());
    if (expected != t.n_bytes)
      return invalid_argument(at + ": " + std::string(info->name) + " " + dims_str(t.dims) +
                              " needs " + std::to_string(expected) + " bytes, given " +
                              std::to_string(t.n_bytes));
    if (t.n_bytes > 0 && t.data == nullptr) return invalid_argument(at + ": data is null");
    w.put_string(t.name);
    w.put(uint32_t(t.dims.size()));
    for (int64_t d : t.dims) w.put(uint64_t(d));
    w.put(t.ggml_type);
    w.put(offset);
    offsets.push_back(offset);
    offset += (t.n_bytes + alignment - 1) / alignment * alignment;
  }
  w.bytes.resize((w.bytes.size() + alignment - 1) / alignment * alignment, 0);

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return io_error(path + ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(w.bytes.data()), std::streamsize(w.bytes.size()));
  static constexpr char kZeros[256] = {};
  for (const auto& t : tensors) {
    if (t.n_bytes) out.write(static_cast<const char*>(t.data), std::streamsize(t.n_bytes));
    size_t pad = (alignment - t.n_bytes % alignment) % alignment;
    while (pad > 0) {
      const size_t n = std::min(pad, sizeof kZeros);
      out.write(kZeros, std::streamsize(n));
      pad -= n;
    }
  }
  out.close();
  if (!out) return io_error(path + ": write failed");
  return Status::ok();
}

}  // namespace pdvm::formats
