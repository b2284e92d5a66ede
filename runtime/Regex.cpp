//===- Regex.cpp - the regular expressions of tokenizer.json files --------===//
#include "runtime/Regex.h"

#include "runtime/Error.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <functional>

namespace dsv3rt {

namespace {
struct CategoryRun {
  uint32_t first, last;
  uint8_t category;
};
#include "runtime/UnicodeTable.inc"
} // namespace

const char *generalCategory(char32_t cp) {
  const CategoryRun *end = kCategoryRuns + sizeof(kCategoryRuns) / sizeof(kCategoryRuns[0]);
  const CategoryRun *it = std::upper_bound(
      kCategoryRuns, end, uint32_t(cp),
      [](uint32_t v, const CategoryRun &r) { return v < r.first; });
  if (it == kCategoryRuns)
    return "Cn";
  --it;
  return cp <= it->last ? kCategoryNames[it->category] : "Cn";
}

void appendUtf8(std::string &out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

std::string codePointsToUtf8(const std::u32string &cps) {
  std::string out;
  for (char32_t c : cps)
    appendUtf8(out, c);
  return out;
}

namespace {
/// The length of the valid UTF-8 sequence at s[i] (1-4), or 0 if the bytes
/// there do not start one; `maximal` receives the length of the maximal
/// prefix of a valid sequence (Unicode's "maximal subpart", at least 1).
int utf8Length(const unsigned char *s, size_t n, size_t i, char32_t &cp, int &maximal) {
  unsigned char c = s[i];
  maximal = 1;
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  int len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0F;
    if (c == 0xE0)
      lo = 0xA0;
    if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07;
    if (c == 0xF0)
      lo = 0x90;
    if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= n)
      return 0;
    unsigned char b = s[i + k];
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF))
      return 0;
    cp = (cp << 6) | (b & 0x3F);
    maximal = k + 1;
  }
  return len;
}
} // namespace

std::u32string utf8ToCodePoints(const std::string &text, const std::string &what) {
  std::u32string out;
  const auto *s = reinterpret_cast<const unsigned char *>(text.data());
  for (size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    int maximal = 1;
    int len = utf8Length(s, text.size(), i, cp, maximal);
    if (len == 0)
      fail("{}: invalid UTF-8 at byte {}", what, i);
    out.push_back(cp);
    i += size_t(len);
  }
  return out;
}

std::string utf8Lossy(const std::string &bytes) {
  std::string out;
  const auto *s = reinterpret_cast<const unsigned char *>(bytes.data());
  for (size_t i = 0; i < bytes.size();) {
    char32_t cp = 0;
    int maximal = 1;
    int len = utf8Length(s, bytes.size(), i, cp, maximal);
    if (len == 0) {
      out += "\xEF\xBF\xBD"; // U+FFFD for the maximal subpart
      i += size_t(maximal);
    } else {
      out.append(bytes, i, size_t(len));
      i += size_t(len);
    }
  }
  return out;
}

namespace {
bool isSpace(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}
bool isDigit(char32_t c) { return std::strcmp(generalCategory(c), "Nd") == 0; }
bool isWord(char32_t c) {
  const char *g = generalCategory(c);
  return g[0] == 'L' || g[0] == 'M' || std::strcmp(g, "Nd") == 0 || std::strcmp(g, "Pc") == 0;
}
/// Simple case folding: ASCII and Latin-1 letters.
char32_t fold(char32_t c) {
  if (c >= 'A' && c <= 'Z')
    return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
    return c + 32;
  return c;
}
} // namespace

struct Regex::Node {
  enum Kind { Char, Class, Any, Concat, Alt, Repeat, Look, LineStart, LineEnd, TextStart, TextEnd };
  Kind kind = Char;
  char32_t c = 0;
  bool ci = false;
  // Class: ranges, general-category prefixes ("L", "Nd"), named sets.
  std::vector<std::pair<char32_t, char32_t>> ranges;
  std::vector<std::pair<std::string, bool>> categories; // (prefix, negated)
  std::vector<std::pair<char, bool>> sets;              // ('s' | 'd' | 'w', negated)
  bool negated = false;
  std::vector<int> kids;
  int min = 0, max = -1; // Repeat; max -1: unbounded
  bool greedy = true;
  bool negative = false; // Look

  bool matchesChar(char32_t x) const {
    if (kind == Any)
      return x != '\n';
    if (kind == Char)
      return ci ? fold(x) == fold(c) : x == c;
    bool in = false;
    for (auto [a, b] : ranges)
      if ((x >= a && x <= b) || (ci && fold(x) >= fold(a) && fold(x) <= fold(b) &&
                                 a >= 'A' && b <= 0xFF))
        in = true;
    if (!in)
      for (auto &[prefix, neg] : categories)
        if ((std::strncmp(generalCategory(x), prefix.c_str(), prefix.size()) == 0) != neg)
          in = true;
    if (!in)
      for (auto [set, neg] : sets) {
        bool m = set == 's' ? isSpace(x) : set == 'd' ? isDigit(x) : isWord(x);
        if (m != neg)
          in = true;
      }
    return in != negated;
  }
  bool singleChar() const { return kind == Char || kind == Class || kind == Any; }
};

namespace {
class Parser {
public:
  Parser(const std::string &pattern, std::vector<std::unique_ptr<Regex::Node>> &nodes)
      : src(pattern), p(utf8ToCodePoints(pattern, "regex \"" + pattern + "\"")), nodes(nodes) {}

  int parse() {
    int root = alt(false);
    if (i != p.size())
      error("unbalanced ')'");
    return root;
  }

private:
  const std::string &src;
  std::u32string p;
  size_t i = 0;
  std::vector<std::unique_ptr<Regex::Node>> &nodes;

  [[noreturn]] void error(const std::string &what) const {
    fail("tokenizer regex \"{}\": {} at character {}", src, what, i + 1); // 1-based
  }
  int add(Regex::Node n) {
    nodes.push_back(std::make_unique<Regex::Node>(std::move(n)));
    return int(nodes.size() - 1);
  }
  bool more() const { return i < p.size(); }

  int alt(bool ci) {
    std::vector<int> branches = {concat(ci)};
    while (more() && p[i] == '|') {
      ++i;
      branches.push_back(concat(ci));
    }
    if (branches.size() == 1)
      return branches[0];
    Regex::Node n;
    n.kind = Regex::Node::Alt;
    n.kids = branches;
    return add(std::move(n));
  }

  int concat(bool ci) {
    Regex::Node n;
    n.kind = Regex::Node::Concat;
    while (more() && p[i] != '|' && p[i] != ')')
      n.kids.push_back(repeat(ci));
    return add(std::move(n));
  }

  long number() {
    long v = 0;
    bool any = false;
    while (more() && p[i] >= '0' && p[i] <= '9') {
      v = v * 10 + long(p[i++] - '0');
      any = true;
    }
    return any ? v : -1;
  }

  int repeat(bool ci) {
    int atom = this->atom(ci);
    while (more()) {
      int lo, hi;
      size_t save = i;
      if (p[i] == '*') {
        lo = 0, hi = -1, ++i;
      } else if (p[i] == '+') {
        lo = 1, hi = -1, ++i;
      } else if (p[i] == '?') {
        lo = 0, hi = 1, ++i;
      } else if (p[i] == '{') {
        ++i;
        long a = number(), b = a;
        if (more() && p[i] == ',') {
          ++i;
          b = number();
        }
        if (a < 0 || !more() || p[i] != '}') {
          i = save; // a literal '{' (Oniguruma's reading too)
          return atom;
        }
        ++i;
        lo = int(a), hi = int(b);
      } else {
        return atom;
      }
      Regex::Node n;
      n.kind = Regex::Node::Repeat;
      n.kids = {atom};
      n.min = lo;
      n.max = hi;
      if (more() && p[i] == '?') {
        n.greedy = false;
        ++i;
      } else if (more() && p[i] == '+') {
        error("possessive quantifiers are not supported");
      }
      atom = add(std::move(n));
    }
    return atom;
  }

  int atom(bool ci) {
    char32_t c = p[i];
    Regex::Node n;
    if (c == '(') {
      ++i;
      bool inner = ci;
      if (more() && p[i] == '?') {
        ++i;
        if (!more())
          error("unterminated group");
        if (p[i] == ':') {
          ++i;
        } else if (p[i] == '=' || p[i] == '!') {
          n.kind = Regex::Node::Look;
          n.negative = p[i] == '!';
          ++i;
          n.kids = {alt(ci)};
          expect(')');
          return add(std::move(n));
        } else if (p[i] == 'i' && i + 1 < p.size() && p[i + 1] == ':') {
          inner = true;
          i += 2;
        } else {
          error("this group kind (lookbehind, named or inline flags) is not supported");
        }
      }
      int body = alt(inner);
      expect(')');
      return body;
    }
    ++i;
    switch (c) {
    case '.':
      n.kind = Regex::Node::Any;
      return add(std::move(n));
    case '^':
      n.kind = Regex::Node::LineStart;
      return add(std::move(n));
    case '$':
      n.kind = Regex::Node::LineEnd;
      return add(std::move(n));
    case '[':
      return cls(ci);
    case '\\':
      return escape(ci, false, nullptr);
    case '*':
    case '+':
    case '?':
      error("nothing to repeat");
    default:
      n.kind = Regex::Node::Char;
      n.c = c;
      n.ci = ci;
      return add(std::move(n));
    }
  }

  void expect(char32_t c) {
    if (!more() || p[i] != c)
      error(std::string("expected '") + char(c) + "'");
    ++i;
  }

  char32_t hex(size_t digits) {
    char32_t v = 0;
    for (size_t k = 0; k < digits; ++k) {
      if (!more() || !std::isxdigit(int(p[i])))
        error("bad hex escape");
      char32_t d = p[i++];
      v = v * 16 + (d <= '9' ? d - '0' : (d | 0x20) - 'a' + 10);
    }
    return v;
  }

  /// After a backslash: a node (in a class: adds to `into` and returns -1,
  /// or returns the code point through `literal`).
  int escape(bool ci, bool inClass, Regex::Node *into, char32_t *literal = nullptr) {
    if (!more())
      error("trailing backslash");
    char32_t c = p[i++];
    Regex::Node n;
    n.kind = Regex::Node::Class;
    n.ci = ci;
    auto done = [&]() -> int {
      if (inClass) {
        into->ranges.insert(into->ranges.end(), n.ranges.begin(), n.ranges.end());
        into->categories.insert(into->categories.end(), n.categories.begin(),
                                n.categories.end());
        into->sets.insert(into->sets.end(), n.sets.begin(), n.sets.end());
        return -1;
      }
      return add(std::move(n));
    };
    switch (c) {
    case 's': case 'S': case 'd': case 'D': case 'w': case 'W':
      n.sets.push_back({char(c | 0x20), c < 'a'});
      return done();
    case 'p':
    case 'P': {
      std::string name;
      if (more() && p[i] == '{') {
        ++i;
        bool neg = false;
        if (more() && p[i] == '^') {
          neg = true;
          ++i;
        }
        while (more() && p[i] != '}')
          name.push_back(char(p[i++]));
        expect('}');
        if (neg)
          c = c == 'p' ? 'P' : 'p';
      } else if (more()) {
        name.push_back(char(p[i++]));
      }
      static const char *known[] = {"L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me",
                                    "N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Ps", "Pe", "Pi",
                                    "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl",
                                    "Zp", "C", "Cc", "Cf", "Cs", "Co", "Cn"};
      bool ok = false;
      for (const char *k : known)
        ok = ok || name == k;
      if (!ok)
        error("unsupported property \\p{" + name + "} (general categories only)");
      n.categories.push_back({name, c == 'P'});
      return done();
    }
    case 'A':
    case 'z':
    case 'Z':
      if (inClass)
        error("anchor inside a class");
      n.kind = c == 'A' ? Regex::Node::TextStart : Regex::Node::TextEnd;
      return add(std::move(n));
    default:
      break;
    }
    char32_t lit;
    switch (c) {
    case 'n': lit = '\n'; break;
    case 'r': lit = '\r'; break;
    case 't': lit = '\t'; break;
    case 'f': lit = '\f'; break;
    case 'v': lit = '\v'; break;
    case 'e': lit = 0x1B; break;
    case '0': lit = 0; break;
    case 'x':
      if (more() && p[i] == '{') {
        ++i;
        lit = 0;
        while (more() && p[i] != '}')
          lit = lit * 16 + hex(1);
        expect('}');
      } else {
        lit = hex(2);
      }
      break;
    case 'u': lit = hex(4); break;
    default:
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9'))
        error(std::string("unsupported escape \\") + char(c));
      lit = c; // an escaped punctuation character
    }
    if (inClass) {
      *literal = lit;
      return -2;
    }
    n.kind = Regex::Node::Char;
    n.c = lit;
    return add(std::move(n));
  }

  int cls(bool ci) {
    Regex::Node n;
    n.kind = Regex::Node::Class;
    n.ci = ci;
    if (more() && p[i] == '^') {
      n.negated = true;
      ++i;
    }
    bool first = true;
    while (true) {
      if (!more())
        error("unterminated character class");
      char32_t c = p[i];
      if (c == ']' && !first) {
        ++i;
        break;
      }
      first = false;
      if (c == '[')
        error("nested classes are not supported");
      if (c == '&' && i + 1 < p.size() && p[i + 1] == '&')
        error("class intersections are not supported");
      ++i;
      char32_t lo;
      if (c == '\\') {
        if (escape(ci, true, &n, &lo) == -1)
          continue; // a set or property went into n
      } else {
        lo = c;
      }
      char32_t hi = lo;
      if (i + 1 < p.size() && p[i] == '-' && p[i + 1] != ']') {
        ++i;
        char32_t d = p[i++];
        if (d == '\\') {
          if (escape(ci, true, &n, &hi) == -1)
            error("a range cannot end in a set");
        } else {
          hi = d;
        }
        if (hi < lo)
          error("range out of order");
      }
      n.ranges.push_back({lo, hi});
    }
    return add(std::move(n));
  }
};

struct Matcher {
  const std::vector<std::unique_ptr<Regex::Node>> &nodes;
  const std::u32string &t;
  using Cont = std::function<bool(size_t)>;

  bool match(int id, size_t pos, const Cont &k) const {
    const Regex::Node &n = *nodes[size_t(id)];
    switch (n.kind) {
    case Regex::Node::Char:
    case Regex::Node::Class:
    case Regex::Node::Any:
      return pos < t.size() && n.matchesChar(t[pos]) && k(pos + 1);
    case Regex::Node::Concat:
      return seq(n, 0, pos, k);
    case Regex::Node::Alt:
      for (int kid : n.kids)
        if (match(kid, pos, k))
          return true;
      return false;
    case Regex::Node::Repeat:
      return repeat(n, 0, pos, k);
    case Regex::Node::Look: {
      bool found = match(n.kids[0], pos, [](size_t) { return true; });
      return found != n.negative && k(pos);
    }
    case Regex::Node::LineStart:
      return (pos == 0 || t[pos - 1] == '\n') && k(pos);
    case Regex::Node::LineEnd:
      return (pos == t.size() || t[pos] == '\n') && k(pos);
    case Regex::Node::TextStart:
      return pos == 0 && k(pos);
    case Regex::Node::TextEnd:
      return pos == t.size() && k(pos);
    }
    return false;
  }

  bool seq(const Regex::Node &n, size_t i, size_t pos, const Cont &k) const {
    if (i == n.kids.size())
      return k(pos);
    return match(n.kids[i], pos, [&](size_t p) { return seq(n, i + 1, p, k); });
  }

  bool repeat(const Regex::Node &n, int count, size_t pos, const Cont &k) const {
    const Regex::Node &kid = *nodes[size_t(n.kids[0])];
    if (kid.singleChar()) {
      // One character an iteration: count the run, then try its lengths
      // (longest first when greedy) without recursing per character.
      size_t run = 0, cap = n.max < 0 ? t.size() - pos : size_t(n.max);
      while (run < cap && pos + run < t.size() && kid.matchesChar(t[pos + run]))
        ++run;
      if (run < size_t(n.min))
        return false;
      if (n.greedy) {
        for (size_t r = run + 1; r-- > size_t(n.min);)
          if (k(pos + r))
            return true;
      } else {
        for (size_t r = size_t(n.min); r <= run; ++r)
          if (k(pos + r))
            return true;
      }
      return false;
    }
    bool canMore = n.max < 0 || count < n.max;
    auto more = [&]() {
      return canMore && match(n.kids[0], pos, [&](size_t p) {
               if (p == pos && count >= n.min)
                 return false; // an empty iteration ends the loop
               return repeat(n, count + 1, p, k);
             });
    };
    if (n.greedy)
      return more() || (count >= n.min && k(pos));
    return (count >= n.min && k(pos)) || more();
  }
};
} // namespace

Regex::Regex(const std::string &pattern) : pattern_(pattern) {
  Parser parser(pattern, nodes_);
  root_ = parser.parse();
}
Regex::~Regex() = default;
Regex::Regex(Regex &&) noexcept = default;
Regex &Regex::operator=(Regex &&) noexcept = default;

bool Regex::search(const std::u32string &text, size_t from, size_t &begin, size_t &end) const {
  Matcher m{nodes_, text};
  for (size_t start = from; start <= text.size(); ++start) {
    size_t found = 0;
    if (m.match(root_, start, [&](size_t p) {
          found = p;
          return true;
        })) {
      begin = start;
      end = found;
      return true;
    }
  }
  return false;
}

} // namespace dsv3rt
