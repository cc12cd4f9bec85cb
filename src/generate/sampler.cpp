#include "generate/sampler.h"

#include <algorithm>
#include <cmath>

namespace pdvm::generate {

Status validate(const SamplerOptions& o) {
  if (!std::isfinite(o.temperature)) return invalid_argument("--temp must be a finite number");
  if (!(o.top_p > 0)) return invalid_argument("--top-p must be in (0, 1], got " + std::to_string(o.top_p));
  if (o.min_p < 0 || o.min_p > 1) return invalid_argument("--min-p must be in [0, 1], got " + std::to_string(o.min_p));
  if (!(o.repeat_penalty > 0)) return invalid_argument("--repeat-penalty must be positive");
  if (o.repeat_last_n < 0) return invalid_argument("--repeat-last-n must be >= 0");
  return Status::ok();
}

int32_t argmax(std::span<const float> logits) {
  // first maximum wins, as torch.argmax does
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[size_t(best)]) best = int32_t(i);
  return best;
}

Sampler::Sampler(int vocab_size, const SamplerOptions& options)
    : o_(options), rng_(options.seed), cand_(size_t(vocab_size)),
      penalized_(size_t(vocab_size)), seen_(size_t(vocab_size), 0) {}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> recent) {
  const size_t n = std::min(logits.size(), cand_.size());
  std::span<const float> l = logits.first(n);
  if (o_.repeat_penalty != 1.0f && o_.repeat_last_n > 0) {
    std::copy(l.begin(), l.end(), penalized_.begin());
    const size_t take = std::min(recent.size(), size_t(o_.repeat_last_n));
    for (size_t i = recent.size() - take; i < recent.size(); ++i) {
      const int32_t t = recent[i];
      if (t < 0 || size_t(t) >= n || seen_[size_t(t)]) continue;
      seen_[size_t(t)] = 1;
      float& v = penalized_[size_t(t)];
      v = v > 0 ? v / o_.repeat_penalty : v * o_.repeat_penalty;
    }
    for (size_t i = recent.size() - take; i < recent.size(); ++i)
      if (recent[i] >= 0 && size_t(recent[i]) < n) seen_[size_t(recent[i])] = 0;
    l = std::span<const float>(penalized_.data(), n);
  }
  if (o_.temperature <= 0) return argmax(l);

  for (size_t i = 0; i < n; ++i) cand_[i] = {int32_t(i), l[i]};
  size_t count = n;
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (o_.top_k > 0 && size_t(o_.top_k) < count) {
    std::partial_sort(cand_.begin(), cand_.begin() + o_.top_k, cand_.begin() + long(count), by_logit);
    count = size_t(o_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.begin() + long(count), by_logit);
  }
  // softmax over the (sorted) survivors, at temperature 1 for the p filters, as llama.cpp does
  const float max_logit = cand_[0].logit;
  double sum = 0;
  for (size_t i = 0; i < count; ++i) sum += std::exp(double(cand_[i].logit - max_logit));
  if (o_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = count;
    for (size_t i = 0; i < count; ++i) {
      cum += std::exp(double(cand_[i].logit - max_logit)) / sum;
      if (cum >= o_.top_p) { keep = i + 1; break; }
    }
    count = keep;
  }
  if (o_.min_p > 0) {
    // keep tokens whose probability is at least min_p times the top token's
    const float threshold = max_logit + std::log(o_.min_p);
    size_t keep = 1;
    while (keep < count && cand_[keep].logit >= threshold) ++keep;
    count = keep;
  }
  // temperature, then a draw
  double total = 0;
  for (size_t i = 0; i < count; ++i) total += std::exp(double(cand_[i].logit - max_logit) / o_.temperature);
  std::uniform_real_distribution<double> uni(0.0, total);
  double r = uni(rng_), acc = 0;
  for (size_t i = 0; i < count; ++i) {
    acc += std::exp(double(cand_[i].logit - max_logit) / o_.temperature);
    if (r < acc) return cand_[i].id;
  }
  return cand_[count - 1].id;
}

}  // namespace pdvm::generate
