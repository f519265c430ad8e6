// BERT's uncased WordPiece tokenizer, enough for the all-MiniLM-L6-v2 example to run from C++
// without Python: text normalization (control characters dropped, whitespace unified, ASCII
// lower-cased, CJK ideographs split), whitespace + punctuation pre-tokenization, then greedy
// longest-match WordPiece with the "##" continuation prefix.
//
// Limitation (documented, tested on ASCII text): non-ASCII letters are kept as they are; the
// Hugging Face tokenizer also lower-cases them and strips accents (Unicode NFD), which needs
// Unicode tables this example does not carry.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace quanto_example {

class WordPieceTokenizer {
 public:
  // Reads `vocab.txt` (one token per line, id = line number). Throws std::runtime_error.
  explicit WordPieceTokenizer(const std::string& vocab_path);

  // [CLS] tokens… [SEP], truncated to max_length ids.
  std::vector<int64_t> encode(std::string_view text, size_t max_length = 256) const;

  int64_t pad_id() const { return pad_id_; }

 private:
  std::vector<std::string> pre_tokenize(std::string_view text) const;
  void word_piece(const std::string& word, std::vector<int64_t>& ids) const;
  int64_t id_of(const std::string& token) const;

  std::unordered_map<std::string, int64_t> vocab_;
  int64_t cls_id_ = 0, sep_id_ = 0, unk_id_ = 0, pad_id_ = 0;
};

}  // namespace quanto_example
