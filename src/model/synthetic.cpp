// make_synthetic_model: random valid weights for a named shape. Each row of each matrix draws
// from its own counter-based generator (splitmix64 of seed, tensor id, row), so the bytes do not
// depend on how rows are split across threads. pdvm's int8 types are generated as int8 rows plus
// a row scale, in fixed blocks of rows that the format's own encoder turns into its bytes.
#include "model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/half.h"
#include "core/thread_pool.h"
#include "formats/bitmap_i8.h"
#include "formats/int8_rows.h"
#include "formats/mdcsr.h"
#include "formats/quant_blocks.h"
#include "formats/sparse_arrays.h"

namespace pdvm::model {
namespace {

using core::WeightType;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct Rng {
  uint64_t state;
  Rng(uint64_t seed, uint64_t tensor, uint64_t row) {
    state = seed;
    state ^= splitmix64(state) + tensor * 0x632be59bd9b4e019ull;
    state ^= splitmix64(state) + row * 0xd6e8feb86659fd93ull;
  }
  uint64_t next() { return splitmix64(state); }
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
  void fill(uint8_t* dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { const uint64_t v = next(); std::memcpy(dst + i, &v, 8); }
    if (i < n) { const uint64_t v = next(); std::memcpy(dst + i, &v, n - i); }
  }
};

// std of the raw quantized values: int8 uniform over [-128, 127]; nibble uniform over [0, 15].
constexpr double kStdInt8 = 73.9004;   // sqrt((256^2 - 1) / 12)
constexpr double kStdNibble = 4.6098;  // sqrt((16^2 - 1) / 12)
constexpr double kStdQ6 = 18.4730;     // sqrt((64^2 - 1) / 12): Q6_K's codes q - 32
constexpr double kStdQ5 = 9.2331;      // sqrt((32^2 - 1) / 12): the 5-bit codes of Q5_0/Q5_1/Q5_K
constexpr double kSqrt3 = 1.7320508075688772;

// Mean of q^2 for q uniform over +-1..+-127: (1/127) * sum_{k=1..127} k^2 = 128 * 255 / 6.
constexpr double kMeanSqNonzeroInt8 = 5440.0;

// Rows per encoded block of a pdvm int8 matrix: a fixed count, so the blocks (and the joined
// bytes) are the same whatever the thread count; 64 rows of 17920 int8 are 1.1 MB per thread.
constexpr int64_t kInt8BlockRows = 64;

// Q4_K / Q5_K: stores the 6-bit scale and min of sub-block j (0..7) into the 12 packed bytes
// (zeroed first), the inverse of formats::q4_k_scale_min.
void pack_k_scale_min(int j, int sc, int mn, uint8_t* scales) {
  if (j < 4) {
    scales[j] |= uint8_t(sc);
    scales[j + 4] |= uint8_t(mn);
  } else {
    scales[j + 4] = uint8_t((sc & 0xF) | ((mn & 0xF) << 4));
    scales[j - 4] |= uint8_t((sc >> 4) << 6);
    scales[j] |= uint8_t((mn >> 4) << 6);
  }
}

// Q4_K / Q5_K blocks: per sub-block a 6-bit scale in [32, 63] and a minimum that centres it
// (codes average 7.5 / 15.5: dmin * m ~ 7.5 d sc with dmin = 8 d, or 15.5 d sc with dmin = 16 d,
// which keeps m within 6 bits); w = d sc q - dmin m has std ~ d * 47.5 * (4.6 / 9.2).
template <typename Block>
void fill_k45(Block* b, int64_t cols, double sd, Rng& rng) {
  constexpr bool kQ5 = requires { b->qh; };
  constexpr double kStd = kQ5 ? kStdQ5 : kStdNibble, kDmin = kQ5 ? 16.0 : 8.0;
  const double base = sd / (kStd * 47.5);
  for (int64_t k = 0; k < cols / formats::kQK_K; ++k) {
    const double d = base * (0.75 + 0.5 * rng.uniform());
    b[k].d = core::f32_to_f16(float(d));
    b[k].dmin = core::f32_to_f16(float(kDmin * d));
    std::memset(b[k].scales, 0, sizeof(b[k].scales));
    for (int j = 0; j < 8; ++j) {
      const int sc = 32 + int(rng.next() % 32), mn = int(std::lround((kDmin - 0.5) * sc / kDmin));
      pack_k_scale_min(j, sc, mn, b[k].scales);
    }
    if constexpr (kQ5) rng.fill(b[k].qh, sizeof(b[k].qh));
    rng.fill(b[k].qs, sizeof(b[k].qs));
  }
}

// Q4_0 / Q4_1 / Q5_0 / Q5_1 blocks of 32: a jittered scale d for codes of std kStdNibble or
// kStdQ5 (Q5: the fifth bits qh too); with an offset m (Q4_1, Q5_1) the block is centred: codes
// average 7.5 / 15.5, so m ~ -7.5 d / -15.5 d, jittered by up to half a step.
template <typename Block>
void fill_block32(Block* b, int64_t cols, double sd, Rng& rng) {
  constexpr bool kQ5 = requires { b->qh; }, kOffset = requires { b->m; };
  const double base = sd / (kQ5 ? kStdQ5 : kStdNibble), centre = kQ5 ? 15.5 : 7.5;
  for (int64_t k = 0; k < cols / formats::kQK; ++k) {
    const double d = base * (0.75 + 0.5 * rng.uniform());
    b[k].d = core::f32_to_f16(float(d));
    if constexpr (kOffset)
      b[k].m = core::f32_to_f16(float(-centre * d + (rng.uniform() - 0.5) * d));
    if constexpr (kQ5) rng.fill(b[k].qh, sizeof(b[k].qh));
    rng.fill(b[k].qs, sizeof(b[k].qs));
  }
}

bool is_pdvm_int8(WeightType t) { return t == WeightType::kI8Row || core::is_sparse(t); }

bool supported_layer(WeightType t) {
  return t == WeightType::kF32 || t == WeightType::kF16 || t == WeightType::kBF16 ||
         t == WeightType::kQ8_0 || t == WeightType::kQ4_0 || t == WeightType::kQ4_1 ||
         t == WeightType::kQ5_0 || t == WeightType::kQ5_1 || t == WeightType::kQ4_K ||
         t == WeightType::kQ5_K || t == WeightType::kQ6_K || is_pdvm_int8(t);
}
// The embedding is read one row at a time (dequantize_row): the sparse types have no such rows.
bool supported_head(WeightType t) { return supported_layer(t) && !core::is_sparse(t); }

// Kept (nonzero) weights per row of a sparse matrix.
int64_t kept_per_row(int64_t cols, double sparsity) {
  return std::clamp<int64_t>(std::llround((1.0 - sparsity) * double(cols)), 0, cols);
}

// Bytes of a matrix, for progress only: exact for dense types; for the sparse ones it assumes no
// MdCSR gap padding (gaps > 255 are rare below ~95% sparsity), so it is a close lower bound.
size_t estimated_bytes(WeightType t, int64_t rows, int64_t cols, double sparsity) {
  if (!core::is_sparse(t)) return size_t(rows) * core::row_bytes(t, cols);
  const int64_t keep = kept_per_row(cols, sparsity);
  if (t == WeightType::kBitmapI8)
    return size_t(rows) * size_t(keep + 8 * formats::bitmap_groups(cols) + 8) + 4;
  const int64_t chunks = (keep + formats::kMdCsrChunk - 1) / formats::kMdCsrChunk;
  return size_t(rows) * size_t(chunks * (2 * formats::kMdCsrChunk + 2) + 8) + 4;
}

// One int8 row of a pdvm int8 matrix: exactly `keep` of the `cols` values nonzero, uniform over
// +-1..+-127, at columns drawn by selection sampling (Knuth's Algorithm S: column j is kept with
// probability need / (cols - j), which keeps exactly `keep` and makes every set of columns equally
// likely). One 64-bit draw per column: the high half decides, the low bits give the value.
// Returns the row scale: w = scale * q has std ~ sd, jittered by U[0.75, 1.25] per row.
float int8_row(int64_t cols, int64_t keep, double sd, Rng& rng, int8_t* q) {
  const double frac = double(std::max<int64_t>(keep, 1)) / double(cols);
  const float scale = float(sd / std::sqrt(frac * kMeanSqNonzeroInt8) * (0.75 + 0.5 * rng.uniform()));
  uint64_t need = uint64_t(keep);
  for (int64_t j = 0; j < cols; ++j) {
    const uint64_t x = rng.next();
    const uint64_t left = uint64_t(cols - j);  // < 2^32, so the product fits
    // Branch-free: at 50% sparsity a branch on `take` mispredicts every other column.
    const uint64_t take = (((x >> 32) * left) >> 32) < need;  // [0, left) by multiply-shift
    const int mag = 1 + int((x & 0xffff) % 127);
    const int sign = 1 - 2 * int((x >> 16) & 1);
    q[j] = int8_t(sign * mag * int(take));
    need -= take;
  }
  return scale;
}

// The arrays of one sparse matrix and the layout its Matrix points at, owned together.
struct OwnedSparse {
  formats::SparseArrays arrays;
  core::SparseLayout layout;
};

// Writes one row of `cols` weights of type t with target std `sd`.
void fill_row(WeightType t, int64_t cols, double sd, Rng& rng, uint8_t* dst) {
  switch (t) {
    case WeightType::kF32: {
      for (int64_t j = 0; j < cols; ++j) {
        const float v = float((2.0 * rng.uniform() - 1.0) * kSqrt3 * sd);
        std::memcpy(dst + 4 * j, &v, 4);
      }
      return;
    }
    case WeightType::kF16:
    case WeightType::kBF16: {
      for (int64_t j = 0; j < cols; ++j) {
        const float v = float((2.0 * rng.uniform() - 1.0) * kSqrt3 * sd);
        const uint16_t h = t == WeightType::kF16 ? core::f32_to_f16(v) : core::f32_to_bf16(v);
        std::memcpy(dst + 2 * j, &h, 2);
      }
      return;
    }
    case WeightType::kQ8_0: {
      auto* b = reinterpret_cast<formats::BlockQ8_0*>(dst);
      const double base = sd / kStdInt8;
      for (int64_t k = 0; k < cols / formats::kQK; ++k) {
        // scale first, so the qs fill stays 8-byte aligned in the stream
        b[k].d = core::f32_to_f16(float(base * (0.75 + 0.5 * rng.uniform())));
        rng.fill(reinterpret_cast<uint8_t*>(b[k].qs), sizeof(b[k].qs));
      }
      return;
    }
    case WeightType::kQ4_0:
      return fill_block32(reinterpret_cast<formats::BlockQ4_0*>(dst), cols, sd, rng);
    case WeightType::kQ4_1:
      return fill_block32(reinterpret_cast<formats::BlockQ4_1*>(dst), cols, sd, rng);
    case WeightType::kQ5_0:
      return fill_block32(reinterpret_cast<formats::BlockQ5_0*>(dst), cols, sd, rng);
    case WeightType::kQ5_1:
      return fill_block32(reinterpret_cast<formats::BlockQ5_1*>(dst), cols, sd, rng);
    case WeightType::kQ4_K:
      return fill_k45(reinterpret_cast<formats::BlockQ4_K*>(dst), cols, sd, rng);
    case WeightType::kQ5_K:
      return fill_k45(reinterpret_cast<formats::BlockQ5_K*>(dst), cols, sd, rng);
    case WeightType::kQ6_K: {
      // codes q - 32 uniform over [-32, 31] (std 18.5), int8 scales of +-[16, 47]
      auto* b = reinterpret_cast<formats::BlockQ6_K*>(dst);
      const double base = sd / (kStdQ6 * 31.5);
      for (int64_t k = 0; k < cols / formats::kQK_K; ++k) {
        rng.fill(b[k].ql, sizeof(b[k].ql));
        rng.fill(b[k].qh, sizeof(b[k].qh));
        for (auto& sc : b[k].scales) {
          const uint64_t x = rng.next();
          sc = int8_t((16 + int(x % 32)) * ((x >> 32) & 1 ? -1 : 1));
        }
        b[k].d = core::f32_to_f16(float(base * (0.75 + 0.5 * rng.uniform())));
      }
      return;
    }
    default: PDVM_ASSERT(false && "unsupported synthetic weight type");
  }
}

struct Builder {
  const SyntheticSpec& spec;
  core::Model& model;
  core::ThreadPool& pool;
  ProgressFn progress;
  size_t bytes_done = 0, bytes_total = 0;
  uint64_t next_tensor = 0;

  core::Matrix matrix(WeightType t, int64_t rows, int64_t cols, double sd) {
    if (is_pdvm_int8(t)) return int8_matrix(t, rows, cols, sd);
    const uint64_t tensor = next_tensor++;
    core::Matrix m{t, rows, cols, nullptr};
    // new[] without () leaves the bytes uninitialised: every byte is written below, and zeroing
    // 15 GB first would double the time.
    std::shared_ptr<uint8_t[]> buf(new uint8_t[m.n_bytes()]);
    uint8_t* base = buf.get();
    const size_t stride = m.row_stride();
    pool.parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        Rng rng(spec.seed, tensor, uint64_t(r));
        fill_row(t, cols, sd, rng, base + size_t(r) * stride);
      }
    });
    m.data = base;
    model.storage.push_back(std::shared_ptr<const void>(buf, buf.get()));
    bytes_done += m.n_bytes();
    if (progress) progress(bytes_done, bytes_total);
    return m;
  }

  // Rows [r0, r0 + n) of a pdvm int8 matrix as int8 + row scales (the encoders' input).
  formats::QuantizedMatrix int8_block(uint64_t tensor, int64_t r0, int64_t n, int64_t cols,
                                      int64_t keep, double sd) const {
    formats::QuantizedMatrix qm;
    qm.rows = n;
    qm.cols = cols;
    qm.q.resize(size_t(n * cols));
    qm.scale.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      Rng rng(spec.seed, tensor, uint64_t(r0 + i));
      qm.scale[size_t(i)] = int8_row(cols, keep, sd, rng, qm.q.data() + i * cols);
    }
    return qm;
  }

  // i8_row, mdcsr, bitmap_i8: blocks of kInt8BlockRows rows are generated and encoded in
  // parallel by the formats' encoders, then joined into one matrix's arrays (row_ptr rebased).
  // Peak extra memory: the encoded blocks of one matrix until they are joined, never a dense
  // f32 copy. Errors cannot happen here: make_synthetic_model checked cols against the limits.
  core::Matrix int8_matrix(WeightType t, int64_t rows, int64_t cols, double sd) {
    const uint64_t tensor = next_tensor++;
    const int64_t keep = core::is_sparse(t) ? kept_per_row(cols, spec.sparsity) : cols;
    const int64_t n_blocks = (rows + kInt8BlockRows - 1) / kInt8BlockRows;
    auto block_rows = [&](int64_t b) { return std::min(kInt8BlockRows, rows - b * kInt8BlockRows); };
    core::Matrix m{t, rows, cols, nullptr};
    if (t == WeightType::kI8Row) {
      std::shared_ptr<uint8_t[]> buf(new uint8_t[m.n_bytes()]);  // every byte written below
      pool.parallel_for(n_blocks, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const auto bytes = formats::encode_i8_rows(
              int8_block(tensor, b * kInt8BlockRows, block_rows(b), cols, keep, sd));
          std::memcpy(buf.get() + size_t(b * kInt8BlockRows) * m.row_stride(), bytes.data(), bytes.size());
        }
      });
      m.data = buf.get();
      model.storage.push_back(std::shared_ptr<const void>(buf, buf.get()));
    } else {
      std::vector<formats::SparseArrays> parts(static_cast<size_t>(n_blocks));
      pool.parallel_for(n_blocks, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const auto qm = int8_block(tensor, b * kInt8BlockRows, block_rows(b), cols, keep, sd);
          auto enc = t == WeightType::kMdCsr ? formats::encode_mdcsr(qm) : formats::encode_bitmap_i8(qm);
          PDVM_ASSERT(enc.is_ok());
          parts[size_t(b)] = std::move(enc).value();
        }
      });
      auto owned = std::make_shared<OwnedSparse>();
      join(parts, rows, cols, owned->arrays);
      owned->layout = owned->arrays.layout();
      m = owned->arrays.matrix(&owned->layout);
      model.storage.push_back(owned);
    }
    bytes_done += estimated_bytes(t, rows, cols, spec.sparsity);
    if (progress) progress(bytes_done, bytes_total);
    return m;
  }

  // Concatenates encoded row blocks into `a`; row_ptr entries of each block are offset by what
  // the blocks before it hold (MdCSR: chunks; bitmap: values). Copies run in parallel by block.
  void join(std::vector<formats::SparseArrays>& parts, int64_t rows, int64_t cols,
            formats::SparseArrays& a) {
    struct At { size_t row = 0, ptr = 0, values = 0, deltas = 0, bases = 0, masks = 0; };
    std::vector<At> at(parts.size() + 1);
    a.type = parts.front().type;
    a.rows = rows;
    a.cols = cols;
    for (size_t b = 0; b < parts.size(); ++b) {
      const auto& p = parts[b];
      at[b + 1].row = at[b].row + size_t(p.rows);
      at[b + 1].ptr = at[b].ptr + p.row_ptr.back();
      at[b + 1].values = at[b].values + p.values.size();
      at[b + 1].deltas = at[b].deltas + p.deltas.size();
      at[b + 1].bases = at[b].bases + p.chunk_base.size();
      at[b + 1].masks = at[b].masks + p.masks.size();
      a.n_nonzero += p.n_nonzero;
    }
    const At& end = at.back();
    PDVM_ASSERT(end.row == size_t(rows) && end.ptr <= UINT32_MAX);
    a.row_ptr.resize(size_t(rows) + 1);
    a.row_scale.resize(size_t(rows));
    a.values.resize(end.values);
    a.deltas.resize(end.deltas);
    a.chunk_base.resize(end.bases);
    a.masks.resize(end.masks);
    a.row_ptr[size_t(rows)] = uint32_t(end.ptr);
    pool.parallel_for(int64_t(parts.size()), 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        formats::SparseArrays& p = parts[size_t(b)];
        const At& o = at[size_t(b)];
        for (int64_t i = 0; i < p.rows; ++i) a.row_ptr[o.row + size_t(i)] = uint32_t(o.ptr + p.row_ptr[size_t(i)]);
        auto copy = [](auto& dst, size_t off, const auto& src) {
          if (!src.empty()) std::memcpy(dst.data() + off, src.data(), src.size() * sizeof(src[0]));
        };
        copy(a.row_scale, o.row, p.row_scale);
        copy(a.values, o.values, p.values);
        copy(a.deltas, o.deltas, p.deltas);
        copy(a.chunk_base, o.bases, p.chunk_base);
        copy(a.masks, o.masks, p.masks);
        p = formats::SparseArrays{};  // free the block as soon as it is copied
      }
    });
  }

  std::vector<float> vec(int64_t n, float centre, float spread) {
    Rng rng(spec.seed, next_tensor++, 0);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = centre + spread * (2.0f * rng.uniform() - 1.0f);
    return v;
  }
};

core::ModelConfig base_config() {
  core::ModelConfig c;
  c.rms_eps = 1e-5f;
  c.bos_id = 1;
  c.eos_ids = {2};
  return c;
}

}  // namespace

std::vector<std::string> known_shapes() { return {"phi-4", "llama-3-8b", "smollm2-135m"}; }

Result<SyntheticSpec> parse_shape(std::string_view name) {
  SyntheticSpec s;
  s.shape = std::string(name);
  core::ModelConfig& c = s.config;
  c = base_config();
  if (name == "phi-4") {
    c.arch = core::Arch::kPhi3;
    c.vocab_size = 100352; c.d_model = 5120; c.n_layers = 40; c.n_heads = 40; c.n_kv_heads = 10;
    c.head_dim = 128; c.d_ff = 17920; c.rope_theta = 250000.0f; c.max_seq = 16384;
    c.rope_style = core::RopeStyle::kNeox; c.tie_embeddings = false;
  } else if (name == "llama-3-8b") {
    c.arch = core::Arch::kLlama;
    c.vocab_size = 128256; c.d_model = 4096; c.n_layers = 32; c.n_heads = 32; c.n_kv_heads = 8;
    c.head_dim = 128; c.d_ff = 14336; c.rope_theta = 500000.0f; c.max_seq = 8192;
    c.rope_style = core::RopeStyle::kInterleaved;  // as GGUF llama stores it
    c.rope_scaling = {core::RopeScalingType::kLlama3, 8.0f, 1.0f, 4.0f, 8192};
    c.tie_embeddings = false;
  } else if (name == "smollm2-135m") {
    c.arch = core::Arch::kLlama;
    c.vocab_size = 49152; c.d_model = 576; c.n_layers = 30; c.n_heads = 9; c.n_kv_heads = 3;
    c.head_dim = 64; c.d_ff = 1536; c.rope_theta = 100000.0f; c.max_seq = 8192;
    c.rope_style = core::RopeStyle::kNeox; c.tie_embeddings = true;
  } else {
    std::string known;
    for (const auto& k : known_shapes()) known += (known.empty() ? "" : ", ") + k;
    return invalid_argument("unknown synthetic shape '" + std::string(name) + "' (known: " + known +
                            ")");
  }
  c.rope_dim = c.head_dim;
  return s;
}

Result<core::Model> make_synthetic_model(const SyntheticSpec& spec, ProgressFn progress) {
  const core::ModelConfig& c = spec.config;
  PDVM_TRY(c.validate().with_context("synthetic model '" + spec.shape + "'"));
  if (!supported_layer(spec.layer_type))
    return unsupported("synthetic model: weight type " + std::string(core::weight_type_name(spec.layer_type)) +
                       " is not generated (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, "
                       "q5_1, q4_K, q5_K, q6_K, i8_row, mdcsr, bitmap_i8)");
  if (!supported_head(spec.head_type))
    return unsupported("synthetic model: embedding / LM head type " +
                       std::string(core::weight_type_name(spec.head_type)) +
                       " is not generated (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, "
                       "q5_1, q4_K, q5_K, q6_K, i8_row)");
  if (!(spec.sparsity >= 0.0 && spec.sparsity < 1.0))
    return invalid_argument("synthetic model: sparsity " + std::to_string(spec.sparsity) +
                            " is not in [0, 1)");
  if (spec.sparsity != 0.0 && !core::is_sparse(spec.layer_type))
    return invalid_argument("synthetic model: sparsity applies to the sparse types (mdcsr, bitmap_i8), "
                            "not " + std::string(core::weight_type_name(spec.layer_type)));
  auto cols_ok = [](WeightType t, int64_t cols) {
    return cols % core::weight_type_info(t).block_size == 0;
  };
  const int64_t q_dim = int64_t(c.n_heads) * c.head_dim, kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
  for (int64_t cols : {int64_t(c.d_model), q_dim, int64_t(c.d_ff)}) {
    if (!cols_ok(spec.layer_type, cols) || !cols_ok(spec.head_type, c.d_model))
      return invalid_argument("synthetic model: row length " + std::to_string(cols) +
                              " is not a multiple of the block size of the weight type");
    if (spec.layer_type == WeightType::kMdCsr && cols > formats::kMdCsrMaxCols)
      return invalid_argument("synthetic model: MdCSR rows hold at most " +
                              std::to_string(formats::kMdCsrMaxCols) + " columns, not " +
                              std::to_string(cols));
  }

  core::Model model;
  model.config = c;
  model.source = "synthetic:" + spec.shape;
  core::ThreadPool pool(spec.threads);
  Builder b{spec, model, pool, std::move(progress)};

  const WeightType lt = spec.layer_type;
  const double sp = spec.sparsity;
  const int64_t d = c.d_model, ff = c.d_ff;
  const size_t layer_bytes = estimated_bytes(lt, q_dim, d, sp) + 2 * estimated_bytes(lt, kv_dim, d, sp) +
                             estimated_bytes(lt, d, q_dim, sp) + 2 * estimated_bytes(lt, ff, d, sp) +
                             estimated_bytes(lt, d, ff, sp);
  const size_t head_bytes = estimated_bytes(spec.head_type, c.vocab_size, c.d_model, 0.0);
  b.bytes_total = layer_bytes * size_t(c.n_layers) + head_bytes * (c.tie_embeddings ? 1 : 2);

  const double sd_d = 1.0 / std::sqrt(double(c.d_model));
  model.tok_embd = b.matrix(spec.head_type, c.vocab_size, c.d_model, c.tie_embeddings ? sd_d : 1.0);
  model.layers.resize(size_t(c.n_layers));
  for (auto& l : model.layers) {
    l.attn_norm = b.vec(c.d_model, 1.0f, 0.1f);
    l.wq = b.matrix(spec.layer_type, q_dim, c.d_model, sd_d);
    l.wk = b.matrix(spec.layer_type, kv_dim, c.d_model, sd_d);
    l.wv = b.matrix(spec.layer_type, kv_dim, c.d_model, sd_d);
    if (c.qkv_bias) {
      l.bq = b.vec(q_dim, 0.0f, 0.1f);
      l.bk = b.vec(kv_dim, 0.0f, 0.1f);
      l.bv = b.vec(kv_dim, 0.0f, 0.1f);
    }
    l.wo = b.matrix(spec.layer_type, c.d_model, q_dim, 1.0 / std::sqrt(double(q_dim)));
    l.ffn_norm = b.vec(c.d_model, 1.0f, 0.1f);
    l.w_gate = b.matrix(spec.layer_type, c.d_ff, c.d_model, sd_d);
    l.w_up = b.matrix(spec.layer_type, c.d_ff, c.d_model, sd_d);
    l.w_down = b.matrix(spec.layer_type, c.d_model, c.d_ff, 1.0 / std::sqrt(double(c.d_ff)));
  }
  model.output_norm = b.vec(c.d_model, 1.0f, 0.1f);
  model.output = c.tie_embeddings ? model.tok_embd
                                  : b.matrix(spec.head_type, c.vocab_size, c.d_model, sd_d);
  return model;
}

}  // namespace pdvm::model
