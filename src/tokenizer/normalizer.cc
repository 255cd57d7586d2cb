#include "tokenizer/normalizer.h"

#include <algorithm>
#include <cstring>

namespace tsumugi::tokenizer {

Normalizer::Normalizer(const NormalizerSpec& spec, bool treat_whitespace_as_suffix, const Trie* user_defined,
                       const std::string& origin)
    : map_(spec.charsmap(), origin),
      user_(user_defined && !user_defined->empty() ? user_defined : nullptr),
      add_dummy_prefix_(spec.add_dummy_prefix_or_default()),
      remove_extra_whitespaces_(spec.remove_extra_whitespaces_or_default()),
      escape_whitespaces_(spec.escape_whitespaces_or_default()),
      suffix_(treat_whitespace_as_suffix) {
  for (int b = 0; b < 0x80; ++b) {
    const char ch = char(b);
    const bool user_starts = user_ && user_->child(0, uint8_t(b)) >= 0;
    bool plain = map_.empty() || map_.no_rule_starts_with(uint8_t(b));
    if (user_starts) plain = false;
    plain_[b] = plain;
    ascii_cont_[b] = CharsMap::kNoPos;
    bool leaf = false;
    const size_t pos = map_.walk(std::string_view(&ch, 1), &leaf);
    if (!plain && !user_starts && pos != CharsMap::kNoPos && !leaf) ascii_cont_[b] = pos;
  }
  for (uint32_t cp = 0x80; cp < 0x10000; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    char buf[3];
    size_t n;
    if (cp < 0x800) {
      buf[0] = char(0xC0 | (cp >> 6));
      buf[1] = char(0x80 | (cp & 0x3F));
      n = 2;
    } else {
      buf[0] = char(0xE0 | (cp >> 12));
      buf[1] = char(0x80 | ((cp >> 6) & 0x3F));
      buf[2] = char(0x80 | (cp & 0x3F));
      n = 3;
    }
    const std::string_view bytes(buf, n);
    if (user_ && user_->reachable(bytes)) continue;
    if (!map_.reachable(bytes)) {
      plain_bmp_[cp >> 6] |= uint64_t(1) << (cp & 63);
      continue;
    }
    // Only the start of longer rules: no rule ends inside or at the end of the character.
    bool leaf_inside = false, leaf = false;
    for (size_t i = 1; i < n && !leaf_inside; ++i) map_.walk(bytes.substr(0, i), &leaf_inside);
    if (!leaf_inside && map_.walk(bytes, &leaf) != CharsMap::kNoPos && !leaf)
      cont_bmp_[cp >> 6] |= uint64_t(1) << (cp & 63);
  }
}

size_t Normalizer::prefix(const char* p, const char* end, std::string_view* rep) const {
  if (user_) {
    size_t n = user_->longest_prefix(std::string_view(p, size_t(end - p)));
    if (n > 0) {
      *rep = std::string_view(p, n);
      return n;
    }
  }
  if (!map_.empty()) {
    size_t n = map_.longest_match(p, end, rep);
    if (n > 0) return n;
  }
  size_t n = valid_utf8_len(p, end);
  if (n == 0) {
    *rep = kReplacementChar;
    return 1;
  }
  *rep = std::string_view(p, n);
  return n;
}

void Normalizer::normalize(std::string_view input, std::string& out) const {
  out.clear();
  const char* p = input.data();
  const char* const end = p + input.size();
  if (p == end) return;

  std::string_view rep;
  if (remove_extra_whitespaces_) {
    while (p < end) {
      size_t n = plain_[uint8_t(*p)] ? (rep = std::string_view(p, 1), 1) : prefix(p, end, &rep);
      if (rep != " ") break;
      p += n;
    }
    if (p == end) return;
  }

  // The output is written through a raw cursor. Invariant: the room left is at least three
  // bytes per unread input byte plus 16, which covers plain characters (at most '\x20' -> U+2581)
  // and the dummy prefix; rule replacements, which can be longer, make room first.
  size_t cap = input.size() * 3 + 16;
  out.resize(cap);
  char* w = out.data();
  auto make_room = [&](size_t more, size_t unread) {
    const size_t used = size_t(w - out.data());
    if (used + more + unread * 3 + 16 > cap) {
      cap = std::max(cap * 2, used + more + unread * 3 + 16);
      out.resize(cap);
      w = out.data() + used;
    }
  };
  auto put_space = [&]() {
    if (escape_whitespaces_) {
      std::memcpy(w, kSpaceSymbol.data(), 3);
      w += 3;
    } else {
      *w++ = ' ';
    }
  };

  if (!suffix_ && add_dummy_prefix_) put_space();

  bool prev_space = remove_extra_whitespaces_;
  const bool remove = remove_extra_whitespaces_;
  while (p < end) {
    const uint8_t c = uint8_t(*p);
    if (c < 0x80) {
      const size_t cont = ascii_cont_[c];
      if (plain_[c] || (cont != CharsMap::kNoPos && (p + 1 == end || !map_.continues(cont, uint8_t(p[1]))))) {
        // Single ASCII byte that stands for itself: the common case.
        if (c == ' ') {
          if (!prev_space) put_space();
          prev_space = remove;
        } else {
          *w++ = char(c);
          prev_space = false;
        }
        ++p;
        continue;
      }
    } else if (c >= 0xC2 && c < 0xF0) {
      // A well-formed 2- or 3-byte character with no rule of its own: copied as is.
      const size_t avail = size_t(end - p);
      uint32_t cp = 0;
      size_t n = 0;
      if (c < 0xE0) {
        if (avail >= 2 && (uint8_t(p[1]) & 0xC0) == 0x80) {
          cp = ((c & 0x1Fu) << 6) | (uint8_t(p[1]) & 0x3Fu);
          n = 2;
        }
      } else if (avail >= 3 && (uint8_t(p[1]) & 0xC0) == 0x80 && (uint8_t(p[2]) & 0xC0) == 0x80) {
        cp = ((c & 0x0Fu) << 12) | ((uint8_t(p[1]) & 0x3Fu) << 6) | (uint8_t(p[2]) & 0x3Fu);
        if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) n = 3;
      }
      bool self = false;
      if (n) {
        if (plain_cp(cp)) {
          self = true;
        } else if (cont_cp(cp)) {
          bool leaf;
          const size_t pos = map_.walk(std::string_view(p, n), &leaf);
          self = p + n == end || !map_.continues(pos, uint8_t(p[n]));
        }
      }
      if (self) {
        std::memcpy(w, p, n);
        w += n;
        p += n;
        prev_space = false;
        continue;
      }
    }
    size_t n = prefix(p, end, &rep);
    if (prev_space)
      while (!rep.empty() && rep.front() == ' ') rep.remove_prefix(1);
    if (!rep.empty()) {
      make_room(rep.size() * 3, size_t(end - p) - n);
      for (char ch : rep) {
        if (ch == ' ' && escape_whitespaces_) {
          std::memcpy(w, kSpaceSymbol.data(), 3);
          w += 3;
        } else {
          *w++ = ch;
        }
      }
      prev_space = rep.back() == ' ';
    }
    p += n;
    if (!remove) prev_space = false;
  }

  size_t len = size_t(w - out.data());
  if (remove) {
    const std::string_view space = escape_whitespaces_ ? kSpaceSymbol : std::string_view(" ");
    while (len >= space.size() && std::string_view(out.data() + len - space.size(), space.size()) == space)
      len -= space.size();
  }
  out.resize(len);
  if (suffix_ && add_dummy_prefix_) {
    if (escape_whitespaces_)
      out.append(kSpaceSymbol);
    else
      out.push_back(' ');
  }
}

}  // namespace tsumugi::tokenizer
