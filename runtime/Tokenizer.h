//===- Tokenizer.h - Hugging Face tokenizer.json (byte-level BPE) -*- C++ -*-===//
//
// Text in, text out for `dsv3-run generate --tokenizer`: loads the
// tokenizer.json that DeepSeek-V3 (and GPT-2, Llama 3, Qwen) ship — a
// byte-level BPE model, a pre-tokenizer of `Split` regular expressions,
// `Digits` and `ByteLevel`, added/special tokens with their lstrip/rstrip/
// single_word rules, a `TemplateProcessing` post-processor (the BOS token)
// and the `ByteLevel` decoder — and encodes and decodes exactly as the
// `tokenizers` library does (checked id for id in test/Tokenizer). Anything
// else in the file (normalizers, other models or decoders) is refused with
// the JSON path that holds it.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_TOKENIZER_H
#define DSV3_RUNTIME_TOKENIZER_H

#include "runtime/Regex.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace dsv3rt {

class Tokenizer {
public:
  /// A tokenizer.json file, or a directory holding one.
  static Tokenizer load(const std::string &path);

  /// Token ids of `text` (UTF-8); with addSpecial, the post-processor's
  /// template (e.g. the BOS token) as `tokenizers`' encode(text) adds it.
  std::vector<int64_t> encode(const std::string &text, bool addSpecial = true) const;
  /// Text of `ids` (invalid UTF-8 from partial byte tokens becomes U+FFFD,
  /// as in `tokenizers`); skipSpecial drops special tokens.
  std::string decode(const std::vector<int64_t> &ids, bool skipSpecial = false) const;
  /// The raw bytes token `id` stands for (byte-level decoded; an added
  /// token's content), for streaming: print them once they form complete
  /// UTF-8.
  std::string tokenBytes(int64_t id) const;
  bool isSpecial(int64_t id) const;
  /// The special tokens that end a generated sequence: those named like an
  /// end of sentence or text (DeepSeek's <｜end▁of▁sentence｜>, GPT-2's
  /// <|endoftext|>, </s>, <|eot_id|>, <|EOT|>).
  std::vector<int64_t> endOfSentenceIds() const;
  int64_t vocabSize() const { return int64_t(idToToken_.size()); }
  const std::string &path() const { return path_; }

  struct PreTokenizer;
  struct AddedToken {
    int64_t id = 0;
    std::string content;
    bool singleWord = false, lstrip = false, rstrip = false, special = false;
  };

private:
  std::string path_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> idToToken_;
  /// (left id, right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int64_t, int64_t>> merges_;
  std::optional<int64_t> unk_;
  bool ignoreMerges_ = false;
  std::vector<std::shared_ptr<PreTokenizer>> pre_;
  std::vector<AddedToken> added_;
  /// The added tokens' contents in code points, and, by first code point,
  /// which of them start with it (longest first): the scan for added tokens
  /// looks only at those (DeepSeek-V3's 818 all start with '<').
  std::vector<std::u32string> addedCps_;
  std::unordered_map<char32_t, std::vector<size_t>> addedByFirst_;
  std::vector<bool> special_;
  /// The post-processor's single-sequence template: ids before and after.
  std::vector<int64_t> prefix_, suffix_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;

  std::vector<int64_t> bpe(const std::string &piece) const;
  void encodeText(const std::string &text, std::vector<int64_t> &out) const;
};

/// Incremental decoding for streamed output: feed token ids, get the text
/// that is complete so far (bytes of a character split across tokens wait
/// for the rest).
class TokenStream {
public:
  explicit TokenStream(const Tokenizer &t) : tok_(t) {}
  std::string push(int64_t id);
  /// What is left at the end (an incomplete sequence, as U+FFFD).
  std::string finish();

private:
  const Tokenizer &tok_;
  std::string pending_;
};

} // namespace dsv3rt

#endif // DSV3_RUNTIME_TOKENIZER_H
