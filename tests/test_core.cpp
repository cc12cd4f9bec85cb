// Core pieces: f16/bf16 conversion, weight-type table, thread pool.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/half.h"
#include "core/thread_pool.h"
#include "core/weight.h"

using namespace pdvm::core;

TEST(Half, RoundTripsEveryF16) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), h) << std::hex << h;
  }
}

TEST(Half, RoundsToNearestEven) {
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + 1.0f / 2048)), 1.0f);           // tie -> even
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + 3.0f / 2048)), 1.0f + 2.0f / 1024);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);                                    // overflow -> inf
  EXPECT_EQ(f16_to_f32(f32_to_f16(std::ldexp(1.0f, -24))), std::ldexp(1.0f, -24));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
}

TEST(WeightType, NamesRoundTrip) {
  for (auto t : {WeightType::kF32, WeightType::kQ4_1, WeightType::kQ6_K, WeightType::kQ5_0,
                 WeightType::kQ5_1, WeightType::kQ5_K, WeightType::kBitmapI8}) {
    auto r = parse_weight_type(weight_type_name(t));
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(*r, t);
  }
  EXPECT_FALSE(parse_weight_type("q3_xx").is_ok());
  EXPECT_EQ(row_bytes(WeightType::kQ4_K, 512), 288u);
  EXPECT_EQ(row_bytes(WeightType::kQ5_0, 64), 44u);   // 2 blocks of 22 B
  EXPECT_EQ(row_bytes(WeightType::kQ5_1, 64), 48u);   // 2 blocks of 24 B
  EXPECT_EQ(row_bytes(WeightType::kQ5_K, 512), 352u);  // 2 super-blocks of 176 B
  EXPECT_EQ(weight_type_name(WeightType::kQ5_K), "q5_K");
}

TEST(ThreadPool, ParallelForCoversRangeOnce) {
  ThreadPool pool(3);
  std::vector<int> hits(1001, 0);
  for (int rep = 0; rep < 200; ++rep) {
    pool.parallel_for(1001, 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
  }
  for (int h : hits) EXPECT_EQ(h, 200);
}
