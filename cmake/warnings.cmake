# One interface target carries the project's warning flags.
add_library(chat_warnings INTERFACE)
target_compile_options(chat_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:C,CXX>:-Wall -Wextra -Wshadow -Wno-unused-parameter>
  $<$<BOOL:${CHAT_WERROR}>:-Werror>)
