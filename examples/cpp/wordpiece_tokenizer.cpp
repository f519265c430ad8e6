#include "wordpiece_tokenizer.h"

#include <fstream>
#include <stdexcept>

namespace quanto_example {
namespace {

constexpr size_t kMaxCharsPerWord = 100;  // longer words become [UNK], as in BERT

// Decodes one UTF-8 code point at text[i], advancing i; invalid bytes decode as U+FFFD.
char32_t next_code_point(std::string_view text, size_t& i) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  int extra = b0 < 0x80 ? 0 : (b0 >> 5) == 0x6 ? 1 : (b0 >> 4) == 0xE ? 2 : (b0 >> 3) == 0x1E ? 3 : -1;
  if (extra < 0 || i + extra >= text.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = extra == 0 ? b0 : b0 & (0x3F >> extra);
  for (int k = 1; k <= extra; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  i += extra + 1;
  return cp;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xA0 || c == 0x3000 || (c >= 0x2000 && c <= 0x200A);
}

bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  return c < 0x20 || (c >= 0x7F && c < 0xA0);
}

// BERT treats every non-alphanumeric ASCII character as punctuation, plus Unicode's general
// punctuation blocks.
bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  return (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x205E) || (c >= 0x3001 && c <= 0x3003) ||
         c == 0xA1 || c == 0xA7 || c == 0xAB || c == 0xB6 || c == 0xB7 || c == 0xBB || c == 0xBF;
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2CEAF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(const std::string& vocab_path) {
  std::ifstream in(vocab_path);
  if (!in) throw std::runtime_error("cannot open vocabulary " + vocab_path);
  std::string line;
  for (int64_t id = 0; std::getline(in, line); ++id) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    vocab_.emplace(line, id);
  }
  if (vocab_.empty()) throw std::runtime_error("empty vocabulary " + vocab_path);
  cls_id_ = id_of("[CLS]");
  sep_id_ = id_of("[SEP]");
  unk_id_ = id_of("[UNK]");
  pad_id_ = id_of("[PAD]");
}

int64_t WordPieceTokenizer::id_of(const std::string& token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) throw std::runtime_error("vocabulary has no " + token + " token");
  return it->second;
}

std::vector<std::string> WordPieceTokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string> words;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) words.push_back(std::move(current));
    current.clear();
  };
  for (size_t i = 0; i < text.size();) {
    char32_t c = next_code_point(text, i);
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_whitespace(c)) {
      flush();
    } else if (is_punctuation(c) || is_cjk(c)) {
      flush();
      append_utf8(c, current);
      flush();
    } else {
      if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
      append_utf8(c, current);
    }
  }
  flush();
  return words;
}

void WordPieceTokenizer::word_piece(const std::string& word, std::vector<int64_t>& ids) const {
  if (word.size() > kMaxCharsPerWord) {
    ids.push_back(unk_id_);
    return;
  }
  std::vector<int64_t> pieces;
  for (size_t start = 0; start < word.size();) {
    size_t end = word.size();
    int64_t found = -1;
    for (; end > start; --end) {
      // Only cut on code-point boundaries.
      if (end < word.size() && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80) continue;
      std::string piece = (start > 0 ? "##" : "") + word.substr(start, end - start);
      const auto it = vocab_.find(piece);
      if (it != vocab_.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {  // an unmatchable word is one [UNK], as in BERT
      ids.push_back(unk_id_);
      return;
    }
    pieces.push_back(found);
    start = end;
  }
  ids.insert(ids.end(), pieces.begin(), pieces.end());
}

std::vector<int64_t> WordPieceTokenizer::encode(std::string_view text, size_t max_length) const {
  if (max_length < 2) throw std::invalid_argument("max_length must leave room for [CLS] and [SEP]");
  std::vector<int64_t> ids{cls_id_};
  for (const std::string& word : pre_tokenize(text)) word_piece(word, ids);
  if (ids.size() > max_length - 1) ids.resize(max_length - 1);
  ids.push_back(sep_id_);
  return ids;
}

}  // namespace quanto_example
