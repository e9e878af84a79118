#include "raft/memory_storage.h"

#include <cstdio>
#include <cstdlib>

namespace kvd::raft {

MemoryStorage::MemoryStorage() : ents_(1) {}

std::pair<HardState, ConfState> MemoryStorage::initial_state() const {
  return {hard_state_, snapshot_.metadata.conf_state};
}

uint64_t MemoryStorage::first_index() const { return ents_[0].index + 1; }

uint64_t MemoryStorage::last_index() const { return ents_[0].index + ents_.size() - 1; }

StorageError MemoryStorage::term(uint64_t i, uint64_t* out) const {
  const uint64_t offset = ents_[0].index;
  if (i < offset) return StorageError::kCompacted;
  if (i - offset >= ents_.size()) return StorageError::kUnavailable;
  *out = ents_[i - offset].term;
  return StorageError::kOk;
}

StorageError MemoryStorage::entries(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                                    std::vector<Entry>* out) const {
  const uint64_t offset = ents_[0].index;
  if (lo <= offset) return StorageError::kCompacted;
  if (hi > last_index() + 1) return StorageError::kUnavailable;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const Entry& e = ents_[i - offset];
    bytes += e.data.size();
    if (i > lo && bytes > max_bytes) break;
    out->push_back(e);
  }
  return StorageError::kOk;
}

StorageError MemoryStorage::snapshot(Snapshot* out) const {
  *out = snapshot_;
  return StorageError::kOk;
}

void MemoryStorage::append(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const uint64_t first = first_index();
  const uint64_t last = entries.back().index;
  if (last < first) return;  // all covered by the snapshot
  size_t skip = 0;
  if (entries.front().index < first) skip = first - entries.front().index;
  const uint64_t start = entries[skip].index;
  const uint64_t offset = ents_[0].index;
  if (start - offset > ents_.size()) {
    std::fprintf(stderr, "raft: MemoryStorage::append: gap: last %llu, appending at %llu\n",
                 static_cast<unsigned long long>(last_index()),
                 static_cast<unsigned long long>(start));
    std::abort();
  }
  ents_.resize(start - offset);
  ents_.insert(ents_.end(), entries.begin() + static_cast<std::ptrdiff_t>(skip), entries.end());
}

StorageError MemoryStorage::apply_snapshot(const Snapshot& snap) {
  if (snap.metadata.index <= snapshot_.metadata.index) return StorageError::kCompacted;
  snapshot_ = snap;
  ents_.assign(1, Entry{snap.metadata.term, snap.metadata.index, EntryType::kNormal, {}});
  return StorageError::kOk;
}

StorageError MemoryStorage::create_snapshot(uint64_t i, const ConfState& cs, std::string data) {
  if (i <= snapshot_.metadata.index) return StorageError::kCompacted;
  if (i > last_index()) return StorageError::kUnavailable;
  snapshot_.metadata.index = i;
  snapshot_.metadata.term = ents_[i - ents_[0].index].term;
  snapshot_.metadata.conf_state = cs;
  snapshot_.data = std::move(data);
  return StorageError::kOk;
}

StorageError MemoryStorage::compact(uint64_t compact_index) {
  const uint64_t offset = ents_[0].index;
  if (compact_index <= offset) return StorageError::kCompacted;
  if (compact_index > last_index()) return StorageError::kUnavailable;
  const uint64_t i = compact_index - offset;
  std::vector<Entry> kept;
  kept.reserve(ents_.size() - i);
  kept.push_back(Entry{ents_[i].term, ents_[i].index, EntryType::kNormal, {}});
  kept.insert(kept.end(), ents_.begin() + static_cast<std::ptrdiff_t>(i) + 1, ents_.end());
  ents_ = std::move(kept);
  return StorageError::kOk;
}

}  // namespace kvd::raft
