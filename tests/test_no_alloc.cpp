// The decode loop allocates nothing: global operator new is counted while the fast and the
// reference CPU backends decode tokens and the sampler picks them.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "cpu/cpu_backend.h"
#include "generate/sampler.h"
#include "model/load.h"

// Replacing the global allocation functions pairs malloc with free on purpose.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<long> g_allocations{0};
}

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace pdvm;

class NoAlloc : public ::testing::TestWithParam<std::string> {};

TEST_P(NoAlloc, DecodeStepsAllocateNothing) {
  const std::string dir = std::string(PDVM_TEST_DATA) + "/fixtures/" + GetParam();
  auto loaded = model::load_model(dir);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  for (auto kernels : {cpu::CpuKernels::kFast, cpu::CpuKernels::kReference}) {
    cpu::CpuOptions o;
    o.kernels = kernels;
    o.context = 64;
    o.threads = 2;
    auto backend = cpu::make_cpu_backend(loaded->model, o);
    ASSERT_TRUE(backend.is_ok()) << backend.status().message();
    generate::SamplerOptions so;
    so.repeat_penalty = 1.1f;
    generate::Sampler sampler(loaded->model.config.vocab_size, so);
    std::vector<int32_t> history;
    history.reserve(64);
    int32_t token = 1;
    ASSERT_TRUE((*backend)->execute_model(token, 0).is_ok());  // warm-up
    const long before = g_allocations.load();
    for (int pos = 1; pos < 48; ++pos) {
      auto logits = (*backend)->execute_model(token, pos);
      ASSERT_TRUE(logits.is_ok());
      token = sampler.sample(*logits, history);
      history.push_back(token);
    }
    EXPECT_EQ(g_allocations.load() - before, 0) << (*backend)->name();
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, NoAlloc, ::testing::Values("llama", "gguf_llama_q4_1", "gguf_llama_q4_k_m"));
