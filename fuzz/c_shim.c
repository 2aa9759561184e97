/* Calls that pass an arbitrary int as a chat_code. In C that is what a
 * caller may do; in C++ loading an out-of-range enum value is undefined (and
 * UBSan says so), so the C++ fuzz target goes through these. */
#include <stdint.h>

#include "c_shim.h"

const char *fuzz_code_name(int32_t raw) { return chat_code_name((chat_code)raw); }

chat_code fuzz_call_fail(chat_call *call, int32_t raw, const char *details, size_t len) {
  return chat_call_fail(call, (chat_code)raw, details, len);
}
