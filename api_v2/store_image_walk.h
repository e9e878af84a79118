// The state of a store image made in steps (Store::begin_image, image_step in store_image.cc),
// kept in Store::Impl while later commands change the tree. Internal to the store.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "api_v2/store.h"

namespace kvd::v2::store_detail {

struct Node;

// An image in progress (Store::begin_image): what the tree was at its index, kept while later
// changes go on. Every node that existed then (created_index <= index) and was changed since
// has its old fields in `before`; every such node taken out of the tree since (deleted,
// expired, replaced by a set) is kept whole in `removed` under its old parent until the image
// ends, so that nothing the walk has still to write is gone. Nodes made since are skipped.
struct ImageWalk {
  struct Before {
    std::string value;
    std::optional<int64_t> expire_ns;
    uint64_t modified_index = 0;
  };
  // A directory being written: the name of its last child written (none yet: !started).
  struct Frame {
    const Node* dir;
    std::string last;
    bool started = false;
  };

  uint64_t index = 0;
  size_t piece_bytes = 0;
  std::string out;  // written, not yet handed over
  std::vector<std::pair<uint64_t, std::shared_ptr<const Event>>> history;
  std::unordered_map<const Node*, Before> before;
  std::unordered_map<const Node*, std::map<std::string_view, std::unique_ptr<Node>>> removed;
  // Children made since the image's index, per directory (in its children map, not in the image).
  std::unordered_map<const Node*, size_t> made_since;
  std::vector<Frame> stack;
  bool root_written = false;

  // Whether n was in the tree at the image's index (nodes made since are skipped).
  inline bool existed(const Node* n) const;
};

}  // namespace kvd::v2::store_detail
