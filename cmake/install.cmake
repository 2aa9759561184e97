# Installs libchat: header, shared library, pkg-config file, CMake package
# (find_package(chat) -> chat::chat) and, with examples, the programs.
# Every path below is relative to the prefix chosen at install time, so
# `cmake --install build --prefix DIR` gives a working, relocatable tree.
include(CMakePackageConfigHelpers)

set(CHAT_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/chat)

# chat links chat_core (static), gRPC and protobuf PRIVATE. For a SHARED
# library CMake keeps private dependencies out of the exported interface
# (they are absorbed into libchat.so), so the export needs only `chat`.
# Keep those links PRIVATE: a PUBLIC one would demand exporting chat_core.
# capi sets PUBLIC_HEADER relative to capi/, but install() resolves it from
# the directory that calls install() (this one): make it absolute.
set_target_properties(chat PROPERTIES PUBLIC_HEADER ${PROJECT_SOURCE_DIR}/capi/include/libchat/chat.h)
install(TARGETS chat EXPORT chatTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    COMPONENT runtime NAMELINK_COMPONENT dev
  PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/libchat COMPONENT dev)

install(EXPORT chatTargets
  NAMESPACE chat::
  DESTINATION ${CHAT_INSTALL_CMAKEDIR}
  COMPONENT dev)

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/chatConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/chatConfig.cmake
  INSTALL_DESTINATION ${CHAT_INSTALL_CMAKEDIR})
# The C ABI only breaks on a major bump (see CHAT_ABI_VERSION).
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/chatConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/cmake/chatConfig.cmake
  ${PROJECT_BINARY_DIR}/cmake/chatConfigVersion.cmake
  DESTINATION ${CHAT_INSTALL_CMAKEDIR}
  COMPONENT dev)

# pkg-config: prefix is found relative to the .pc file (${pcfiledir}); the
# lib and include dirs are relative to it unless configured as absolute.
set(_chat_pcdir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH CHAT_PC_PREFIX_FROM_PCDIR /_root/${_chat_pcdir} /_root)
string(REGEX REPLACE "/$" "" CHAT_PC_PREFIX_FROM_PCDIR "${CHAT_PC_PREFIX_FROM_PCDIR}")
foreach(_kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_kind}}")
    set(CHAT_PC_${_kind} "${CMAKE_INSTALL_${_kind}}")
  else()
    set(CHAT_PC_${_kind} "\${prefix}/${CMAKE_INSTALL_${_kind}}")
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/chat.pc.in ${PROJECT_BINARY_DIR}/cmake/chat.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/cmake/chat.pc DESTINATION ${_chat_pcdir} COMPONENT dev)

if(CHAT_BUILD_EXAMPLES)
  # Find libchat.so.1 next door in the install tree, wherever it is. The
  # dlopen demo has no link dependency, but dlopen("libchat.so.1") searches
  # the caller's RUNPATH too, so it needs the same entry.
  set_target_properties(chat_server chat_client room_server capi_dlopen_demo PROPERTIES
    INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
  install(TARGETS chat_server chat_client room_server
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT examples)
  # The dlopen demo is installed under a project-prefixed name. install()
  # cannot rename a target, and copying the file instead would skip the
  # RUNPATH rewrite, so install it as a target and rename it afterwards.
  install(TARGETS capi_dlopen_demo
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT examples)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_BINDIR}")
    set(_chat_bindir "${CMAKE_INSTALL_BINDIR}")
  else()
    set(_chat_bindir "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}")
  endif()
  install(CODE "
    set(_from \"\$ENV{DESTDIR}${_chat_bindir}/capi_dlopen_demo\")
    set(_to \"\$ENV{DESTDIR}${_chat_bindir}/chat_dlopen_demo\")
    message(STATUS \"Renaming: \${_from} -> chat_dlopen_demo\")
    file(RENAME \"\${_from}\" \"\${_to}\")
    list(REMOVE_ITEM CMAKE_INSTALL_MANIFEST_FILES \"\${_from}\")
    list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${_to}\")
  " COMPONENT examples)
endif()
