/* See c_shim.c. */
#ifndef CHAT_FUZZ_C_SHIM_H
#define CHAT_FUZZ_C_SHIM_H

#include <stdint.h>

#include <libchat/chat.h>

#ifdef __cplusplus
extern "C" {
#endif

const char *fuzz_code_name(int32_t raw);
chat_code fuzz_call_fail(chat_call *call, int32_t raw, const char *details, size_t len);

#ifdef __cplusplus
}
#endif

#endif
