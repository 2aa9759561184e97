// Counters of a server or a client, read as one snapshot.
#pragma once

#include <cstdint>

namespace chat {

// Message bytes are those of the encoded protobuf message, before any
// compression and without gRPC's 5-byte frame header.
struct Stats {
  uint64_t streams_open = 0;     // admitted (server) / opened (client), not yet ended
  uint64_t streams_total = 0;    // ever admitted / opened
  // Server: new streams refused (memory bound, max_streams, stopping).
  // Client: streams that ended RESOURCE_EXHAUSTED or UNAVAILABLE before any reply.
  uint64_t streams_refused = 0;
  // Server: streams it cut (a stop's deadline, the memory bound, a room's
  // slow reader). Client: other streams that ended with an error the client
  // did not cause by cancelling.
  uint64_t streams_cut = 0;
  uint64_t messages_in = 0;
  uint64_t messages_out = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
};

}  // namespace chat
