#include "generate/generate.h"

#include <algorithm>

namespace pdvm::generate {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Holds back the tail of the text that could still become a stop string.
class StopFilter {
 public:
  explicit StopFilter(const std::vector<std::string>& stops) : stops_(stops) {}
  // Adds text; returns what is safe to print now. Sets `stopped` when a stop string appears.
  std::string push(std::string_view text, bool& stopped) {
    pending_ += text;
    for (const auto& s : stops_) {
      if (s.empty()) continue;
      if (auto at = pending_.find(s); at != std::string::npos) {
        stopped = true;
        std::string out = pending_.substr(0, at);
        pending_.clear();
        return out;
      }
    }
    size_t hold = 0;  // longest suffix of pending_ that is a proper prefix of a stop string
    for (const auto& s : stops_)
      for (size_t k = std::min(s.size() - (s.empty() ? 0 : 1), pending_.size()); k > hold; --k)
        if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) { hold = k; break; }
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return out;
  }
  std::string flush() { return std::exchange(pending_, {}); }

 private:
  const std::vector<std::string>& stops_;
  std::string pending_;
};

}  // namespace

Session::Session(core::Backend& backend, const tokenizer::Tokenizer& tok)
    : backend_(backend), tok_(tok) {}

Result<GenerateStats> Session::generate(std::span<const int32_t> ids, const GenerateOptions& o,
                                        const TextCallback& on_text) {
  PDVM_TRY(validate(o.sampler));
  GenerateStats stats;
  stats.prompt_tokens = int(ids.size());
  const int ctx = backend_.context();
  if (ids.empty() && history_.empty()) return invalid_argument("the prompt is empty");
  if (position() + int(ids.size()) > ctx)
    return out_of_range("the prompt needs " + std::to_string(position() + ids.size()) +
                        " positions but the context holds " + std::to_string(ctx) +
                        " (raise -c, or shorten the prompt)");

  history_.reserve(size_t(ctx));
  auto t0 = std::chrono::steady_clock::now();
  std::span<const float> logits;
  for (int32_t id : ids) {
    const int pos = position();
    PDVM_ASSIGN_OR_RETURN(logits, backend_.execute_model(id, pos));
    history_.push_back(id);
  }
  if (ids.empty()) return invalid_argument("nothing to continue from: pass at least one token");
  stats.prompt_ms = ms_since(t0);

  Sampler sampler(int(logits.size()), o.sampler);
  tokenizer::StreamDecoder decoder(tok_);
  StopFilter stop(o.stop_strings);
  const auto& eos = tok_.eos_ids();
  auto t1 = std::chrono::steady_clock::now();
  bool stopped = false;
  for (;;) {
    if (o.max_tokens >= 0 && stats.generated_tokens >= o.max_tokens) { stats.stop_reason = "max tokens"; break; }
    const int32_t next = sampler.sample(logits, history_);
    stats.generated_tokens++;
    if (stats.generated_tokens == 1) t1 = std::chrono::steady_clock::now();
    if (o.stop_at_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) {
      stats.stop_reason = "eos";
      stats.end_token = next;
      break;
    }
    std::string text = stop.push(decoder.push(next), stopped);
    if (!text.empty() && on_text && !on_text(text)) { stats.stop_reason = "cancelled"; break; }
    if (stopped) { stats.stop_reason = "stop string"; break; }
    if (position() >= ctx) { stats.stop_reason = "context full"; break; }
    PDVM_ASSIGN_OR_RETURN(logits, backend_.execute_model(next, position()));
    history_.push_back(next);
  }
  if (!stopped) {
    std::string rest = stop.push(decoder.flush(), stopped);
    rest += stop.flush();
    if (!rest.empty() && on_text) on_text(rest);
  }
  stats.generate_ms = ms_since(t1);
  return stats;
}

}  // namespace pdvm::generate
