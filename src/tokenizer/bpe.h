// BPE merge engine shared by byte-level and SentencePiece-style models: a pair table
// (left id, right id) -> (rank, merged id) and the merge loop that always applies the lowest-rank
// pair, leftmost first (tokenizers' BPE::merge_word; llama.cpp's score-ordered SPM merges map onto
// it with rank = dense rank of the merged token's score).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pdvm::tokenizer {

class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    uint32_t rank = 0;
    int32_t merged = -1;
  };
  static constexpr uint64_t kEmpty = ~0ull;

  void reserve(size_t n_merges);
  // Keeps the lower rank when the same pair is added twice (tokenizers keeps the first line).
  void add(int32_t left, int32_t right, uint32_t rank, int32_t merged);
  const Entry* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = make_key(left, right);
    for (size_t i = hash(key);; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

  // Merges ids in place until no adjacent pair has a merge.
  void merge(std::vector<int32_t>& ids) const;

 private:
  static uint64_t make_key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  size_t hash(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  void grow();
  void merge_small(std::vector<int32_t>& ids) const;
  void merge_heap(std::vector<int32_t>& ids) const;

  std::vector<Entry> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

}  // namespace pdvm::tokenizer
