// safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets: [begin, end)}, "__metadata__": {str: str}}, then the data section. Every number
// in the header is checked before use, with overflow-safe arithmetic; the rules follow the
// reference implementation (huggingface/safetensors Metadata::validate).
#include "formats/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

namespace pdvm::formats {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we (a real header is a few MB).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Parser messages quote the offending bytes; keep a message printable ASCII.
std::string printable(std::string_view s, size_t max_len) {
  std::string out;
  for (char c : s.substr(0, max_len)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

std::string json_kind(const json& j) { return j.type_name(); }

// A non-negative integer that fits in uint64 (nlohmann parses those as number_unsigned).
bool as_u64(const json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;
  *out = j.get<uint64_t>();
  return true;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Number of elements and bytes of a tensor of `bits`-bit elements; false on overflow or when
// the bit count is not a whole number of bytes.
Status tensor_bytes(const std::vector<int64_t>& shape, int bits, uint64_t* n_bytes) {
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(numel, uint64_t(d), &numel))
      return corrupt("shape " + shape_str(shape) + " has more than 2^64 elements");
  }
  uint64_t n_bits = 0;
  if (__builtin_mul_overflow(numel, uint64_t(bits), &n_bits))
    return corrupt("shape " + shape_str(shape) + " overflows 2^64 bits");
  if (n_bits % 8 != 0)
    return corrupt("shape " + shape_str(shape) + " of " + std::to_string(bits) +
                   "-bit elements is not a whole number of bytes");
  *n_bytes = n_bits / 8;
  return Status::ok();
}

}  // namespace

int safetensors_dtype_bits(std::string_view dtype) {
  struct Entry { std::string_view name; int bits; };
  static constexpr Entry kDtypes[] = {
      {"BOOL", 8},        {"U8", 8},          {"I8", 8},          {"F8_E5M2", 8},
      {"F8_E4M3", 8},     {"F8_E8M0", 8},     {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8},
      {"I16", 16},        {"U16", 16},        {"F16", 16},        {"BF16", 16},
      {"I32", 32},        {"U32", 32},        {"F32", 32},        {"F64", 64},
      {"I64", 64},        {"U64", 64},        {"C64", 64},        {"F4", 4},
      {"F6_E2M3", 6},     {"F6_E3M2", 6},
  };
  for (const auto& e : kDtypes)
    if (e.name == dtype) return e.bits;
  return 0;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  PDVM_ASSIGN_OR_RETURN(std::shared_ptr<core::MappedFile> m, core::MappedFile::open(path));
  std::shared_ptr<const core::MappedFile> mapping = std::move(m);
  PDVM_ASSIGN_OR_RETURN(SafetensorsFile f, parse(mapping, mapping->data(), mapping->size(), path));
  f.mapping_ = std::move(mapping);
  return f;
}

Result<SafetensorsFile> SafetensorsFile::open_memory(std::span<const uint8_t> bytes,
                                                     std::string name) {
  auto copy = std::make_shared<std::vector<uint8_t>>(bytes.begin(), bytes.end());
  const uint8_t* base = copy->data();
  const size_t size = copy->size();
  return parse(std::move(copy), base, size, std::move(name));
}

Result<SafetensorsFile> SafetensorsFile::parse(std::shared_ptr<const void> keepalive,
                                               const uint8_t* base, size_t size,
                                               std::string name) {
  const std::string where = name;  // a copy: name is moved into the file below
  if (size < 8)
    return corrupt(where + ": file is " + std::to_string(size) +
                   " bytes, too short for the 8-byte safetensors header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | base[i];  // little-endian
  if (header_len > kMaxHeaderBytes)
    return corrupt(where + ": header length " + std::to_string(header_len) +
                   " exceeds the 100 MB limit of safetensors");
  if (header_len > size - 8)
    return corrupt(where + ": header length " + std::to_string(header_len) +
                   " runs past the end of the file (" + std::to_string(size) + " bytes)");
  if (header_len < 2 || base[8] != '{')
    return corrupt(where + ": header does not start with '{' (not a safetensors file?)");
  const uint8_t* header = base + 8;
  const uint8_t* data = header + header_len;
  const uint64_t data_size = size - 8 - header_len;

  // Duplicate keys are rejected (nlohmann would silently keep the last one, which lets two
  // readers disagree about a file). One set of keys per open object.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  const json::parser_callback_t on_event = [&](int, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (ev == json::parse_event_t::key && !open_objects.empty() && parsed.is_string()) {
      if (!open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json root;
  try {
    root = json::parse(header, data, on_event);
  } catch (const json::exception& e) {  // parse_error: says where ("at line 1, column 17")
    return corrupt(where + ": header (" + std::to_string(header_len) +
                   " bytes) is not valid JSON: " + printable(e.what(), 300));
  }
  if (!duplicate.empty())
    return corrupt(where + ": header repeats the key '" + duplicate + "'");
  if (!root.is_object())
    return corrupt(where + ": header is a JSON " + json_kind(root) + ", expected an object");

  SafetensorsFile f;
  f.path_ = std::move(name);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end) relative to data
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object())
        return corrupt(where + ": __metadata__ is a JSON " + json_kind(value) +
                       ", expected an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          return corrupt(where + ": __metadata__ key '" + mk + "' is a JSON " + json_kind(mv) +
                         ", expected a string");
        f.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string at = where + ": tensor '" + key + "'";
    if (!value.is_object())
      return corrupt(at + ": is a JSON " + json_kind(value) + ", expected an object");
    const auto dtype_it = value.find("dtype");
    const auto shape_it = value.find("shape");
    const auto offsets_it = value.find("data_offsets");
    if (dtype_it == value.end() || shape_it == value.end() || offsets_it == value.end())
      return corrupt(at + ": needs 'dtype', 'shape' and 'data_offsets'");
    if (!dtype_it->is_string() || dtype_it->get<std::string>().empty())
      return corrupt(at + ": dtype is " + dtype_it->dump() + ", expected a dtype name string");
    SafetensorsTensor t;
    t.name = key;
    t.dtype = dtype_it->get<std::string>();
    t.dtype_bits = safetensors_dtype_bits(t.dtype);
    if (!shape_it->is_array())
      return corrupt(at + ": shape is a JSON " + json_kind(*shape_it) + ", expected an array");
    for (const json& d : *shape_it) {
      uint64_t v = 0;
      if (!as_u64(d, &v) || v > uint64_t(INT64_MAX))
        return corrupt(at + ": shape entry " + d.dump() + " is not a non-negative integer");
      t.shape.push_back(int64_t(v));
    }
    uint64_t begin = 0, end = 0;
    if (!offsets_it->is_array() || offsets_it->size() != 2 || !as_u64((*offsets_it)[0], &begin) ||
        !as_u64((*offsets_it)[1], &end))
      return corrupt(at + ": data_offsets is " + offsets_it->dump() +
                     ", expected [begin, end] of non-negative integers");
    if (begin > end)
      return corrupt(at + ": data_offsets [" + std::to_string(begin) + ", " +
                     std::to_string(end) + "] ends before it begins");
    if (end > data_size)
      return corrupt(at + ": data [offset " + hex(8 + header_len + begin) + ", " +
                     std::to_string(end - begin) + " bytes] runs past the end of the file (size " +
                     hex(size) + ")");
    if (t.dtype_known()) {
      uint64_t expected = 0;
      if (Status s = tensor_bytes(t.shape, t.dtype_bits, &expected); !s) return s.with_context(at);
      if (expected != end - begin)
        return corrupt(at + ": " + t.dtype + " " + shape_str(t.shape) + " needs " +
                       std::to_string(expected) + " bytes but data_offsets [" +
                       std::to_string(begin) + ", " + std::to_string(end) + "] hold " +
                       std::to_string(end - begin));
    }
    t.data = data + begin;
    t.n_bytes = size_t(end - begin);
    f.tensors_.push_back(std::move(t));
    ranges.emplace_back(begin, end);
  }

  // The ranges, sorted, must tile [0, data_size): no overlap (two tensors aliasing one byte),
  // no hole (bytes no tensor accounts for, the polyglot-file trick). Zero-size tensors may sit
  // at any boundary.
  std::vector<size_t> order(f.tensors_.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return ranges[a] != ranges[b] ? ranges[a] < ranges[b] : f.tensors_[a].name < f.tensors_[b].name;
  });
  uint64_t cursor = 0;
  std::string prev = "(start of data)";
  for (size_t i : order) {
    const auto [begin, end] = ranges[i];
    const std::string at = where + ": tensor '" + f.tensors_[i].name + "'";
    if (begin < cursor)
      return corrupt(at + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                     "] overlap tensor '" + prev + "' (which ends at " + std::to_string(cursor) +
                     ")");
    if (begin > cursor)
      return corrupt(at + ": data begins at " + std::to_string(begin) + " but the previous " +
                     "tensor ends at " + std::to_string(cursor) +
                     ": bytes no tensor accounts for");
    cursor = end;
    prev = f.tensors_[i].name;
  }
  if (cursor != data_size)
    return corrupt(where + ": tensors cover " + std::to_string(cursor) + " bytes of a " +
                   std::to_string(data_size) + "-byte data section: trailing bytes no tensor "
                   "accounts for");

  std::vector<SafetensorsTensor> sorted;
  sorted.reserve(order.size());
  for (size_t i : order) sorted.push_back(std::move(f.tensors_[i]));
  f.tensors_ = std::move(sorted);
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  f.keepalive_ = std::move(keepalive);
  return f;
}

Status write_safetensors(const std::string& path,
                         const std::vector<SafetensorsTensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = header["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    const std::string at = path + ": tensor '" + t.name + "'";
    if (t.name == "__metadata__") return invalid_argument(at + ": name is reserved");
    if (!names.insert(t.name).second) return invalid_argument(at + ": name given twice");
    for (int64_t d : t.shape)
      if (d < 0) return invalid_argument(at + ": negative dimension in " + shape_str(t.shape));
    if (t.dtype.empty()) return invalid_argument(at + ": empty dtype");
    if (const int bits = safetensors_dtype_bits(t.dtype); bits != 0) {
      uint64_t expected = 0;
      if (Status s = tensor_bytes(t.shape, bits, &expected); !s) return s.with_context(at);
      if (expected != t.n_bytes)
        return invalid_argument(at + ": " + t.dtype + " " + shape_str(t.shape) + " needs " +
                                std::to_string(expected) + " bytes, given " +
                                std::to_string(t.n_bytes));
    }
    if (t.n_bytes > 0 && t.data == nullptr) return invalid_argument(at + ": data is null");
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.n_bytes}}};
    offset += t.n_bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section 8-byte aligned, as the reference

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return io_error(path + ": cannot open for writing");
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const auto& t : tensors)
    if (t.n_bytes) out.write(static_cast<const char*>(t.data), std::streamsize(t.n_bytes));
  out.close();
  if (!out) return io_error(path + ": write failed");
  return Status::ok();
}

}  // namespace pdvm::formats
