#include "chat/status.h"

#include <cstdint>
#include <cstring>

namespace chat {

const char* CodeName(Code code) {
  switch (code) {
#define CHAT_CODE_NAME(core, c, number, name) \
  case Code::core:                            \
    return name;
    CHAT_CODE_TABLE(CHAT_CODE_NAME)
#undef CHAT_CODE_NAME
  }
  return "UNRECOGNIZED";
}

// Follows the Unicode well-formedness table (no overlongs, no surrogates,
// nothing above U+10FFFF), the same rule protobuf applies to proto3 strings.
bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    // Runs of ASCII, the usual text, 8 bytes at a time.
    while (end - p >= 8) {
      uint64_t word;
      std::memcpy(&word, p, sizeof word);
      if (word & 0x8080808080808080u) break;
      p += 8;
    }
    if (p == end) break;
    unsigned char c = *p;
    if (c < 0x80) { ++p; continue; }
    int extra;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) { extra = 1; }
    else if (c == 0xE0) { extra = 2; lo = 0xA0; }
    else if (c == 0xED) { extra = 2; hi = 0x9F; }
    else if (c >= 0xE1 && c <= 0xEF) { extra = 2; }
    else if (c == 0xF0) { extra = 3; lo = 0x90; }
    else if (c == 0xF4) { extra = 3; hi = 0x8F; }
    else if (c >= 0xF1 && c <= 0xF3) { extra = 3; }
    else { return false; }
    if (end - p <= extra) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (int i = 2; i <= extra; ++i) {
      if (p[i] < 0x80 || p[i] > 0xBF) return false;
    }
    p += extra + 1;
  }
  return true;
}

}  // namespace chat
