#!/usr/bin/env python3
"""Makes the tokenizer test data with the `tokenizers` library (PyPI), so
that dsv3's own tokenizer (runtime/Tokenizer.cpp) is checked id for id
against it. Run here when the cases change (the outputs are committed, so
the test needs no PyPI package):

    python3 test/Tokenizer/make_tokenizers.py

Trains byte-level BPE tokenizers on a real corpus (this repository's docs
and sources, plus test/Tokenizer/Inputs/multilingual.txt: CJK, Cyrillic,
Greek, Arabic, Devanagari, accents, emoji):

  deepseek-v3-like  DeepSeek-V3's tokenizer.json configuration: its three
                    Split pre-tokenizer patterns (numbers of 1-3 digits,
                    CJK/kana runs, the letters/punctuation/whitespace
                    pattern), ByteLevel without its regex, an empty
                    normalizer Sequence, its special tokens (BOS, EOS, pad:
                    special; <｜User｜>, <｜Assistant｜>: added, not special),
                    the BOS template, the ByteLevel decoder. vocab 4000.
  gpt2-like         GPT-2's ByteLevel pre-tokenizer (its regex, a prefix
                    space), Digits, ignore_merges, and added tokens with the
                    lstrip / rstrip / single_word rules. vocab 1500.
  tiny              the DeepSeek-V3 configuration with 500 ids, for
                    generating text with the tiny test models (vocab 512).

and writes, per tokenizer, expected-NAME.jsonl: for each case of
Inputs/cases.txt (one a line; \\n \\t \\r \\uXXXX escapes), the ids of
encode(text) (with the template) and, for each case and for random id
lists (which split multi-byte characters: U+FFFD), decode(ids) with and
without special tokens.
"""
import json
import os
import random
import re

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# DeepSeek-V3's tokenizer.json pre-tokenizer patterns, verbatim.
DS_PATTERNS = [
    r"\p{N}{1,3}",
    "[一-龥\u3040-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]
BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"


def corpus_files():
    files = [os.path.join(HERE, "Inputs", "multilingual.txt")]
    for top in ("docs", "runtime", "passes", "models", "bench", "scripts"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            for n in sorted(names):
                if n.endswith((".md", ".cpp", ".h", ".py", ".td", ".sh")) and "generated" not in dirpath:
                    files.append(os.path.join(dirpath, n))
    return sorted(files)


def deepseek_like(vocab):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in DS_PATTERNS] +
        [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train(corpus_files(), trainer)
    tok.add_tokens([AddedToken("<｜User｜>", special=False, normalized=True),
                    AddedToken("<｜Assistant｜>", special=False, normalized=True)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return tok


def gpt2_like(vocab):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=False),
         pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train(corpus_files(), trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True),
                            AddedToken("[SEP]", rstrip=True, special=True)])
    tok.add_tokens([AddedToken("word", single_word=True, special=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def unescape(line):
    line = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), line)
    return line.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")


def dump(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def main():
    with open(os.path.join(HERE, "Inputs", "cases.txt"), encoding="utf-8") as f:
        cases = [unescape(l.rstrip("\n")) for l in f]
    with open(os.path.join(HERE, "Inputs", "cases.jsonl"), "w", encoding="utf-8") as f:
        for c in cases:
            f.write(dump({"text": c}) + "\n")
    for name, tok in (("deepseek-v3-like", deepseek_like(4000)), ("gpt2-like", gpt2_like(1500)),
                      ("tiny", deepseek_like(500))):
        out = os.path.join(HERE, "Inputs", name)
        os.makedirs(out, exist_ok=True)
        tok.save(os.path.join(out, "tokenizer.json"))
        rng = random.Random(7)
        n = tok.get_vocab_size(with_added_tokens=True)
        id_lists = [tok.encode(c).ids for c in cases]
        id_lists += [[rng.randrange(n) for _ in range(rng.randrange(1, 12))] for _ in range(40)]
        with open(os.path.join(HERE, "Inputs", f"encode-{name}.jsonl"), "w", encoding="utf-8") as f:
            for c in cases:
                f.write(dump({"ids": tok.encode(c).ids}) + "\n")
        with open(os.path.join(HERE, "Inputs", f"ids-{name}.jsonl"), "w", encoding="utf-8") as f:
            for ids in id_lists:
                f.write(dump({"ids": ids}) + "\n")
        with open(os.path.join(HERE, "Inputs", f"decode-{name}.jsonl"), "w", encoding="utf-8") as f:
            for ids in id_lists:
                f.write(dump({"text": tok.decode(ids, skip_special_tokens=False),
                              "text_skip_special": tok.decode(ids, skip_special_tokens=True)}) + "\n")
        print(f"{name}: {n} ids, {len(cases)} cases, {len(id_lists)} id lists")


if __name__ == "__main__":
    main()
