// A parser callback for nlohmann::json that rejects duplicate object keys (the library keeps
// the last one silently) and nesting deeper than a limit, with messages that say where.
#pragma once

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

namespace quanto::io_detail {

class JsonGuard {
 public:
  // describe(level, owner, key) gives the message for a duplicate `key` in an object at
  // `level` (1 = the root object) whose own key in its parent was `owner`.
  using Describe = std::string (*)(size_t level, const std::string& owner, const std::string& key);
  using Fail = void (*)(const std::string& message);  // throws

  // `what` names the document in the depth error ("header JSON nests deeper than 32 levels").
  JsonGuard(size_t max_depth, Describe describe, Fail fail, const char* what)
      : max_depth_(max_depth), describe_(describe), fail_(fail), what_(what) {}

  bool operator()(int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    switch (event) {
      case E::object_start:
      case E::array_start:
        if (frames_.size() >= max_depth_) {
          fail_(std::string(what_) + " nests deeper than " + std::to_string(max_depth_) + " levels");
        }
        frames_.push_back(Frame{event == E::object_start, {}, last_key(), {}});
        break;
      case E::object_end:
      case E::array_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case E::key: {
        Frame& f = frames_.back();
        std::string key = parsed.get<std::string>();
        if (!f.keys.insert(key).second) fail_(describe_(frames_.size(), f.owner, key));
        f.last = std::move(key);
        break;
      }
      case E::value:
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool is_object;
    std::set<std::string> keys;
    std::string owner;
    std::string last;
  };
  std::string last_key() const {
    if (frames_.empty() || !frames_.back().is_object) return {};
    return frames_.back().last;
  }

  size_t max_depth_;
  Describe describe_;
  Fail fail_;
  const char* what_;
  std::vector<Frame> frames_;
};

}  // namespace quanto::io_detail
