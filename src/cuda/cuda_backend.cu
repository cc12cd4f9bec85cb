// CudaBackendImpl: uploads a Model once (repacked, see device_types.cuh), owns every device
// buffer (two allocations, made at construction), and runs decode steps in ops mode (a captured
// graph of per-op kernels) or layer mode (one cooperative launch per layer). No allocation, host
// synchronisation or host work per layer in the decode loop.
#include "cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <bit>  // std::countr_zero
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/half.h"
#include "core/thread_pool.h"
#include "cuda/attention.cuh"
#include "cuda/check.cuh"
#include "cuda/kernels.cuh"
#include "cuda/stage_timer.h"
#include "formats/mdcsr.h"
#include "formats/mdcsr_interleave.h"
#include "formats/quant_blocks.h"

namespace pdvm::cuda {
namespace {

using core::WeightType;

constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

Result<Fmt> device_fmt(WeightType t) {
  switch (t) {
    case WeightType::kF32: return Fmt::kF32;
    case WeightType::kF16: return Fmt::kF16;
    case WeightType::kBF16: return Fmt::kBF16;
    case WeightType::kQ8_0: return Fmt::kQ8_0;
    case WeightType::kQ4_0: return Fmt::kQ4_0;
    case WeightType::kQ4_1: return Fmt::kQ4_1;
    case WeightType::kQ4_K: return Fmt::kQ4_1;   // converted at upload (convert_row)
    case WeightType::kQ6_K: return Fmt::kQ8_16;  // converted at upload (convert_row)
    // converted at upload (convert_row): codes q5 - 16 (Q5_0) or 0..31 with offset m (Q5_1) or
    // -dmin * min (Q5_K)
    case WeightType::kQ5_0:
    case WeightType::kQ5_1:
    case WeightType::kQ5_K: return Fmt::kQ8_16;
    case WeightType::kMdCsr: return Fmt::kMdCsr;
    case WeightType::kI8Row: return Fmt::kI8Row;
    case WeightType::kBitmapI8: return Fmt::kBitmapI8;
    default:
      return unsupported("CUDA backend: weight type " + std::string(core::weight_type_name(t)) +
                         " has no kernel yet (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, "
                         "q5_1, q4_K, q5_K, q6_K, i8_row, mdcsr, bitmap_i8)");
  }
}

// A device matrix built from rows of host matrices (q/k/v fused, gate/up interleaved).
struct RowSource {
  const core::Matrix* m;
  int64_t row;
};

struct PackedSizes {
  size_t value_bytes = 0, scale_bytes = 0;
  size_t base_bytes = 0, ptr_bytes = 0;  // MdCSR, bitmap: chunk bases, row pointers
  int row_bytes = 0;
  size_t total() const {
    return align_up(value_bytes) + align_up(scale_bytes) + align_up(base_bytes) + align_up(ptr_bytes);
  }
};

PackedSizes packed_sizes(Fmt f, int64_t rows, int64_t cols) {
  PackedSizes p;
  switch (f) {
    case Fmt::kF32: p.row_bytes = int(cols * 4); break;
    case Fmt::kF16:
    case Fmt::kBF16: p.row_bytes = int(cols * 2); break;
    case Fmt::kQ8_0: p.row_bytes = int(cols); p.scale_bytes = size_t(rows) * (cols / 32) * 2; break;
    case Fmt::kQ4_0: p.row_bytes = int(cols / 2); p.scale_bytes = size_t(rows) * (cols / 32) * 2; break;
    case Fmt::kQ4_1: p.row_bytes = int(cols / 2); p.scale_bytes = size_t(rows) * (cols / 32) * 4; break;
    case Fmt::kI8Row: p.row_bytes = int(cols); p.scale_bytes = size_t(rows) * 4; break;
    case Fmt::kQ8_16: p.row_bytes = int(cols); p.scale_bytes = size_t(rows) * (cols / 16) * 4; break;
    case Fmt::kMdCsr:
    case Fmt::kBitmapI8: break;  // sized from the chunk count: mdcsr_sizes, bitmap_sizes
  }
  p.value_bytes = size_t(rows) * size_t(p.row_bytes);
  return p;
}

PackedSizes mdcsr_sizes(int64_t rows, size_t n_chunks) {
  PackedSizes p;
  p.value_bytes = n_chunks * 32;
  p.scale_bytes = size_t(rows) * 4;
  p.base_bytes = n_chunks * 2;
  p.ptr_bytes = size_t(rows + 1) * 4;
  return p;
}

// bitmap_i8 on the device (bitmap_matvec.cuh): 16-byte value chunks, a u16 first column per
// chunk, u32 row pointers; scales then bit-reversed u32 masks (+2 words of zeros: a chunk in a
// row's last word reads two words past it).
PackedSizes bitmap_sizes(int64_t rows, int64_t cols, size_t n_chunks) {
  PackedSizes p;
  p.value_bytes = n_chunks * 16;
  p.scale_bytes = size_t(bitmap_masks_offset(int(rows))) * 4 + (size_t(rows) * size_t(cols / 32) + 2) * 4;
  p.base_bytes = n_chunks * 2;
  p.ptr_bytes = size_t(rows + 1) * 4;
  return p;
}

// Cuts one bitmap_i8 row (file layout: u64 masks, packed values) into device chunks: each chunk
// is two halves of at most 8 values, half A the next kept columns in [c0, c0 + 32) (c0 = its
// first), half B those in [sB, sB + 32), sB = A's last column + 1 when A holds 8, else c0 + 32;
// zero values pad each half to 8. The kernel's walk (bitmap_chunk_dot) mirrors this rule.
// Returns the chunk count; writes the chunks (16 B each) and first columns when out_values is
// not null. `cols_scratch` is reused between rows.
uint32_t cut_bitmap_row(const uint64_t* masks, int64_t groups, const int8_t* values,
                        std::vector<uint32_t>& cols_scratch, uint8_t* out_values,
                        uint16_t* out_first) {
  std::vector<uint32_t>& col = cols_scratch;
  col.clear();
  for (int64_t g = 0; g < groups; ++g)
    for (uint64_t mk = masks[g]; mk != 0; mk &= mk - 1)
      col.push_back(uint32_t(g * 64 + std::countr_zero(mk)));
  const size_t n = col.size();
  uint32_t chunks = 0;
  for (size_t i = 0; i < n; ++chunks) {
    const uint32_t c0 = col[i];
    size_t a = 0;
    while (a < 8 && i + a < n && col[i + a] < c0 + 32) ++a;
    const uint32_t sb = a == 8 ? col[i + 7] + 1 : c0 + 32;
    size_t b = 0;
    while (b < 8 && i + a + b < n && col[i + a + b] < sb + 32) ++b;
    if (out_values != nullptr) {
      uint8_t* dst = out_values + size_t(chunks) * 16;
      std::memset(dst, 0, 16);
      std::memcpy(dst, values + i, a);
      std::memcpy(dst + 8, values + i + a, b);
      out_first[chunks] = uint16_t(c0);
    }
    i += a + b;
  }
  return chunks;
}

// bit b of x -> bit 31 - b
uint32_t reverse_bits(uint32_t x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
  x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
  return (x >> 16) | (x << 16);
}

// A row of a block type as int8 codes and per-16 (scale, offset), for the conversions below.
struct SplitRow {
  std::vector<int8_t> q;
  std::vector<float> scale, offset;
  void split(WeightType t, const uint8_t* src, int64_t cols) {
    q.resize(size_t(cols));
    scale.resize(size_t(cols / 16));
    offset.resize(size_t(cols / 16));
    formats::split_row_int8(t, src, cols, q.data(), scale.data(), offset.data());
  }
};

// f32 -> f16 bits for a converted scale or offset; false when it does not fit (|v| > 65504:
// only a corrupt or hostile file has such a K-quant scale).
bool to_f16(float v, uint8_t* dst) {
  const uint16_t h = core::f32_to_f16(v);
  std::memcpy(dst, &h, 2);
  return std::isfinite(core::f16_to_f32(h));
}

// Converts a row of a block type into kQ4_1 (all-Q4_K matrices: one scale and min per 32, codes
// 0..15) or kQ8_16 (Q6_K, Q5_0, Q5_1, Q5_K and mixed block types), rounding the f32 scale and
// offset products to f16 (relative error <= 2^-11; the CPU reference keeps them in f32). False: a
// scale overflows.
bool convert_row(Fmt f, WeightType t, const uint8_t* src, int64_t cols, uint8_t* dst_values,
                 uint8_t* dst_scales, SplitRow& sp) {
  sp.split(t, src, cols);
  bool ok = true;
  if (f == Fmt::kQ4_1) {
    for (int64_t b = 0; b < cols / 32; ++b) {
      PDVM_ASSERT(sp.scale[size_t(2 * b)] == sp.scale[size_t(2 * b + 1)]);
      const int8_t* q = sp.q.data() + 32 * b;
      for (int j = 0; j < 16; ++j) dst_values[16 * b + j] = uint8_t(q[j] | (q[j + 16] << 4));
      ok &= to_f16(sp.scale[size_t(2 * b)], dst_scales + 4 * b);
      ok &= to_f16(sp.offset[size_t(2 * b)], dst_scales + 4 * b + 2);
    }
    return ok;
  }
  PDVM_ASSERT(f == Fmt::kQ8_16);
  std::memcpy(dst_values, sp.q.data(), size_t(cols));
  for (int64_t g = 0; g < cols / 16; ++g) {
    ok &= to_f16(sp.scale[size_t(g)], dst_scales + 4 * g);
    ok &= to_f16(g % 2 == 0 ? sp.offset[size_t(g)] : 0.0f, dst_scales + 4 * g + 2);
  }
  return ok;
}

// Repacks one GGUF-layout row of type t into the device layout f (values + scales of that row);
// K-quants and mixed block types are converted (convert_row). False: a converted scale overflows.
bool repack_row(Fmt f, WeightType t, const uint8_t* src, int64_t cols, uint8_t* dst_values,
                uint8_t* dst_scales, SplitRow& sp) {
  if (f == Fmt::kQ8_16 || (f == Fmt::kQ4_1 && t == WeightType::kQ4_K))
    return convert_row(f, t, src, cols, dst_values, dst_scales, sp);
  const int64_t nb = cols / 32;
  switch (f) {
    case Fmt::kQ8_16: break;  // converted above
    case Fmt::kF32: std::memcpy(dst_values, src, size_t(cols) * 4); return true;
    case Fmt::kF16:
    case Fmt::kBF16: std::memcpy(dst_values, src, size_t(cols) * 2); return true;
    case Fmt::kQ8_0: {
      const auto* b = reinterpret_cast<const formats::BlockQ8_0*>(src);
      for (int64_t k = 0; k < nb; ++k) {
        std::memcpy(dst_values + k * 32, b[k].qs, 32);
        std::memcpy(dst_scales + k * 2, &b[k].d, 2);
      }
      return true;
    }
    case Fmt::kQ4_0: {
      const auto* b = reinterpret_cast<const formats::BlockQ4_0*>(src);
      for (int64_t k = 0; k < nb; ++k) {
        std::memcpy(dst_values + k * 16, b[k].qs, 16);
        std::memcpy(dst_scales + k * 2, &b[k].d, 2);
      }
      return true;
    }
    case Fmt::kMdCsr:
    case Fmt::kBitmapI8: return true;  // whole matrices: upload_mdcsr, upload_bitmap
    case Fmt::kI8Row:  // [f32 scale][int8 x cols]
      std::memcpy(dst_scales, src, 4);
      std::memcpy(dst_values, src + 4, size_t(cols));
      return true;
    case Fmt::kQ4_1: {
      const auto* b = reinterpret_cast<const formats::BlockQ4_1*>(src);
      for (int64_t k = 0; k < nb; ++k) {
        std::memcpy(dst_values + k * 16, b[k].qs, 16);
        std::memcpy(dst_scales + k * 4, &b[k].d, 2);
        std::memcpy(dst_scales + k * 4 + 2, &b[k].m, 2);
      }
      return true;
    }
  }
  return true;
}

// The backend whose layer table is in token mode's constant memory (kernels.cu: c_layers), or
// null. The table is per process, so the owner is checked (and the table re-uploaded after a
// device synchronize) before every token-mode launch, under a mutex: backends on several host
// threads stay correct (and slow, if they alternate).
std::mutex g_token_table_mutex;
const void* g_token_table_owner = nullptr;

class CudaBackendImpl final : public CudaBackend {
 public:
  CudaBackendImpl() = default;
  ~CudaBackendImpl() override {
    {
      std::lock_guard<std::mutex> lock(g_token_table_mutex);
      if (g_token_table_owner == this) g_token_table_owner = nullptr;
    }
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    if (ev_start_) cudaEventDestroy(ev_start_);
    if (ev_stop_) cudaEventDestroy(ev_stop_);
    if (stream_) cudaStreamDestroy(stream_);
    if (weights_) cudaFree(weights_);
    if (state_) cudaFree(state_);
    if (s_.stage_t) cudaFree(s_.stage_t);
    if (host_logits_) cudaFreeHost(host_logits_);
  }

  Status init(const core::Model& model, const CudaOptions& opt);

  std::string name() const override { return std::string("cuda-") + mode_name(opt_.mode); }
  int context() const override { return s_.ctx; }
  int n_layers() const override { return int(layers_.size()); }

  Status embed(int32_t token) override {
    PDVM_TRY(check_token(token));
    PDVM_TRY(launch_set_step(s_, token, -1, stream_));
    return launch_embed(s_, tok_embd_, stream_);
  }

  Status execute_layer(int layer, int32_t pos) override {
    if (layer < 0 || layer >= n_layers())
      return out_of_range("CUDA backend: layer " + std::to_string(layer) + " outside [0, " +
                          std::to_string(n_layers()) + ")");
    PDVM_TRY(check_pos(pos));
    PDVM_TRY(launch_set_step(s_, -1, pos, stream_));
    return launch_layer(layer);
  }

  Result<std::span<const float>> logits() override {
    PDVM_TRY(launch_head(s_, out_norm_, output_, cfg_));
    PDVM_TRY(launch_argmax(s_, stream_));
    return copy_logits();
  }

  Result<std::span<const float>> execute_model(int32_t token, int32_t pos) override {
    PDVM_TRY(decode_step(token, pos));
    return copy_logits();
  }

  std::span<const float> hidden() override {
    hidden_.resize(size_t(s_.d_model));
    if (cudaMemcpyAsync(hidden_.data(), s_.x, hidden_.size() * 4, cudaMemcpyDeviceToHost,
                        stream_) != cudaSuccess ||
        cudaStreamSynchronize(stream_) != cudaSuccess)
      return {};
    return hidden_;
  }

  Status decode_step(int32_t token, int32_t pos) override {
    PDVM_TRY(check_token(token));
    PDVM_TRY(check_pos(pos));
    PDVM_CUDA_TRY(cudaEventRecord(ev_start_, stream_));
    if (opt_.mode == Mode::kToken) {
      std::lock_guard<std::mutex> lock(g_token_table_mutex);
      if (g_token_table_owner != this) {
        PDVM_TRY(upload_token_layers(layers_.data(), n_layers(), stream_));
        g_token_table_owner = this;
      }
      PDVM_TRY(launch_token_fused(s_, n_layers(), tok_embd_, out_norm_, output_, token, pos, cfg_));
      PDVM_CUDA_TRY(cudaEventRecord(ev_stop_, stream_));
      return Status::ok();
    }
    PDVM_TRY(launch_set_step(s_, token, pos, stream_));
    if (graph_exec_) {
      PDVM_CUDA_TRY(cudaGraphLaunch(graph_exec_, stream_));
    } else {
      PDVM_TRY(enqueue_token());
    }
    PDVM_CUDA_TRY(cudaEventRecord(ev_stop_, stream_));
    return Status::ok();
  }

  Status synchronize() override {
    PDVM_CUDA_TRY(cudaStreamSynchronize(stream_));
    return Status::ok();
  }

  Result<int32_t> argmax() override {
    int32_t v = -1;
    PDVM_CUDA_TRY(cudaMemcpyAsync(&v, s_.argmax, 4, cudaMemcpyDeviceToHost, stream_));
    PDVM_CUDA_TRY(cudaStreamSynchronize(stream_));
    return v;
  }

  Status fill_kv_random(int n_positions, uint64_t seed) override {
    if (n_positions < 0 || n_positions > s_.ctx)
      return out_of_range("CUDA backend: fill_kv_random of " + std::to_string(n_positions) +
                          " positions, context is " + std::to_string(s_.ctx));
    PDVM_TRY(launch_fill_kv_random(s_, n_layers(), n_positions, seed, stream_));
    return synchronize();
  }

  int launches_per_token() const override {
    if (opt_.mode == Mode::kToken) return 1;  // the token kernel (token and pos are arguments)
    // set_step + embed + per layer + head + argmax
    const int per_layer = opt_.mode == Mode::kOps ? kOpsLaunchesPerLayer : 1;
    return 1 + 1 + per_layer * n_layers() + 2;
  }
  bool graph_in_use() const override { return graph_exec_ != nullptr; }
  size_t weight_bytes() const override { return weight_bytes_per_token_; }
  size_t device_bytes() const override { return weights_bytes_ + state_bytes_; }
  std::string device_name() const override { return device_name_; }
  int grid_blocks() const override {
    return opt_.mode == Mode::kOps ? cfg_.grid_ops
                                   : opt_.mode == Mode::kLayer ? cfg_.grid_layer : cfg_.grid_token;
  }

  Result<float> last_step_ms() override {
    PDVM_CUDA_TRY(cudaEventSynchronize(ev_stop_));
    float ms = 0;
    PDVM_CUDA_TRY(cudaEventElapsedTime(&ms, ev_start_, ev_stop_));
    return ms;
  }

  Status poison_scratch() override;

#ifdef PDVM_CUDA_STAGE_TIMER
  std::string stage_report() override {
    if (s_.stage_t == nullptr) return "";
    std::vector<unsigned long long> marks(size_t(n_layers()) * kStageMarks * size_t(cfg_.grid_token));
    if (cudaStreamSynchronize(stream_) != cudaSuccess ||
        cudaMemcpy(marks.data(), s_.stage_t, marks.size() * 8, cudaMemcpyDeviceToHost) != cudaSuccess)
      return "";
    return format_stage_report(marks, n_layers(), cfg_.grid_token);
  }
#endif

 private:
  Status check_token(int32_t token) const {
    if (token < 0 || token >= s_.vocab)
      return out_of_range("CUDA backend: token id " + std::to_string(token) + " outside [0, " +
                          std::to_string(s_.vocab) + ")");
    return Status::ok();
  }
  Status check_pos(int32_t pos) const {
    if (pos < 0 || pos >= s_.ctx)
      return out_of_range("CUDA backend: position " + std::to_string(pos) +
                          " outside the KV cache [0, " + std::to_string(s_.ctx) + ")");
    return Status::ok();
  }

  Status launch_layer(int layer) {
    if (opt_.mode == Mode::kOps) return launch_layer_ops(s_, layers_[size_t(layer)], layer, cfg_);
    return launch_layer_fused(s_, layers_[size_t(layer)], layer, cfg_);
  }

  // Everything after set_step: reads token and pos from device memory.
  Status enqueue_token() {
    PDVM_TRY(launch_embed(s_, tok_embd_, stream_));
    for (int l = 0; l < n_layers(); ++l) PDVM_TRY(launch_layer(l));
    PDVM_TRY(launch_head(s_, out_norm_, output_, cfg_));
    return launch_argmax(s_, stream_);
  }

  Result<std::span<const float>> copy_logits() {
    PDVM_CUDA_TRY(cudaMemcpyAsync(host_logits_, s_.logits, size_t(s_.vocab) * 4,
                                  cudaMemcpyDeviceToHost, stream_));
    PDVM_CUDA_TRY(cudaStreamSynchronize(stream_));
    return std::span<const float>(host_logits_, size_t(s_.vocab));
  }

  Status capture_graph();

  CudaOptions opt_;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ev_start_ = nullptr, ev_stop_ = nullptr;
  cudaGraphExec_t graph_exec_ = nullptr;
  LaunchConfig cfg_;
  StepState s_;
  std::vector<DevLayer> layers_;
  DevMatrix tok_embd_, output_;
  const float* out_norm_ = nullptr;
  void* weights_ = nullptr;
  void* state_ = nullptr;
  size_t weights_bytes_ = 0, state_bytes_ = 0, weight_bytes_per_token_ = 0;
  float* host_logits_ = nullptr;
  std::vector<float> hidden_;
};

// ---- construction ---------------------------------------------------------------------------

Status alloc_device(void** ptr, size_t n_bytes, const char* what) {
  const cudaError_t e = cudaMalloc(ptr, n_bytes);
  if (e == cudaSuccess) return Status::ok();
  cudaGetLastError();  // clear the error so later calls work
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  return Status(StatusCode::kOutOfMemory,
                std::string("CUDA backend: cannot allocate ") + what + ": " +
                    std::to_string(n_bytes) + " bytes requested, " + std::to_string(free_b) +
                    " free of " + std::to_string(total_b) + " (" + cudaGetErrorString(e) + ")");
}

// Plans and uploads the device matrices: a list of (name, row sources), laid out in one arena.
struct MatrixJob {
  std::string name;
  std::vector<RowSource> rows;
  Fmt fmt = Fmt::kF32;
  int64_t cols = 0;
  PackedSizes sizes;
  size_t offset = 0;
  DevMatrix* out = nullptr;
  std::vector<uint32_t> row_chunks;  // sparse: device chunks of each row (cut_bitmap_row,
                                     // mdcsr_plain_row)
};

// bitmap_i8: the rows' chunk counts (the cut is the upload's, run twice: count, then write).
Status plan_bitmap(MatrixJob& job, core::ThreadPool& pool) {
  if (job.cols % 32 != 0 || job.cols <= 0)
    return unsupported("CUDA backend: " + job.name + " is bitmap_i8 with " +
                       std::to_string(job.cols) + " columns; the kernel needs a multiple of 32");
  if (job.cols > 65535)
    return unsupported("CUDA backend: " + job.name + " is bitmap_i8 with " +
                       std::to_string(job.cols) + " columns; chunk columns are u16 (at most 65535)");
  for (const RowSource& r : job.rows) {
    const core::SparseLayout* sp = r.m->sparse;
    if (sp == nullptr || sp->row_ptr == nullptr || sp->values == nullptr || sp->masks == nullptr ||
        sp->row_scale == nullptr)
      return invalid_argument("CUDA backend: " + job.name + " is bitmap_i8 without its arrays");
  }
  const int64_t n_rows = int64_t(job.rows.size()), groups = (job.cols + 63) / 64;
  job.row_chunks.assign(size_t(n_rows), 0);
  pool.parallel_for(n_rows, 64, [&](int64_t r0, int64_t r1) {
    std::vector<uint32_t> scratch;
    for (int64_t r = r0; r < r1; ++r) {
      const RowSource& src = job.rows[size_t(r)];
      const core::SparseLayout& sp = *src.m->sparse;
      job.row_chunks[size_t(r)] = cut_bitmap_row(sp.masks + src.row * groups, groups,
                                                 sp.values + sp.row_ptr[src.row], scratch,
                                                 nullptr, nullptr);
    }
  });
  size_t n_chunks = 0;
  for (uint32_t c : job.row_chunks) n_chunks += c;
  if (n_chunks >= (size_t(1) << 32))
    return unsupported("CUDA backend: " + job.name + " has more than 2^32 bitmap chunks");
  job.sizes = bitmap_sizes(n_rows, job.cols, n_chunks);
  return Status::ok();
}

Status plan_matrix(MatrixJob& job, core::ThreadPool& pool) {
  PDVM_ASSERT(!job.rows.empty());
  const core::Matrix& first = *job.rows[0].m;
  bool mixed = false;
  for (const RowSource& r : job.rows) {
    // Block types fuse through kQ8_16 (Q4_K_M: q|k Q4_K, v Q6_K; Q5_K_M: q|k Q5_K, v Q6_K); other
    // mixes do not.
    const bool both_blocks = formats::has_int8_codes(r.m->type) && formats::has_int8_codes(first.type);
    if ((r.m->type != first.type && !both_blocks) || r.m->cols != first.cols)
      return unsupported("CUDA backend: " + job.name + " fuses matrices of different types or "
                         "widths (" + std::string(core::weight_type_name(r.m->type)) + " x " +
                         std::to_string(r.m->cols) + " vs " +
                         std::string(core::weight_type_name(first.type)) + " x " +
                         std::to_string(first.cols) + ")");
    const int block = core::weight_type_info(r.m->type).block_size;
    if (block > 1 && r.m->cols % block != 0)
      return invalid_argument("CUDA backend: " + job.name + ": " +
                              std::string(core::weight_type_name(r.m->type)) + " rows of " +
                              std::to_string(r.m->cols) + " columns (not a multiple of its " +
                              std::to_string(block) + "-weight blocks)");
    mixed |= r.m->type != first.type;
    if (r.m->data == nullptr && r.m->sparse == nullptr)
      return invalid_argument("CUDA backend: " + job.name + " has no data");
  }
  if (mixed) {
    job.fmt = Fmt::kQ8_16;
  } else {
    PDVM_ASSIGN_OR_RETURN(job.fmt, device_fmt(first.type));
  }
  job.cols = first.cols;
  if (job.fmt == Fmt::kBitmapI8) return plan_bitmap(job, pool);
  if (job.fmt == Fmt::kMdCsr) {
    for (const RowSource& r : job.rows) {
      const core::SparseLayout* sp = r.m->sparse;
      if (sp == nullptr || sp->row_ptr == nullptr || sp->values == nullptr || sp->deltas == nullptr ||
          sp->chunk_base == nullptr || sp->row_scale == nullptr)
        return invalid_argument("CUDA backend: " + job.name + " is mdcsr without its arrays");
    }
    // Rows are repacked without the CPU kernel's window padding (formats::mdcsr_plain_row): the
    // GPU kernel gains nothing from it, and at 70% sparsity its +1% of chunks pushed a warp's 4
    // rows of 5120 columns (384 chunks: 3 rounds of 32 lanes x 4) into a fourth round trip,
    // +4% per token (H100, docs/notes-cuda.md Round 6). Counted here, written by upload_mdcsr.
    const int64_t n_rows = int64_t(job.rows.size());
    job.row_chunks.assign(size_t(n_rows), 0);
    pool.parallel_for(n_rows, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const RowSource& src = job.rows[size_t(r)];
        job.row_chunks[size_t(r)] = uint32_t(
            formats::mdcsr_plain_row(*src.m->sparse, src.row, [](const int8_t*, const uint8_t*, uint16_t) {}));
      }
    });
    size_t n_chunks = 0;
    for (uint32_t c : job.row_chunks) n_chunks += c;
    if (n_chunks >= (size_t(1) << 32))
      return unsupported("CUDA backend: " + job.name + " has more than 2^32 MdCSR chunks");
    job.sizes = mdcsr_sizes(int64_t(job.rows.size()), n_chunks);
    return Status::ok();
  }
  const int64_t need = (job.fmt == Fmt::kF32 || job.fmt == Fmt::kF16 || job.fmt == Fmt::kBF16)
                           ? (job.fmt == Fmt::kF32 ? 4 : 8)
                           : 32;
  if (job.cols % need != 0 || job.cols <= 0)
    return unsupported("CUDA backend: " + job.name + " rows have " + std::to_string(job.cols) +
                       " columns; the kernels need a multiple of " + std::to_string(need));
  if (int64_t(job.rows.size()) > (int64_t(1) << 30))
    return unsupported("CUDA backend: " + job.name + " has too many rows");
  job.sizes = packed_sizes(job.fmt, int64_t(job.rows.size()), job.cols);
  return Status::ok();
}

// The sparse uploads' host copy: values, then scales, bases and row pointers at aligned offsets
// (job.sizes), packed in `staging` and copied to the arena in one transfer.
struct SparseStaging {
  uint8_t* host;
  size_t scale_off, base_off, ptr_off;
};
SparseStaging begin_sparse_upload(const MatrixJob& job, std::vector<uint8_t>& staging) {
  const PackedSizes& p = job.sizes;
  staging.resize(std::max(staging.size(), p.total()));
  const size_t scale_off = align_up(p.value_bytes), base_off = scale_off + align_up(p.scale_bytes);
  return {staging.data(), scale_off, base_off, base_off + align_up(p.base_bytes)};
}

// The sparse uploads' last step: the packed host copy (begin_sparse_upload's layout) to its place
// in the arena, and the DevMatrix pointing at it.
Status finish_sparse_upload(MatrixJob& job, uint8_t* arena, const SparseStaging& st, int64_t n_rows) {
  uint8_t* dev = arena + job.offset;
  PDVM_CUDA_TRY(cudaMemcpy(dev, st.host, job.sizes.total(), cudaMemcpyHostToDevice));
  job.out->w = dev;
  job.out->scales = dev + st.scale_off;
  job.out->bases = reinterpret_cast<const uint16_t*>(dev + st.base_off);
  job.out->row_ptr = reinterpret_cast<const uint32_t*>(dev + st.ptr_off);
  job.out->rows = int(n_rows);
  job.out->cols = int(job.cols);
  job.out->row_bytes = 0;
  job.out->fmt = job.fmt;
  return Status::ok();
}

static_assert(formats::kMdCsrInterleaveMax == 32, "a dealt run is one chunk per lane of a warp");

// PDVM_CUDA_MDCSR_INTERLEAVE=0 keeps the chunks in the plain repacked order (mdcsr_plain_row)
// instead of dealing them (formats::interleave_mdcsr_row), for A/B timing.
bool mdcsr_interleave_enabled() {
  const char* e = std::getenv("PDVM_CUDA_MDCSR_INTERLEAVE");
  return e == nullptr || std::string_view(e) != "0";
}

// MdCSR rows of any sources, in job order, repacked plainly (plan_matrix): values then deltas
// per chunk, with new row pointers, then dealt in the runs matvec_stage_mdcsr's lanes read together
// (formats::interleave_mdcsr_row). The file's invariants were validated at load.
Status upload_mdcsr(MatrixJob& job, uint8_t* arena, std::vector<uint8_t>& staging,
                    core::ThreadPool& pool) {
  const SparseStaging st = begin_sparse_upload(job, staging);
  uint8_t* host = st.host;
  const size_t scale_off = st.scale_off, base_off = st.base_off, ptr_off = st.ptr_off;
  auto* scales = reinterpret_cast<float*>(host + scale_off);
  auto* bases = reinterpret_cast<uint16_t*>(host + base_off);
  auto* ptr = reinterpret_cast<uint32_t*>(host + ptr_off);
  const int64_t n_rows = int64_t(job.rows.size());
  ptr[0] = 0;
  for (int64_t r = 0; r < n_rows; ++r) ptr[r + 1] = ptr[r] + job.row_chunks[size_t(r)];
  const bool interleave = mdcsr_interleave_enabled();
  pool.parallel_for(n_rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const RowSource& src = job.rows[size_t(r)];
      const core::SparseLayout& sp = *src.m->sparse;
      scales[r] = sp.row_scale[src.row];
      uint32_t k = ptr[r];
      formats::mdcsr_plain_row(sp, src.row, [&](const int8_t* v, const uint8_t* d, uint16_t base) {
        uint8_t* dst = host + size_t(k) * 32;
        std::memcpy(dst, v, 16);
        std::memcpy(dst + 16, d, 16);
        bases[k++] = base;
      });
      if (interleave) formats::interleave_mdcsr_row(host, bases, ptr, r, kRowsPerWarp);
    }
  });
  return finish_sparse_upload(job, arena, st, n_rows);
}

// bitmap_i8 rows of any sources, in job order, cut into device chunks (cut_bitmap_row) with new
// row pointers; masks bit-reversed into u32 words. The file's invariants were validated at load.
Status upload_bitmap(MatrixJob& job, uint8_t* arena, std::vector<uint8_t>& staging,
                     core::ThreadPool& pool) {
  const SparseStaging st = begin_sparse_upload(job, staging);
  uint8_t* host = st.host;
  const size_t scale_off = st.scale_off, base_off = st.base_off, ptr_off = st.ptr_off;
  const int64_t n_rows = int64_t(job.rows.size()), groups = (job.cols + 63) / 64,
                wpr = job.cols / 32;
  std::memset(host + scale_off, 0, job.sizes.scale_bytes);  // scale padding, the 2 words past the masks
  auto* scales = reinterpret_cast<float*>(host + scale_off);
  auto* masks = reinterpret_cast<uint32_t*>(host + scale_off) + bitmap_masks_offset(int(n_rows));
  auto* bases = reinterpret_cast<uint16_t*>(host + base_off);
  auto* ptr = reinterpret_cast<uint32_t*>(host + ptr_off);
  ptr[0] = 0;
  for (int64_t r = 0; r < n_rows; ++r) ptr[r + 1] = ptr[r] + job.row_chunks[size_t(r)];
  pool.parallel_for(n_rows, 64, [&](int64_t r0, int64_t r1) {
    std::vector<uint32_t> scratch;
    for (int64_t r = r0; r < r1; ++r) {
      const RowSource& src = job.rows[size_t(r)];
      const core::SparseLayout& sp = *src.m->sparse;
      scales[r] = sp.row_scale[src.row];
      const uint64_t* mrow = sp.masks + src.row * groups;
      const uint32_t n = cut_bitmap_row(mrow, groups, sp.values + sp.row_ptr[src.row], scratch,
                                        host + size_t(ptr[r]) * 16, bases + ptr[r]);
      PDVM_ASSERT(n == job.row_chunks[size_t(r)]);
      for (int64_t w = 0; w < wpr; ++w)
        masks[r * wpr + w] = reverse_bits(uint32_t(mrow[w / 2] >> (32 * (w % 2))));
    }
  });
  return finish_sparse_upload(job, arena, st, n_rows);
}

Status upload_matrix(MatrixJob& job, uint8_t* arena, std::vector<uint8_t>& staging,
                     core::ThreadPool& pool) {
  if (job.fmt == Fmt::kMdCsr) return upload_mdcsr(job, arena, staging, pool);
  if (job.fmt == Fmt::kBitmapI8) return upload_bitmap(job, arena, staging, pool);
  const PackedSizes& p = job.sizes;
  const size_t scale_off = align_up(p.value_bytes);
  staging.resize(std::max(staging.size(), p.total()));
  uint8_t* host = staging.data();
  const int64_t n_rows = int64_t(job.rows.size());
  const size_t scale_row = job.fmt == Fmt::kQ4_1    ? size_t(job.cols / 32) * 4
                           : job.fmt == Fmt::kQ8_16 ? size_t(job.cols / 16) * 4
                           : job.fmt == Fmt::kI8Row  ? size_t(4)
                                                     : size_t(job.cols / 32) * 2;
  std::atomic<int64_t> bad_row{-1};
  pool.parallel_for(n_rows, 64, [&](int64_t r0, int64_t r1) {
    SplitRow sp;
    for (int64_t r = r0; r < r1; ++r) {
      const RowSource& src = job.rows[size_t(r)];
      uint8_t* values = host + size_t(r) * size_t(p.row_bytes);
      uint8_t* scales = host + scale_off + size_t(r) * scale_row;
      if (!repack_row(job.fmt, src.m->type, src.m->row(src.row), job.cols, values, scales, sp)) {
        int64_t none = -1;
        bad_row.compare_exchange_strong(none, r);
      }
    }
  });
  if (bad_row.load() >= 0)
    return invalid_argument("CUDA backend: " + job.name + " row " + std::to_string(bad_row.load()) +
                            ": a block scale or minimum exceeds the f16 range (65504) when "
                            "converted for the GPU; the file's scales look corrupt");
  uint8_t* dev = arena + job.offset;
  PDVM_CUDA_TRY(cudaMemcpy(dev, host, p.total(), cudaMemcpyHostToDevice));
  job.out->w = dev;
  job.out->scales = p.scale_bytes ? dev + scale_off : nullptr;
  job.out->rows = int(n_rows);
  job.out->cols = int(job.cols);
  job.out->row_bytes = p.row_bytes;
  job.out->fmt = job.fmt;
  return Status::ok();
}

Status CudaBackendImpl::init(const core::Model& model, const CudaOptions& opt) {
  opt_ = opt;
  const core::ModelConfig& c = model.config;
  PDVM_TRY(c.validate());
  if (int(model.layers.size()) != c.n_layers)
    return invalid_argument("CUDA backend: model has " + std::to_string(model.layers.size()) +
                            " layers, config says " + std::to_string(c.n_layers));
  const int hd = c.head_dim;
  if (hd % 8 != 0 || 32 % (hd / 8) != 0)
    return unsupported("CUDA backend: head_dim " + std::to_string(hd) +
                       " not supported (8, 16, 32, 64, 128 or 256)");
  if (c.d_model % 32 != 0 || c.d_ff % 32 != 0)
    return unsupported("CUDA backend: d_model and d_ff must be multiples of 32");
  if (opt.attn_chunk < 1 || opt.attn_chunk > kMaxChunk)
    return invalid_argument("CUDA backend: attn_chunk " + std::to_string(opt.attn_chunk) +
                            " outside [1, " + std::to_string(kMaxChunk) + "]");
  const int ctx = opt.context > 0 ? opt.context : std::min(c.max_seq, 4096);
  if (ctx > c.max_seq && c.max_seq > 0 && opt.context > c.max_seq)
    return invalid_argument("CUDA backend: context " + std::to_string(ctx) +
                            " exceeds the model's " + std::to_string(c.max_seq));

  // device
  int n_dev = 0;
  PDVM_CUDA_TRY(cudaGetDeviceCount(&n_dev));
  if (opt.device < 0 || opt.device >= n_dev)
    return invalid_argument("CUDA backend: device " + std::to_string(opt.device) + " of " +
                            std::to_string(n_dev));
  PDVM_CUDA_TRY(cudaSetDevice(opt.device));
  cudaDeviceProp prop{};
  PDVM_CUDA_TRY(cudaGetDeviceProperties(&prop, opt.device));
  device_name_ = prop.name;
  if (opt.mode == Mode::kToken && c.n_layers > kMaxTokenLayers)
    return unsupported("CUDA backend: token mode holds at most " + std::to_string(kMaxTokenLayers) +
                       " layers, the model has " + std::to_string(c.n_layers) + " (use layer mode)");
  if (opt.mode != Mode::kOps && !prop.cooperativeLaunch)
    return unsupported(std::string("CUDA backend: ") + mode_name(opt.mode) +
                       " mode needs cooperative launch, which " +
                       prop.name + " lacks (use --gpu-mode ops)");

  // ---- plan the weight arena ----
  std::vector<MatrixJob> jobs;
  layers_.resize(size_t(c.n_layers));
  const int q_rows = c.n_heads * hd, kv_rows = c.n_kv_heads * hd;
  // device row order inside one q or k head: rotary pairs adjacent (see DevLayer)
  std::vector<int> head_perm(static_cast<size_t>(hd));
  for (int L = 0; L < hd; ++L) {
    int src = L;
    if (L < c.rope_dim && c.rope_style == core::RopeStyle::kNeox)
      src = (L % 2 == 0) ? L / 2 : L / 2 + c.rope_dim / 2;
    head_perm[size_t(L)] = src;
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const core::LayerWeights& w = model.layers[size_t(l)];
    DevLayer& d = layers_[size_t(l)];
    const std::string pre = "layer " + std::to_string(l) + " ";
    if (w.wq.rows != q_rows || w.wk.rows != kv_rows || w.wv.rows != kv_rows ||
        w.wo.rows != c.d_model || w.wo.cols != q_rows || w.w_gate.rows != c.d_ff ||
        w.w_up.rows != c.d_ff || w.w_down.rows != c.d_model || w.w_down.cols != c.d_ff ||
        w.wq.cols != c.d_model)
      return invalid_argument("CUDA backend: " + pre + "matrix shapes do not match the config");
    MatrixJob qkv{pre + "qkv"};
    for (int h = 0; h < c.n_heads; ++h)
      for (int L = 0; L < hd; ++L) qkv.rows.push_back({&w.wq, int64_t(h) * hd + head_perm[size_t(L)]});
    for (int h = 0; h < c.n_kv_heads; ++h)
      for (int L = 0; L < hd; ++L) qkv.rows.push_back({&w.wk, int64_t(h) * hd + head_perm[size_t(L)]});
    for (int r = 0; r < kv_rows; ++r) qkv.rows.push_back({&w.wv, r});
    qkv.out = &d.qkv;
    MatrixJob wo{pre + "wo"};
    for (int r = 0; r < c.d_model; ++r) wo.rows.push_back({&w.wo, r});
    wo.out = &d.wo;
    MatrixJob gu{pre + "gate_up"};
    for (int r = 0; r < c.d_ff; ++r) { gu.rows.push_back({&w.w_gate, r}); gu.rows.push_back({&w.w_up, r}); }
    gu.out = &d.gate_up;
    MatrixJob down{pre + "down"};
    for (int r = 0; r < c.d_model; ++r) down.rows.push_back({&w.w_down, r});
    down.out = &d.down;
    for (MatrixJob* j : {&qkv, &wo, &gu, &down}) jobs.push_back(std::move(*j));
  }
  const bool tied = model.output.data == model.tok_embd.data;
  {
    MatrixJob e{"tok_embd"};
    for (int r = 0; r < c.vocab_size; ++r) e.rows.push_back({&model.tok_embd, r});
    e.out = &tok_embd_;
    jobs.push_back(std::move(e));
    if (!tied) {
      MatrixJob o{"output"};
      for (int r = 0; r < c.vocab_size; ++r) o.rows.push_back({&model.output, r});
      o.out = &output_;
      jobs.push_back(std::move(o));
    }
  }
  if (model.tok_embd.rows != c.vocab_size || model.tok_embd.cols != c.d_model ||
      model.output.rows != c.vocab_size || model.output.cols != c.d_model)
    return invalid_argument("CUDA backend: embedding / output shapes do not match the config");
  if (core::is_sparse(model.tok_embd.type))
    return unsupported("CUDA backend: the token embedding is " +
                       std::string(core::weight_type_name(model.tok_embd.type)) +
                       "; the GPU reads embedding rows dense (pdvm convert keeps embeddings dense "
                       "by default)");

  core::ThreadPool pool(0);
  size_t off = 0;
  for (MatrixJob& j : jobs) {
    PDVM_TRY(plan_matrix(j, pool));
    j.offset = off;
    off += j.sizes.total();
  }
  // f32 vectors: norms and biases, [n_layers][attn_norm, ffn_norm, bias?] + output_norm
  const size_t bias_rows = c.qkv_bias ? size_t(q_rows + 2 * kv_rows) : 0;
  const size_t vec_off = off;
  off += align_up((size_t(c.n_layers) * (2 * c.d_model + bias_rows) + c.d_model) * 4);
  weights_bytes_ = off;

  // ---- plan the state arena ----
  // attn_plan aims at one (kv head, chunk) item per warp of a resident grid (at most 2 blocks of
  // kWarps per SM here), and never needs more than ctx/attn_chunk chunks
  int sm_count = 0;
  PDVM_CUDA_TRY(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, opt.device));
  const int n_chunks_max = std::max((ctx + opt.attn_chunk - 1) / opt.attn_chunk,
                                    2 * sm_count * kWarps / c.n_kv_heads) + 1;
  const size_t kv_elems = size_t(c.n_layers) * c.n_kv_heads * size_t(ctx) * hd;
  const size_t v_elems = size_t(c.n_layers) * c.n_kv_heads * size_t(v_ctx(ctx)) * hd;
  struct Slot { size_t bytes; size_t off; };
  std::vector<Slot> slots;
  auto slot = [&](size_t bytes) { slots.push_back({bytes, 0}); return slots.size() - 1; };
  const size_t i_step = slot(16), i_bar = slot(16), i_x = slot(size_t(c.d_model) * 4),
               i_q = slot(size_t(q_rows) * 4), i_attn = slot(size_t(q_rows) * 4),
               i_act = slot(size_t(c.d_ff) * 4),
               i_part = slot(size_t(c.n_heads) * n_chunks_max * (hd + 4) * 4),
               i_logits = slot(size_t(c.vocab_size) * 4), i_argmax = slot(16),
               i_k = slot(kv_elems * 2), i_v = slot(v_elems * 2),
               i_rope = slot(size_t(ctx) * (c.rope_dim / 2) * 8),
               i_amax_v = slot(size_t(kMaxGrid) * 4), i_amax_i = slot(size_t(kMaxGrid) * 4);
  size_t soff = 0;
  for (Slot& s : slots) { s.off = soff; soff += align_up(s.bytes); }
  state_bytes_ = soff;

  PDVM_TRY(alloc_device(&weights_, weights_bytes_, "weights"));
  PDVM_TRY(alloc_device(&state_, state_bytes_, "KV cache and activations"));
  auto at = [&](size_t i) { return static_cast<uint8_t*>(state_) + slots[i].off; };

  // ---- upload ----
  std::vector<uint8_t> staging;
  for (MatrixJob& j : jobs) PDVM_TRY(upload_matrix(j, static_cast<uint8_t*>(weights_), staging, pool));
  if (tied) output_ = tok_embd_;
  {
    std::vector<float> vecs;
    vecs.reserve((size_t(c.n_layers) * (2 * c.d_model + bias_rows) + c.d_model));
    std::vector<size_t> starts;
    for (int l = 0; l < c.n_layers; ++l) {
      const core::LayerWeights& w = model.layers[size_t(l)];
      if (int(w.attn_norm.size()) != c.d_model || int(w.ffn_norm.size()) != c.d_model)
        return invalid_argument("CUDA backend: layer " + std::to_string(l) + " norm size");
      starts.push_back(vecs.size());
      vecs.insert(vecs.end(), w.attn_norm.begin(), w.attn_norm.end());
      vecs.insert(vecs.end(), w.ffn_norm.begin(), w.ffn_norm.end());
      if (c.qkv_bias) {
        if (int(w.bq.size()) != q_rows || int(w.bk.size()) != kv_rows || int(w.bv.size()) != kv_rows)
          return invalid_argument("CUDA backend: layer " + std::to_string(l) + " bias sizes");
        for (int h = 0; h < c.n_heads; ++h)
          for (int L = 0; L < hd; ++L) vecs.push_back(w.bq[size_t(h * hd + head_perm[size_t(L)])]);
        for (int h = 0; h < c.n_kv_heads; ++h)
          for (int L = 0; L < hd; ++L) vecs.push_back(w.bk[size_t(h * hd + head_perm[size_t(L)])]);
        vecs.insert(vecs.end(), w.bv.begin(), w.bv.end());
      }
    }
    const size_t out_norm_start = vecs.size();
    if (int(model.output_norm.size()) != c.d_model)
      return invalid_argument("CUDA backend: output_norm size");
    vecs.insert(vecs.end(), model.output_norm.begin(), model.output_norm.end());
    float* dvec = reinterpret_cast<float*>(static_cast<uint8_t*>(weights_) + vec_off);
    PDVM_CUDA_TRY(cudaMemcpy(dvec, vecs.data(), vecs.size() * 4, cudaMemcpyHostToDevice));
    for (int l = 0; l < c.n_layers; ++l) {
      DevLayer& d = layers_[size_t(l)];
      d.attn_norm = dvec + starts[size_t(l)];
      d.ffn_norm = d.attn_norm + c.d_model;
      d.qkv_bias = c.qkv_bias ? d.ffn_norm + c.d_model : nullptr;
    }
    out_norm_ = dvec + out_norm_start;
  }
  {
    // bytes a step reads: every layer matrix (all its arrays: values, scales, and for the sparse
    // formats chunk columns or bases, row pointers, masks), the LM head, norms (the embedding row
    // is negligible)
    size_t n = 0;
    for (const MatrixJob& j : jobs)
      if (j.name != "tok_embd" || tied)
        n += j.sizes.value_bytes + j.sizes.scale_bytes + j.sizes.base_bytes + j.sizes.ptr_bytes;
    weight_bytes_per_token_ = n + (size_t(c.n_layers) * (2 * c.d_model + bias_rows) + c.d_model) * 4;
  }

  // ---- state ----
  s_.step = reinterpret_cast<int*>(at(i_step));
  s_.barrier = reinterpret_cast<unsigned*>(at(i_bar));
  s_.x = reinterpret_cast<float*>(at(i_x));
  s_.q = reinterpret_cast<float*>(at(i_q));
  s_.attn = reinterpret_cast<float*>(at(i_attn));
  s_.act = reinterpret_cast<float*>(at(i_act));
  s_.part = reinterpret_cast<float*>(at(i_part));
  s_.logits = reinterpret_cast<float*>(at(i_logits));
  s_.argmax = reinterpret_cast<int*>(at(i_argmax));
  s_.k_cache = reinterpret_cast<__half*>(at(i_k));
  s_.v_cache = reinterpret_cast<__half*>(at(i_v));
  s_.rope = reinterpret_cast<const float2*>(at(i_rope));
  s_.amax_v = reinterpret_cast<float*>(at(i_amax_v));
  s_.amax_i = reinterpret_cast<int*>(at(i_amax_i));
  s_.d_model = c.d_model; s_.d_ff = c.d_ff; s_.n_heads = c.n_heads; s_.n_kv_heads = c.n_kv_heads;
  s_.head_dim = hd; s_.rope_dim = c.rope_dim; s_.ctx = ctx; s_.window = c.sliding_window;
  s_.attn_chunk = opt.attn_chunk; s_.n_chunks_max = n_chunks_max; s_.vocab = c.vocab_size;
  s_.attn_min_chunk = std::min(opt.attn_min_chunk, opt.attn_chunk);
  if (const char* e = std::getenv("PDVM_CUDA_MIN_CHUNK"); e != nullptr && std::atoi(e) > 0)
    s_.attn_min_chunk = std::min(std::atoi(e), opt.attn_chunk);
  s_.rope_interleaved = c.rope_style == core::RopeStyle::kInterleaved;
  // the tensor-core attention where it applies; PDVM_CUDA_ATTN=cores forces the CUDA-core one
  s_.v_pairs = attention_mma_supported(hd, c.n_heads / c.n_kv_heads);
  if (const char* e = std::getenv("PDVM_CUDA_ATTN"); e != nullptr && std::string_view(e) == "cores")
    s_.v_pairs = 0;
  s_.eps = c.rms_eps;
  s_.attn_scale = float(1.0 / std::sqrt(double(hd)));

  // everything zero, then the KV cache poisoned with f16 NaN (0xFFFF): a read of a position no
  // step wrote shows up as NaN in the output instead of passing silently
  PDVM_CUDA_TRY(cudaMemset(state_, 0, state_bytes_));
  PDVM_CUDA_TRY(cudaMemset(at(i_k), 0xFF, kv_elems * 2));
  PDVM_CUDA_TRY(cudaMemset(at(i_v), 0xFF, v_elems * 2));
  {
    // rope table in double on the host: f32 angles lose ~1e-3 rad at pos 4096
    const int half = c.rope_dim / 2;
    std::vector<float> table(size_t(ctx) * half * 2);
    for (int i = 0; i < half; ++i) {
      const double f = c.rope_inv_freq(i);
      for (int p = 0; p < ctx; ++p) {
        table[(size_t(p) * half + i) * 2] = float(std::cos(p * f));
        table[(size_t(p) * half + i) * 2 + 1] = float(std::sin(p * f));
      }
    }
    PDVM_CUDA_TRY(cudaMemcpy(at(i_rope), table.data(), table.size() * 4, cudaMemcpyHostToDevice));
  }

  PDVM_CUDA_TRY(cudaHostAlloc(reinterpret_cast<void**>(&host_logits_), size_t(c.vocab_size) * 4,
                              cudaHostAllocDefault));
  PDVM_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  PDVM_CUDA_TRY(cudaEventCreate(&ev_start_));
  PDVM_CUDA_TRY(cudaEventCreate(&ev_stop_));

  const int widest = std::max({c.d_model, q_rows, c.d_ff});
  const size_t smem = size_t(std::max({staged_bytes(widest), 4 * (widest + kBitmapTailZeros),
                                       attention_smem_bytes(hd), merge_smem_bytes(hd)}));
  if (smem > prop.sharedMemPerBlockOptin)
    return unsupported("CUDA backend: " + std::to_string(smem) + " B of shared memory per block "
                       "needed, the device allows " + std::to_string(prop.sharedMemPerBlockOptin));
  cfg_.stream = stream_;
  PDVM_TRY(configure_kernels(smem, prop.multiProcessorCount, &cfg_));
  FmtSet used = 0;
  for (const DevLayer& L : layers_) used |= layer_fmts(L);
  cfg_.token_fmts = used;
#ifdef PDVM_CUDA_STAGE_TIMER
  if (opt.mode != Mode::kOps) {  // a diagnostic build: its own small allocation
    const size_t n = size_t(c.n_layers) * kStageMarks * size_t(cfg_.grid_token) * 8;
    void* p = nullptr;
    PDVM_TRY(alloc_device(&p, n, "stage timer marks"));
    PDVM_CUDA_TRY(cudaMemset(p, 0, n));
    s_.stage_t = static_cast<unsigned long long*>(p);
  }
#endif
  PDVM_CUDA_TRY(cudaDeviceSynchronize());

  if (opt.mode == Mode::kOps && opt.use_graph) PDVM_TRY(capture_graph());
  if (opt.mode == Mode::kLayer && opt.use_graph && !capture_graph().is_ok()) {
    // A driver that cannot capture cooperative launches: plain launches per layer still work.
    cudaGetLastError();
    if (graph_exec_) { cudaGraphExecDestroy(graph_exec_); graph_exec_ = nullptr; }
  }
  return Status::ok();
}

Status CudaBackendImpl::capture_graph() {
  PDVM_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  const Status st = enqueue_token();
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
  PDVM_TRY(st);
  PDVM_CUDA_TRY(end);
  const cudaError_t inst = cudaGraphInstantiate(&graph_exec_, graph, 0);
  cudaGraphDestroy(graph);
  PDVM_CUDA_TRY(inst);
  return Status::ok();
}

Status CudaBackendImpl::poison_scratch() {
  // 0xFF bytes are f32 NaN: any element a step fails to write stays NaN
  PDVM_CUDA_TRY(cudaMemsetAsync(s_.x, 0xFF, size_t(s_.d_model) * 4, stream_));
  PDVM_CUDA_TRY(cudaMemsetAsync(s_.q, 0xFF, size_t(s_.n_heads) * s_.head_dim * 4, stream_));
  PDVM_CUDA_TRY(cudaMemsetAsync(s_.attn, 0xFF, size_t(s_.n_heads) * s_.head_dim * 4, stream_));
  PDVM_CUDA_TRY(cudaMemsetAsync(s_.act, 0xFF, size_t(s_.d_ff) * 4, stream_));
  PDVM_CUDA_TRY(cudaMemsetAsync(s_.part, 0xFF,
                                size_t(s_.n_heads) * s_.n_chunks_max * (s_.head_dim + 4) * 4, stream_));
  PDVM_CUDA_TRY(cudaMemsetAsync(s_.logits, 0xFF, size_t(s_.vocab) * 4, stream_));
  return synchronize();
}

}  // namespace

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::kOps: return "ops";
    case Mode::kLayer: return "layer";
    case Mode::kToken: return "token";
  }
  return "?";
}

Result<Mode> parse_mode(std::string_view name) {
  if (name == "ops") return Mode::kOps;
  if (name == "layer") return Mode::kLayer;
  if (name == "token") return Mode::kToken;
  return invalid_argument("unknown CUDA mode '" + std::string(name) + "' (known: ops, layer, token)");
}

Result<int> cuda_device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Status(StatusCode::kDevice, std::string("no usable CUDA device: cudaGetDeviceCount: ") +
                                           cudaGetErrorString(e));
  }
  if (n == 0) return Status(StatusCode::kDevice, "no CUDA device found");
  return n;
}

Result<std::unique_ptr<core::Backend>> make_cuda_backend(const core::Model& model,
                                                         const CudaOptions& options) {
  PDVM_TRY(cuda_device_count().status());
  auto impl = std::make_unique<CudaBackendImpl>();
  PDVM_TRY(impl->init(model, options).with_context("cuda backend (" + model.source + ")"));
  return std::unique_ptr<core::Backend>(std::move(impl));
}

}  // namespace pdvm::cuda
