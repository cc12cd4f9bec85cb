// make_synthetic_model: random valid weights for a named shape. Each row of each matrix draws
// from its own counter-based generator (splitmix64 of seed, tensor id, row), so the bytes do not
// depend on how rows are split across threads.
#include "model/synthetic.h"

#include <cmath>
#include <cstring>
#include <memory>

#include "core/half.h"
#include "core/thread_pool.h"
#include "formats/quant_blocks.h"

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
constexpr double kSqrt3 = 1.7320508075688772;

bool supported(WeightType t) {
  return t == WeightType::kF32 || t == WeightType::kF16 || t == WeightType::kBF16 ||
         t == WeightType::kQ8_0 || t == WeightType::kQ4_0 || t == WeightType::kQ4_1;
}

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
    case WeightType::kQ4_0: {
      auto* b = reinterpret_cast<formats::BlockQ4_0*>(dst);
      const double base = sd / kStdNibble;
      for (int64_t k = 0; k < cols / formats::kQK; ++k) {
        b[k].d = core::f32_to_f16(float(base * (0.75 + 0.5 * rng.uniform())));
        rng.fill(b[k].qs, sizeof(b[k].qs));
      }
      return;
    }
    case WeightType::kQ4_1: {
      auto* b = reinterpret_cast<formats::BlockQ4_1*>(dst);
      const double base = sd / kStdNibble;
      for (int64_t k = 0; k < cols / formats::kQK; ++k) {
        const double d = base * (0.75 + 0.5 * rng.uniform());
        b[k].d = core::f32_to_f16(float(d));
        // centre the block: nibbles average 7.5, so m ~ -7.5 d, jittered by up to half a step
        b[k].m = core::f32_to_f16(float(-7.5 * d + (rng.uniform() - 0.5) * d));
        rng.fill(b[k].qs, sizeof(b[k].qs));
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
  for (WeightType t : {spec.layer_type, spec.head_type}) {
    if (!supported(t))
      return unsupported("synthetic model: weight type " + std::string(core::weight_type_name(t)) +
                         " is not generated (supported: f32, f16, bf16, q8_0, q4_0, q4_1)");
  }
  auto cols_ok = [](WeightType t, int64_t cols) {
    return cols % core::weight_type_info(t).block_size == 0;
  };
  const int64_t q_dim = int64_t(c.n_heads) * c.head_dim, kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
  for (int64_t cols : {int64_t(c.d_model), q_dim, int64_t(c.d_ff)}) {
    if (!cols_ok(spec.layer_type, cols) || !cols_ok(spec.head_type, c.d_model))
      return invalid_argument("synthetic model: row length " + std::to_string(cols) +
                              " is not a multiple of the block size of the weight type");
  }

  core::Model model;
  model.config = c;
  model.source = "synthetic:" + spec.shape;
  core::ThreadPool pool(spec.threads);
  Builder b{spec, model, pool, std::move(progress)};

  const size_t layer_bytes =
      core::row_bytes(spec.layer_type, c.d_model) * size_t(q_dim + 2 * kv_dim + 2 * c.d_ff) +
      core::row_bytes(spec.layer_type, q_dim) * size_t(c.d_model) +
      core::row_bytes(spec.layer_type, c.d_ff) * size_t(c.d_model);
  const size_t head_bytes = core::row_bytes(spec.head_type, c.d_model) * size_t(c.vocab_size);
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
