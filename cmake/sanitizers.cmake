# CHAT_SANITIZE=address,undefined or thread instruments every target. The
# system gRPC is not instrumented; see tests/sanitizers/ for what that implies.
if(CHAT_SANITIZE)
  set(_chat_san_flags -fsanitize=${CHAT_SANITIZE} -fno-omit-frame-pointer -g)
  if(CHAT_SANITIZE MATCHES "undefined")
    list(APPEND _chat_san_flags -fno-sanitize-recover=undefined)
  endif()
  add_compile_options(${_chat_san_flags})
  add_link_options(-fsanitize=${CHAT_SANITIZE})
endif()
