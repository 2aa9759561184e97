// The pieces PYBIND11_MODULE(_pychat) is assembled from.
#pragma once

#include <pybind11/pybind11.h>

namespace pychat {

void define_errors(pybind11::module_& m);  // first: the others raise through it
void define_server(pybind11::module_& m);
void define_client(pybind11::module_& m);
void define_log(pybind11::module_& m);

}  // namespace pychat
