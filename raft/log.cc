#include "raft/log.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace kvd::raft {

namespace {
void (*g_fatal_hook)(const char*) = nullptr;
}  // namespace

void set_fatal_hook(void (*hook)(const char* message)) { g_fatal_hook = hook; }

void fatal(const char* fmt, ...) {
  char buf[512];
  std::va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "raft: fatal: %s\n", buf);
  if (g_fatal_hook != nullptr) g_fatal_hook(buf);
  std::abort();
}

Log::Log(const LogStorage* storage) : storage_(storage), offset_(storage->last_index() + 1) {
  committed_ = storage->first_index() - 1;
  applied_ = committed_;
}

uint64_t Log::first_index() const {
  if (unstable_snapshot_) return unstable_snapshot_->metadata.index + 1;
  return storage_->first_index();
}

uint64_t Log::last_index() const {
  if (!unstable_.empty()) return offset_ + unstable_.size() - 1;
  if (unstable_snapshot_) return unstable_snapshot_->metadata.index;
  // offset_ may sit below storage's end only while unstable_ holds the replacement suffix.
  return std::min(storage_->last_index(), offset_ - 1);
}

StorageError Log::term(uint64_t i, uint64_t* out) const {
  const uint64_t dummy = first_index() - 1;
  if (i < dummy) return StorageError::kCompacted;
  if (i > last_index()) return StorageError::kUnavailable;
  if (unstable_snapshot_ && i == unstable_snapshot_->metadata.index) {
    *out = unstable_snapshot_->metadata.term;
    return StorageError::kOk;
  }
  if (i >= offset_) {
    *out = unstable_[i - offset_].term;
    return StorageError::kOk;
  }
  return storage_->term(i, out);
}

uint64_t Log::term_or_zero(uint64_t i) const {
  uint64_t t = 0;
  if (term(i, &t) != StorageError::kOk) return 0;
  return t;
}

uint64_t Log::last_term() const {
  uint64_t t = 0;
  const StorageError err = term(last_index(), &t);
  if (err != StorageError::kOk) fatal("term of last index %llu unavailable", (unsigned long long)last_index());
  return t;
}

bool Log::match_term(uint64_t i, uint64_t t) const {
  uint64_t got = 0;
  if (term(i, &got) != StorageError::kOk) return false;
  return got == t;
}

bool Log::is_up_to_date(uint64_t index, uint64_t t) const {
  const uint64_t lt = last_term();
  return t > lt || (t == lt && index >= last_index());
}

uint64_t Log::find_conflict(const std::vector<Entry>& ents) const {
  for (const Entry& e : ents) {
    if (!match_term(e.index, e.term)) return e.index;
  }
  return 0;
}

std::pair<uint64_t, uint64_t> Log::find_conflict_by_term(uint64_t index, uint64_t t) const {
  const uint64_t stop = first_index() - 1;
  for (uint64_t i = std::min(index, last_index());; --i) {
    uint64_t got = 0;
    if (term(i, &got) != StorageError::kOk) return {i, 0};
    if (got <= t || i <= stop) return {i, got};
  }
}

void Log::append(const std::vector<Entry>& ents) {
  if (ents.empty()) return;
  const uint64_t after = ents.front().index;
  if (after <= committed_) {
    fatal("append at %llu would overwrite committed entries (committed %llu)",
          (unsigned long long)after, (unsigned long long)committed_);
  }
  if (after > last_index() + 1) {
    fatal("append at %llu leaves a gap after %llu", (unsigned long long)after,
          (unsigned long long)last_index());
  }
  if (after == offset_ + unstable_.size()) {
    unstable_.insert(unstable_.end(), ents.begin(), ents.end());
  } else if (after <= offset_) {
    // Replaces (part of) the persisted log: shadow storage from `after` on.
    offset_ = after;
    unstable_ = ents;
  } else {
    unstable_.resize(after - offset_);
    unstable_.insert(unstable_.end(), ents.begin(), ents.end());
  }
}

StorageError Log::slice(uint64_t lo, uint64_t hi, uint64_t max_bytes,
                        std::vector<Entry>* out) const {
  if (lo < first_index()) return StorageError::kCompacted;
  if (hi > last_index() + 1) return StorageError::kUnavailable;
  if (lo >= hi) return StorageError::kOk;
  uint64_t bytes = 0;
  if (lo < offset_) {
    const uint64_t shi = std::min(hi, offset_);
    std::vector<Entry> stored;
    const StorageError err = storage_->entries(lo, shi, max_bytes, &stored);
    if (err != StorageError::kOk) return err;
    for (const Entry& e : stored) bytes += e.data.size();
    const bool truncated = stored.size() < shi - lo;
    out->insert(out->end(), std::make_move_iterator(stored.begin()),
                std::make_move_iterator(stored.end()));
    if (truncated) return StorageError::kOk;
  }
  for (uint64_t i = std::max(lo, offset_); i < hi; ++i) {
    const Entry& e = unstable_[i - offset_];
    bytes += e.data.size();
    if (!out->empty() && bytes > max_bytes) break;
    out->push_back(e);
  }
  return StorageError::kOk;
}

void Log::commit_to(uint64_t index) {
  if (index <= committed_) return;
  if (index > last_index()) {
    fatal("commit %llu is beyond the last index %llu", (unsigned long long)index,
          (unsigned long long)last_index());
  }
  committed_ = index;
}

bool Log::maybe_commit(uint64_t max_index, uint64_t t) {
  if (max_index > committed_ && term_or_zero(max_index) == t) {
    commit_to(max_index);
    return true;
  }
  return false;
}

void Log::applied_to(uint64_t index) {
  if (index == 0) return;
  if (index > committed_ || index < applied_) {
    fatal("applied %llu out of range [%llu, %llu]", (unsigned long long)index,
          (unsigned long long)applied_, (unsigned long long)committed_);
  }
  applied_ = index;
}

uint64_t Log::stable_index() const {
  if (unstable_snapshot_) return 0;
  return std::min(offset_ - 1, storage_->last_index());
}

bool Log::has_next_committed() const {
  // (With a pending snapshot stable_index() is 0: the snapshot must be installed first.)
  return std::min(committed_, stable_index()) > applied_;
}

std::vector<Entry> Log::next_committed(uint64_t max_bytes) const {
  std::vector<Entry> out;
  if (!has_next_committed()) return out;
  const uint64_t lo = std::max(applied_ + 1, first_index());
  const uint64_t hi = std::min(committed_, stable_index());
  const StorageError err = slice(lo, hi + 1, max_bytes, &out);
  if (err != StorageError::kOk) fatal("committed entries [%llu, %llu] unreadable", (unsigned long long)lo,
                                      (unsigned long long)hi);
  return out;
}

void Log::stable_to(uint64_t index, uint64_t t) {
  if (index < offset_ || index >= offset_ + unstable_.size()) return;
  if (unstable_[index - offset_].term != t) return;  // replaced since the Ready was taken
  unstable_.erase(unstable_.begin(), unstable_.begin() + static_cast<std::ptrdiff_t>(index - offset_ + 1));
  offset_ = index + 1;
}

void Log::stable_snapshot_to(uint64_t index) {
  if (unstable_snapshot_ && unstable_snapshot_->metadata.index == index) unstable_snapshot_.reset();
}

void Log::restore(const Snapshot& snap) {
  committed_ = snap.metadata.index;
  offset_ = snap.metadata.index + 1;
  unstable_.clear();
  unstable_snapshot_ = snap;
}

StorageError Log::snapshot(Snapshot* out) const {
  if (unstable_snapshot_) {
    *out = *unstable_snapshot_;
    return StorageError::kOk;
  }
  return storage_->snapshot(out);
}

void Log::set_committed_applied(uint64_t committed, uint64_t applied) {
  if (committed > last_index()) {
    fatal("persisted commit %llu is beyond the last index %llu", (unsigned long long)committed,
          (unsigned long long)last_index());
  }
  committed_ = std::max(committed, first_index() - 1);
  applied_ = std::min(std::max(applied, first_index() - 1), committed_);
}

}  // namespace kvd::raft
