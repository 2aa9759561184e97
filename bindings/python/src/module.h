// The pieces PYBIND11_MODULE(_pychat) is assembled from.
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>

#include <libchat/chat.h>

namespace pychat {

// Seconds from Python to the C ABI's milliseconds, capped at 1e11 ms (about
// three years), far below where int64 arithmetic could overflow.
inline int64_t to_ms(double seconds) { return std::llround(std::min(seconds * 1000.0, 1e11)); }

// A server's or client's counters, in pychat.Stats's field order.
inline pybind11::tuple stats_tuple(const chat_stats& s) {
  return pybind11::make_tuple(s.streams_open, s.streams_total, s.streams_refused, s.streams_cut,
                              s.messages_in, s.messages_out, s.bytes_in, s.bytes_out);
}

// One metadata entry by index, as chat_call_metadata_at / chat_stream_metadata_at.
using MetadataEntry =
    std::function<chat_code(size_t, const char**, size_t*, const char**, size_t*)>;
// A pychat.CallMetadata over `count` entries (values: bytes for "-bin" keys).
pybind11::object make_call_metadata(size_t count, const MetadataEntry& entry);

void define_errors(pybind11::module_& m);  // first: the others raise through it
void define_server(pybind11::module_& m);
void define_client(pybind11::module_& m);
void define_log(pybind11::module_& m);
void define_room(pybind11::module_& m);  // after define_server

// The chat_call of a pychat.Call (TypeError for anything else).
chat_call* call_handle(pybind11::handle call);

}  // namespace pychat
