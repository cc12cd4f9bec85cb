// Backend: the one seam between a Model and the hardware that runs it (the prototype's
// execute_layer / execute_model). A backend owns its KV cache and activations for one sequence
// (batch 1), all allocated at construction: nothing is allocated inside the decode loop.
// Not thread-safe: one backend serves one sequence from one thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/model.h"

namespace pdvm::core {

struct BackendOptions {
  int context = 0;   // KV-cache positions to allocate (0: min(model max_seq, 4096))
  int threads = 0;   // CPU threads (0: all cores)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int context() const = 0;  // KV-cache capacity in positions

  // hidden <- embedding row of `token`.
  virtual Status embed(int32_t token) = 0;
  // hidden <- layer `layer` applied to hidden at position `pos`; writes K,V of `pos` to the cache.
  virtual Status execute_layer(int layer, int32_t pos) = 0;
  // Final norm and LM head on hidden: logits [vocab_size], valid until the next call.
  virtual Result<std::span<const float>> logits() = 0;

  // embed, every layer, logits: one whole decode step for `token` at `pos`.
  virtual Result<std::span<const float>> execute_model(int32_t token, int32_t pos) {
    PDVM_TRY(embed(token));
    for (int l = 0; l < n_layers(); ++l) PDVM_TRY(execute_layer(l, pos));
    return logits();
  }

  // Fills KV positions [0, n_positions) of every layer with random values (std ~1), so a
  // benchmark can time decode at context depth n without decoding n tokens first. Optional:
  // the default reports kUnsupported and the caller decodes the positions instead (slow).
  virtual Status fill_kv_random(int n_positions, uint64_t seed) {
    (void)n_positions; (void)seed;
    return unsupported(name() + " backend cannot fill its KV cache directly");
  }

  // The hidden state [d_model] (host copy), for tests that compare backends layer by layer.
  virtual std::span<const float> hidden() = 0;
  virtual int n_layers() const = 0;
};

}  // namespace pdvm::core
