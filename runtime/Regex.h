//===- Regex.h - the regular expressions of tokenizer.json files --*- C++ -*-===//
//
// Hugging Face tokenizers split text with Oniguruma regular expressions
// (pre-tokenizer `Split` patterns, the GPT-2 pattern of `ByteLevel`). This is
// a backtracking matcher over Unicode code points for the subset those
// patterns use, with Oniguruma's (Ruby syntax) semantics: leftmost-first
// alternation, greedy and lazy quantifiers, `^`/`$` at line boundaries,
// classes with ranges and `\p{..}` general categories (Unicode tables from
// runtime/UnicodeTable.inc), `\s \d \w` in their Unicode meaning, `(?i:..)`
// (simple case folding: ASCII and Latin-1), lookahead `(?=..)` `(?!..)`.
// Anything else (lookbehind, backreferences, possessive quantifiers, script
// properties) is refused when the pattern is parsed, with its position.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_REGEX_H
#define DSV3_RUNTIME_REGEX_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dsv3rt {

/// UTF-8 -> code points; invalid UTF-8 fails naming `what` and the byte
/// offset.
std::u32string utf8ToCodePoints(const std::string &text, const std::string &what);
std::string codePointsToUtf8(const std::u32string &cps);
void appendUtf8(std::string &out, char32_t cp);
/// Bytes -> text, each maximal invalid subsequence replaced by U+FFFD (as
/// Rust's String::from_utf8_lossy, which tokenizers' decoders use).
std::string utf8Lossy(const std::string &bytes);
/// The two-letter Unicode general category ("Lu", ..., "Cn" if unassigned).
const char *generalCategory(char32_t cp);

class Regex {
public:
  /// Parses `pattern`; fails with the position and the construct when it
  /// uses something this matcher does not implement.
  explicit Regex(const std::string &pattern);
  ~Regex();
  Regex(Regex &&) noexcept;
  Regex &operator=(Regex &&) noexcept;

  /// The leftmost match in text[from, end): [begin, end) in code points.
  bool search(const std::u32string &text, size_t from, size_t &begin, size_t &end) const;
  const std::string &pattern() const { return pattern_; }

  struct Node;

private:
  std::string pattern_;
  std::vector<std::unique_ptr<Node>> nodes_;
  int root_ = -1;
};

} // namespace dsv3rt

#endif // DSV3_RUNTIME_REGEX_H
