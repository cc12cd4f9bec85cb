// BPE merge loop (see bpe.h). Two equivalent strategies: short words (the common case after
// pre-tokenization) rescan a small rank array, which beats a heap below ~64 symbols; long words
// (SentencePiece segments have no pre-tokenizer, runs of one character) use a heap over a linked
// list, O(n log n).
#include "tokenizer/bpe.h"

#include <queue>

namespace pdvm::tokenizer {

namespace {
constexpr size_t kSmallWord = 64;  // below this, rescanning beats the heap (bench_tokenizer)
constexpr uint32_t kNoRank = ~0u;
}  // namespace

void MergeTable::reserve(size_t n_merges) {
  size_t cap = 16;
  while (cap < n_merges * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Entry> old;
  old.swap(slots_);
  slots_.assign(cap, Entry{});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
  size_ = 0;
  for (const Entry& e : old) {
    if (e.key == kEmpty) continue;
    add(static_cast<int32_t>(e.key >> 32), static_cast<int32_t>(e.key & 0xFFFFFFFFu), e.rank, e.merged);
  }
}

void MergeTable::grow() { reserve(slots_.empty() ? 8 : slots_.size()); }

void MergeTable::add(int32_t left, int32_t right, uint32_t rank, int32_t merged) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const uint64_t key = make_key(left, right);
  for (size_t i = hash(key);; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == key) {
      if (rank < e.rank) { e.rank = rank; e.merged = merged; }
      return;
    }
    if (e.key == kEmpty) {
      e = Entry{key, rank, merged};
      ++size_;
      return;
    }
  }
}

void MergeTable::merge(std::vector<int32_t>& ids) const {
  if (ids.size() < 2 || slots_.empty()) return;
  if (ids.size() <= kSmallWord) merge_small(ids);
  else merge_heap(ids);
}

void MergeTable::merge_small(std::vector<int32_t>& ids) const {
  uint32_t rank[kSmallWord];
  size_t n = ids.size();
  auto pair_rank = [&](size_t i) {
    const Entry* e = find(ids[i], ids[i + 1]);
    return e ? e->rank : kNoRank;
  };
  for (size_t i = 0; i + 1 < n; ++i) rank[i] = pair_rank(i);
  while (n > 1) {
    size_t best = 0;
    uint32_t best_rank = kNoRank;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (rank[i] < best_rank) { best_rank = rank[i]; best = i; }
    }
    if (best_rank == kNoRank) break;
    ids[best] = find(ids[best], ids[best + 1])->merged;
    for (size_t i = best + 1; i + 1 < n; ++i) ids[i] = ids[i + 1];
    for (size_t i = best + 1; i + 2 < n; ++i) rank[i] = rank[i + 1];
    --n;
    if (best > 0) rank[best - 1] = pair_rank(best - 1);
    if (best + 1 < n) rank[best] = pair_rank(best);
  }
  ids.resize(n);
}

void MergeTable::merge_heap(std::vector<int32_t>& ids) const {
  const int n = static_cast<int>(ids.size());
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
  struct Cand {
    uint32_t rank;
    int left, right;
    int32_t left_id, right_id;
  };
  // Lowest rank first, then leftmost (tokenizers' Merge ordering).
  auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.left > b.left; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto push = [&](int l) {
    const int r = next[l];
    if (l < 0 || r < 0) return;
    if (const Entry* e = find(ids[l], ids[r])) heap.push(Cand{e->rank, l, r, ids[l], ids[r]});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  std::vector<char> alive(n, 1);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    // Stale entries: a side was merged away or changed since the candidate was pushed.
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right || ids[c.left] != c.left_id ||
        ids[c.right] != c.right_id)
      continue;
    ids[c.left] = find(c.left_id, c.right_id)->merged;
    alive[c.right] = 0;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    if (prev[c.left] >= 0) push(prev[c.left]);
    push(c.left);
  }
  size_t out = 0;
  for (int i = 0; i < n; ++i) if (alive[i]) ids[out++] = ids[i];
  ids.resize(out);
}

}  // namespace pdvm::tokenizer
