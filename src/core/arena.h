// Arena: one aligned allocation made at load, carved into the buffers a backend needs
// (activations, scratch, KV cache). Two passes over the same layout code: the first only
// counts (plan), the second hands out pointers (allocate). Nothing is freed until the arena is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "pdvm/status.h"

namespace pdvm::core {

class Arena {
 public:
  static constexpr size_t kAlign = 64;  // a cache line; also AVX-512's natural alignment

  Arena() = default;
  // Counting mode: take() returns spans over nothing and only sums sizes.
  size_t bytes_planned() const { return used_; }

  // Switches from counting to handing out memory: allocates what was counted (zeroed).
  Status allocate() {
    const size_t n = (used_ + kAlign - 1) / kAlign * kAlign;
    void* p = n ? std::aligned_alloc(kAlign, n) : nullptr;
    if (n && !p) return {StatusCode::kOutOfMemory, "cannot allocate " + std::to_string(n) + " bytes for activations and KV cache"};
    base_.reset(static_cast<uint8_t*>(p));
    if (p) std::memset(p, 0, n);
    size_ = n;
    used_ = 0;
    return Status::ok();
  }

  template <typename T>
  std::span<T> take(size_t count) {
    const size_t offset = (used_ + kAlign - 1) / kAlign * kAlign;
    used_ = offset + count * sizeof(T);
    if (!base_) return {};
    PDVM_ASSERT(used_ <= size_);
    return {reinterpret_cast<T*>(base_.get() + offset), count};
  }

 private:
  struct Free { void operator()(uint8_t* p) const { std::free(p); } };
  std::unique_ptr<uint8_t, Free> base_;
  size_t size_ = 0;
  size_t used_ = 0;
};

}  // namespace pdvm::core
