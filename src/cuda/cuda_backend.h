// The CUDA backend's public face (no CUDA headers here, so any C++ file may include it).
// make_cuda_backend uploads a Model's weights once, repacked for 16-byte loads, allocates every
// device buffer at construction, and runs decode steps in one of the Modes below.
// Not thread-safe: one backend serves one sequence from one host thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/backend.h"

namespace pdvm::cuda {

enum class Mode {
  kOps,    // one kernel per op (6 per layer), a whole token captured once into a CUDA graph
  kLayer,  // one cooperative launch per layer: a persistent grid, phases split by grid barriers;
           // the token's launches are captured once into a CUDA graph, as in ops mode
  kToken,  // one cooperative launch per token: embed, every layer, final norm, LM head, argmax
           // (embed/execute_layer/logits, used by tests for per-layer checks, run layer mode's
           // kernels; decode_step and execute_model run the one token kernel)
};
const char* mode_name(Mode mode);
Result<Mode> parse_mode(std::string_view name);  // "ops" | "layer" | "token"

struct CudaOptions {
  Mode mode = Mode::kOps;
  int context = 0;     // KV-cache positions (0: min(model max_seq, 4096))
  int device = 0;      // CUDA device ordinal
  // most positions per flash-decoding split (1..64); tests use small ones. The tensor-core
  // attention (head size 128) rounds a split up to whole 16-position tiles.
  int attn_chunk = 64;
  // fewest positions per split: each step cuts its positions into about one split per warp of the
  // grid, but no smaller than this (a warp loads 8 positions per batch at head_dim 128).
  // The environment variable PDVM_CUDA_MIN_CHUNK overrides it; PDVM_CUDA_ATTN=cores runs the
  // CUDA-core attention where the tensor-core one applies (head size 128), for comparisons.
  int attn_min_chunk = 16;
  bool use_graph = true;  // ops and layer mode: replay a captured graph per token (false: plain
                          // launches; layer mode falls back to them if capture fails)
};

// Number of CUDA devices, or a Status saying why there are none usable (no driver, no device).
Result<int> cuda_device_count();

Result<std::unique_ptr<core::Backend>> make_cuda_backend(const core::Model& model,
                                                         const CudaOptions& options);

// What make_cuda_backend returns; benchmarks and tests reach these extras through dynamic_cast.
class CudaBackend : public core::Backend {
 public:
  // One whole decode step, queued on the backend's stream; nothing is copied back and the host
  // does not wait. The argmax of the logits lands on the device (read it with argmax()).
  virtual Status decode_step(int32_t token, int32_t pos) = 0;
  virtual Status synchronize() = 0;
  virtual Result<int32_t> argmax() = 0;  // of the last logits (waits for the stream)
  // Fills KV positions [0, n_positions) of every layer with random f16 values (std ~1): lets a
  // benchmark measure decode at depth n without decoding n tokens.
  Status fill_kv_random(int n_positions, uint64_t seed) override = 0;
  // Kernel launches (graph nodes count one each) a decode_step issues, and graph launches.
  virtual int launches_per_token() const = 0;
  virtual bool graph_in_use() const = 0;
  virtual size_t weight_bytes() const = 0;   // device bytes a step reads for weights
  virtual size_t device_bytes() const = 0;   // every device allocation of this backend
  virtual std::string device_name() const = 0;
  virtual int grid_blocks() const = 0;       // persistent grid size of the layer kernel
  // Device time of the last decode_step (CUDA events around it); waits for it to finish.
  virtual Result<float> last_step_ms() = 0;
  // Fills x, q, attn, act, the attention partials and the logits with NaN, so a test sees any
  // element the next step fails to write. (The KV cache is NaN-poisoned at construction.)
  virtual Status poison_scratch() = 0;
  // Token and layer mode, builds with -DPDVM_CUDA_STAGE_TIMER=ON: the last step's time per stage
  // (work, block imbalance, barrier), as a small table; "" otherwise.
  virtual std::string stage_report() { return ""; }
};

// Device-memory ceilings measured on the backend's device, for the benchmark's "% of ceiling".
struct ReadCeiling {
  double memcpy_gbps = 0;  // cudaMemcpy device-to-device, bytes read + written per second
  double read_gbps = 0;    // a read-only reduction kernel (16-byte loads; its best shape), bytes/s
  size_t n_bytes = 0;      // buffer size used
};
// n_bytes 0: the default buffer (2 GiB, or a third of the free memory where that is less).
Result<ReadCeiling> measure_read_ceiling(int device, size_t n_bytes);

}  // namespace pdvm::cuda
