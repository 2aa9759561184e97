// TLS material and bearer tokens: what the server and the client share.
#pragma once

#include <string>
#include <string_view>

#include "chat/status.h"

namespace chat::internal {

// A certificate or key option is PEM text when it contains "-----BEGIN",
// else the path of a PEM file, read now. kBadArgument names `what` and the
// path when the file cannot be read or holds no PEM. Empty stays empty.
Status LoadPem(std::string_view value, std::string_view what, std::string* out);

// A bearer token we may send: 1..4096 printable ASCII characters, no space.
Status CheckToken(std::string_view token);

// The token of an "authorization" metadata value "Bearer <token>" (the
// scheme case-insensitive), or false when it is not one.
bool BearerToken(std::string_view authorization, std::string* token);

}  // namespace chat::internal
