//===- Tokenizer.cpp - Hugging Face tokenizer.json (byte-level BPE) -------===//
//
// Follows the `tokenizers` library (Rust) step by step, so that ids agree
// exactly: added tokens are split off first (leftmost-longest, with their
// single_word / lstrip / rstrip rules), each remaining piece goes through the
// pre-tokenizers in order (every one splitting the pieces further: a Split
// finds the pattern's matches and applies its behaviour, ByteLevel maps
// bytes to its printable alphabet), each final piece is merged by BPE
// (lowest merge rank first, leftmost on ties), and the template adds BOS.
//
//===----------------------------------------------------------------------===//
#include "runtime/Tokenizer.h"

#include "runtime/Error.h"
#include "runtime/Safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace dsv3rt {

using json = nlohmann::json;

namespace {
/// GPT-2's byte-to-character table: printable bytes stand for themselves,
/// the others for 256 + n in order.
struct ByteAlphabet {
  char32_t toChar[256];
  std::unordered_map<char32_t, unsigned char> toByte;
  ByteAlphabet() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      toChar[b] = printable ? char32_t(b) : char32_t(256 + n++);
      toByte[toChar[b]] = (unsigned char)b;
    }
  }
};
const ByteAlphabet &byteAlphabet() {
  static const ByteAlphabet table;
  return table;
}

bool isWhitespace(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}
bool isNumeric(char32_t c) { return generalCategory(c)[0] == 'N'; }
/// Rust's char::is_alphanumeric (approximately: letters and numbers) or '_',
/// tokenizers' word characters for single_word added tokens.
bool isWordChar(char32_t c) {
  char g = generalCategory(c)[0];
  return g == 'L' || g == 'N' || c == '_';
}

const char *kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

} // namespace

/// One pre-tokenizer of the sequence.
struct Tokenizer::PreTokenizer {
  enum Kind { Split, ByteLevel, Digits } kind = Split;
  // Split
  std::unique_ptr<Regex> regex;
  std::u32string literal; // a String pattern
  std::string behavior = "Isolated";
  bool invert = false;
  // ByteLevel
  bool addPrefixSpace = false, useRegex = true;
  // Digits
  bool individual = false;

  using Piece = std::u32string;

  /// (span, is match) covering `s`, as tokenizers' find_matches.
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> findMatches(const Piece &s,
                                                                      const Regex *re) const {
    std::vector<std::pair<std::pair<size_t, size_t>, bool>> out;
    if (s.empty())
      return {{{0, 0}, false}};
    size_t prev = 0, from = 0;
    while (from <= s.size()) {
      size_t b = 0, e = 0;
      if (re) {
        if (!re->search(s, from, b, e))
          break;
      } else {
        size_t at = literal.empty() ? Piece::npos : s.find(literal, from);
        if (at == Piece::npos)
          break;
        b = at;
        e = at + literal.size();
      }
      if (prev != b)
        out.push_back({{prev, b}, false});
      out.push_back({{b, e}, true});
      prev = e;
      from = e > b ? e : e + 1; // past an empty match
    }
    if (prev != s.size())
      out.push_back({{prev, s.size()}, false});
    return out;
  }

  /// tokenizers' NormalizedString::split with a behaviour.
  static std::vector<Piece> split(const Piece &s,
                                  std::vector<std::pair<std::pair<size_t, size_t>, bool>> m,
                                  const std::string &behavior, bool invert) {
    if (invert)
      for (auto &x : m)
        x.second = !x.second;
    std::vector<std::pair<size_t, size_t>> spans;
    if (behavior == "Isolated") {
      for (auto &x : m)
        spans.push_back(x.first);
    } else if (behavior == "Removed") {
      for (auto &x : m)
        if (!x.second)
          spans.push_back(x.first);
    } else if (behavior == "MergedWithPrevious") {
      bool previous = false;
      for (auto &x : m) {
        if (x.second && !previous && !spans.empty())
          spans.back().second = x.first.second;
        else
          spans.push_back(x.first);
        previous = x.second;
      }
    } else if (behavior == "MergedWithNext") {
      bool previous = false;
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        if (it->second && !previous && !spans.empty())
          spans.back().first = it->first.first;
        else
          spans.push_back(it->first);
        previous = it->second;
      }
      std::reverse(spans.begin(), spans.end());
    } else { // Contiguous
      bool previous = false;
      for (auto &x : m) {
        if (x.second == previous && !spans.empty())
          spans.back().second = x.first.second;
        else
          spans.push_back(x.first);
        previous = x.second;
      }
    }
    std::vector<Piece> out;
    for (auto [b, e] : spans)
      if (e > b)
        out.push_back(s.substr(b, e - b));
    return out;
  }

  void apply(std::vector<Piece> &pieces) const {
    std::vector<Piece> next;
    for (Piece &p : pieces) {
      std::vector<Piece> parts;
      if (kind == Split) {
        parts = split(p, findMatches(p, regex.get()), behavior, invert);
      } else if (kind == Digits) {
        std::vector<std::pair<std::pair<size_t, size_t>, bool>> m;
        for (size_t i = 0; i < p.size(); ++i)
          m.push_back({{i, i + 1}, isNumeric(p[i])});
        if (individual) {
          parts = split(p, m, "Isolated", false);
        } else {
          // Runs of digits and runs of other characters (Contiguous).
          parts = split(p, m, "Contiguous", false);
        }
      } else { // ByteLevel
        Piece s = p;
        if (addPrefixSpace && (s.empty() || s[0] != ' '))
          s.insert(s.begin(), U' ');
        if (useRegex) {
          static const Regex gpt2(kGpt2Pattern);
          parts = split(s, findMatches(s, &gpt2), "Isolated", false);
        } else if (!s.empty()) {
          parts = {s};
        }
        // Bytes to the printable alphabet.
        for (Piece &part : parts) {
          std::string bytes = codePointsToUtf8(part);
          Piece mapped;
          for (unsigned char b : bytes)
            mapped.push_back(byteAlphabet().toChar[b]);
          part = mapped;
        }
      }
      for (Piece &x : parts)
        next.push_back(std::move(x));
    }
    pieces = std::move(next);
  }
};

namespace {
/// tokenizer.json readers that name the path of what they reject.
[[noreturn]] void refuse(const std::string &file, const std::string &at, const std::string &what) {
  fail("{}: {}: {}", file, at, what);
}

std::shared_ptr<Tokenizer::PreTokenizer> readPre(const std::string &file, const std::string &at,
                                                 const json &j,
                                                 std::vector<std::shared_ptr<Tokenizer::PreTokenizer>> &out) {
  std::string type = j.value("type", "");
  auto p = std::make_shared<Tokenizer::PreTokenizer>();
  if (type == "Sequence") {
    const json &list = j.at("pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) {
      auto sub = readPre(file, at + ".pretokenizers[" + std::to_string(i) + "]", list[i], out);
      if (sub)
        out.push_back(sub);
    }
    return nullptr;
  }
  if (type == "Split") {
    p->kind = Tokenizer::PreTokenizer::Split;
    const json &pat = j.at("pattern");
    if (pat.contains("Regex")) {
      try {
        p->regex = std::make_unique<Regex>(pat["Regex"].get<std::string>());
      } catch (const Error &e) {
        refuse(file, at + ".pattern.Regex", e.what());
      }
    } else if (pat.contains("String")) {
      p->literal = utf8ToCodePoints(pat["String"].get<std::string>(), file);
    } else {
      refuse(file, at + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    p->behavior = j.value("behavior", "Isolated");
    static const char *ok[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext",
                               "Contiguous"};
    if (std::none_of(std::begin(ok), std::end(ok), [&](const char *b) { return p->behavior == b; }))
      refuse(file, at + ".behavior", "unknown split behavior \"" + p->behavior + "\"");
    p->invert = j.value("invert", false);
    return p;
  }
  if (type == "ByteLevel") {
    p->kind = Tokenizer::PreTokenizer::ByteLevel;
    p->addPrefixSpace = j.value("add_prefix_space", false);
    p->useRegex = j.value("use_regex", true);
    return p;
  }
  if (type == "Digits") {
    p->kind = Tokenizer::PreTokenizer::Digits;
    p->individual = j.value("individual_digits", false);
    return p;
  }
  refuse(file, at + ".type",
         "pre-tokenizer \"" + type + "\" is not supported (Sequence, Split, ByteLevel, Digits)");
}
} // namespace

Tokenizer Tokenizer::load(const std::string &where) {
  std::string file = where;
  struct stat st {};
  if (stat(where.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    file = where + "/tokenizer.json";
  json j;
  try {
    j = json::parse(readWholeFile(file));
  } catch (const json::exception &e) {
    fail("{}: not valid JSON: {}", file, e.what());
  }
  Tokenizer t;
  t.path_ = file;
  try {
    const json *norm = j.contains("normalizer") ? &j["normalizer"] : nullptr;
    bool noNormalizer = !norm || norm->is_null() ||
                        (norm->value("type", "") == "Sequence" && norm->contains("normalizers") &&
                         (*norm)["normalizers"].empty()); // DeepSeek-V3's: an empty Sequence
    if (!noNormalizer)
      refuse(file, "normalizer",
             "normalizers are not supported (byte-level BPE tokenizers such as DeepSeek-V3's "
             "have none)");
    const json &model = j.at("model");
    if (model.value("type", "BPE") != "BPE")
      refuse(file, "model.type", "only BPE models are supported");
    for (const char *unsupported : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(unsupported) && !model[unsupported].is_null() &&
          model[unsupported] != "")
        refuse(file, std::string("model.") + unsupported, "is not supported");
    if (model.value("byte_fallback", false))
      refuse(file, "model.byte_fallback", "is not supported (byte-level BPE needs none)");
    t.ignoreMerges_ = model.value("ignore_merges", false);
    if (!model.at("vocab").is_object())
      refuse(file, "model.vocab", "must be an object of token -> id");
    if (!model.at("merges").is_array())
      refuse(file, "model.merges", "must be an array of merges");
    for (auto &[tok, id] : model.at("vocab").items()) {
      if (!id.is_number_integer())
        refuse(file, "model.vocab." + tok, "the id must be an integer");
      int64_t i = id.get<int64_t>();
      if (i < 0)
        refuse(file, "model.vocab." + tok, "negative id");
      t.vocab_[tok] = i;
      if (size_t(i) >= t.idToToken_.size())
        t.idToToken_.resize(size_t(i) + 1);
      t.idToToken_[size_t(i)] = tok;
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = t.vocab_.find(model["unk_token"].get<std::string>());
      if (it != t.vocab_.end())
        t.unk_ = it->second;
    }
    const json &merges = model.at("merges");
    for (size_t r = 0; r < merges.size(); ++r) {
      std::string a, b;
      if (merges[r].is_string()) {
        std::string m = merges[r].get<std::string>();
        size_t sp = m.find(' ', 1);
        if (sp == std::string::npos)
          refuse(file, "model.merges[" + std::to_string(r) + "]", "expected \"left right\"");
        a = m.substr(0, sp);
        b = m.substr(sp + 1);
      } else {
        a = merges[r].at(0).get<std::string>();
        b = merges[r].at(1).get<std::string>();
      }
      auto ia = t.vocab_.find(a), ib = t.vocab_.find(b), iab = t.vocab_.find(a + b);
      if (ia == t.vocab_.end() || ib == t.vocab_.end() || iab == t.vocab_.end())
        refuse(file, "model.merges[" + std::to_string(r) + "]",
               "merges tokens that are not in the vocabulary");
      uint64_t key = (uint64_t(ia->second) << 32) | uint64_t(ib->second);
      t.merges_.emplace(key, std::make_pair(int64_t(r), iab->second));
    }
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      auto p = readPre(file, "pre_tokenizer", j["pre_tokenizer"], t.pre_);
      if (p)
        t.pre_.push_back(p);
    }
    if (j.contains("added_tokens"))
      for (const json &a : j["added_tokens"]) {
        AddedToken at;
        at.id = a.at("id").get<int64_t>();
        at.content = a.at("content").get<std::string>();
        at.singleWord = a.value("single_word", false);
        at.lstrip = a.value("lstrip", false);
        at.rstrip = a.value("rstrip", false);
        at.special = a.value("special", false);
        if (size_t(at.id) >= t.idToToken_.size())
          t.idToToken_.resize(size_t(at.id) + 1);
        t.idToToken_[size_t(at.id)] = at.content;
        t.added_.push_back(at);
      }
    t.special_.assign(t.idToToken_.size(), false);
    for (const AddedToken &a : t.added_)
      t.special_[size_t(a.id)] = a.special;
    // Longest contents first: the leftmost-longest match takes the longest.
    std::stable_sort(t.added_.begin(), t.added_.end(), [](const AddedToken &a, const AddedToken &b) {
      return a.content.size() > b.content.size();
    });
    for (size_t k = 0; k < t.added_.size(); ++k) {
      t.addedCps_.push_back(utf8ToCodePoints(t.added_[k].content, file + ": added token"));
      if (!t.addedCps_.back().empty())
        t.addedByFirst_[t.addedCps_.back()[0]].push_back(k);
    }
    if (j.contains("post_processor") && !j["post_processor"].is_null()) {
      std::vector<json> procs = {j["post_processor"]};
      if (procs[0].value("type", "") == "Sequence")
        procs = j["post_processor"].at("processors").get<std::vector<json>>();
      for (const json &p : procs) {
        std::string type = p.value("type", "");
        if (type == "ByteLevel")
          continue; // offsets only
        if (type != "TemplateProcessing")
          refuse(file, "post_processor.type", "post-processor \"" + type + "\" is not supported");
        bool seenSequence = false;
        for (const json &item : p.at("single")) {
          if (item.contains("Sequence")) {
            seenSequence = true;
            continue;
          }
          std::string name = item.at("SpecialToken").at("id").get<std::string>();
          for (const json &id : p.at("special_tokens").at(name).at("ids"))
            (seenSequence ? t.suffix_ : t.prefix_).push_back(id.get<int64_t>());
        }
      }
    }
    if (j.contains("decoder") && !j["decoder"].is_null()) {
      std::vector<json> decs = {j["decoder"]};
      if (decs[0].value("type", "") == "Sequence")
        decs = j["decoder"].at("decoders").get<std::vector<json>>();
      for (const json &d : decs)
        if (d.value("type", "") != "ByteLevel")
          refuse(file, "decoder.type",
                 "decoder \"" + d.value("type", "") + "\" is not supported (ByteLevel)");
    }
  } catch (const json::exception &e) {
    fail("{}: unexpected structure: {}", file, e.what());
  }
  return t;
}

std::vector<int64_t> Tokenizer::bpe(const std::string &piece) const {
  auto cached = cache_.find(piece);
  if (cached != cache_.end())
    return cached->second;
  std::vector<int64_t> word;
  if (ignoreMerges_) {
    auto whole = vocab_.find(piece);
    if (whole != vocab_.end())
      return cache_[piece] = {whole->second};
  }
  // The piece's characters (the byte-level alphabet), then merges.
  std::u32string cps = utf8ToCodePoints(piece, "token piece");
  for (char32_t c : cps) {
    std::string s;
    appendUtf8(s, c);
    auto it = vocab_.find(s);
    if (it != vocab_.end())
      word.push_back(it->second);
    else if (unk_)
      word.push_back(*unk_);
    else
      fail("{}: the character U+{:04X} is not in the vocabulary and there is no unk_token",
           path_, uint32_t(c));
  }
  while (word.size() > 1) {
    int64_t bestRank = -1, bestId = 0;
    size_t at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto m = merges_.find((uint64_t(word[i]) << 32) | uint64_t(word[i + 1]));
      if (m != merges_.end() && (bestRank < 0 || m->second.first < bestRank)) {
        bestRank = m->second.first;
        bestId = m->second.second;
        at = i;
      }
    }
    if (bestRank < 0)
      break;
    word[at] = bestId;
    word.erase(word.begin() + long(at) + 1);
  }
  if (cache_.size() < 100000)
    cache_[piece] = word;
  return word;
}

void Tokenizer::encodeText(const std::string &text, std::vector<int64_t> &out) const {
  if (text.empty())
    return;
  std::vector<std::u32string> pieces = {utf8ToCodePoints(text, "text to encode")};
  for (const auto &p : pre_)
    p->apply(pieces);
  for (const std::u32string &p : pieces)
    for (int64_t id : bpe(codePointsToUtf8(p)))
      out.push_back(id);
}

std::vector<int64_t> Tokenizer::encode(const std::string &text, bool addSpecial) const {
  std::vector<int64_t> out;
  if (addSpecial)
    out = prefix_;
  // Added tokens first: leftmost-longest matches in code points, each kept
  // or discarded by its single_word rule; lstrip / rstrip take the
  // whitespace beside a match (not past the previous match).
  std::u32string s = utf8ToCodePoints(text, "text to encode");
  const std::vector<std::u32string> &contents = addedCps_;
  size_t done = 0, pos = 0;
  while (pos < s.size()) {
    int found = -1;
    auto candidates = addedByFirst_.find(s[pos]);
    if (candidates != addedByFirst_.end())
      for (size_t k : candidates->second) {
        const std::u32string &c = contents[k];
        if (pos + c.size() > s.size() || s.compare(pos, c.size(), c) != 0)
          continue;
        found = int(k);
        break; // longest first
      }
    if (found < 0) {
      ++pos;
      continue;
    }
    const AddedToken &a = added_[size_t(found)];
    size_t start = pos, stop = pos + contents[size_t(found)].size();
    if (a.singleWord) {
      bool before = start == 0 || !isWordChar(s[start - 1]);
      bool after = stop == s.size() || !isWordChar(s[stop]);
      if (!before || !after) {
        pos = stop; // a discarded match's text stays text
        continue;
      }
    }
    if (a.lstrip)
      while (start > done && isWhitespace(s[start - 1]))
        --start;
    if (a.rstrip)
      while (stop < s.size() && isWhitespace(s[stop]))
        ++stop;
    encodeText(codePointsToUtf8(s.substr(done, start - done)), out);
    out.push_back(a.id);
    done = pos = stop;
  }
  encodeText(codePointsToUtf8(s.substr(done)), out);
  if (addSpecial)
    out.insert(out.end(), suffix_.begin(), suffix_.end());
  return out;
}

bool Tokenizer::isSpecial(int64_t id) const {
  return id >= 0 && size_t(id) < special_.size() && special_[size_t(id)];
}

std::vector<int64_t> Tokenizer::endOfSentenceIds() const {
  static const char *names[] = {"end\u2581of\u2581sentence", "end_of_sentence", "endoftext",
                                "</s>", "eot_id", "<|EOT|>"};
  std::vector<int64_t> ids;
  for (const AddedToken &a : added_)
    if (a.special)
      for (const char *n : names)
        if (a.content.find(n) != std::string::npos) {
          ids.push_back(a.id);
          break;
        }
  return ids;
}

std::string Tokenizer::tokenBytes(int64_t id) const {
  if (id < 0 || size_t(id) >= idToToken_.size())
    return "";
  const std::string &tok = idToToken_[size_t(id)];
  // A token whose characters are all in the byte alphabet stands for those
  // bytes; any other (an added token's content) for its own UTF-8.
  std::string bytes;
  for (char32_t c : utf8ToCodePoints(tok, "token")) {
    auto it = byteAlphabet().toByte.find(c);
    if (it == byteAlphabet().toByte.end())
      return tok;
    bytes.push_back(char(it->second));
  }
  return bytes;
}

std::string Tokenizer::decode(const std::vector<int64_t> &ids, bool skipSpecial) const {
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || size_t(id) >= idToToken_.size() || (skipSpecial && isSpecial(id)))
      continue;
    bytes += tokenBytes(id);
  }
  return utf8Lossy(bytes);
}

std::string TokenStream::push(int64_t id) {
  pending_ += tok_.tokenBytes(id);
  // Emit the longest prefix that ends on a complete UTF-8 sequence.
  size_t end = pending_.size(), i = end;
  size_t back = 0;
  while (i > 0 && back < 4 && (static_cast<unsigned char>(pending_[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++back;
  }
  if (i > 0) {
    unsigned char lead = static_cast<unsigned char>(pending_[i - 1]);
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > back + 1 && lead >= 0xC0)
      end = i - 1; // the last sequence is incomplete: wait for the rest
  }
  std::string out = utf8Lossy(pending_.substr(0, end));
  pending_.erase(0, end);
  return out;
}

std::string TokenStream::finish() {
  std::string out = utf8Lossy(pending_);
  pending_.clear();
  return out;
}

} // namespace dsv3rt
