# Turns a file into a C++ source that returns its bytes, run at build time (cmake -P):
#   cmake -DINPUT=page.html -DOUTPUT=page.cpp -DHEADER=la/serve/page.h -DNAMESPACE=la::serve
#         -DFUNCTION=chat_page_html -P embed_file.cmake
# defines  std::string_view NAMESPACE::FUNCTION()  (declared in HEADER) over a byte array, so the
# file may hold any bytes (a raw string literal could not hold its own delimiter, and compilers
# cap literal lengths).
foreach(var INPUT OUTPUT HEADER NAMESPACE FUNCTION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed_file.cmake: -D${var}=... is required")
  endif()
endforeach()
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR size "${hex_len} / 2")
# 0xNN, per byte; a newline after every 16 bytes keeps the generated lines short.
# (CMake's regular expressions have no {n}: the 16-byte pattern is spelled out.)
string(REPEAT "[0-9a-f][0-9a-f]" 16 line)
string(REGEX REPLACE "(${line})" "\\1\n  " bytes "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${bytes}")
get_filename_component(name "${INPUT}" NAME)
set(text "// Generated from ${name} by cmake/embed_file.cmake at build time: do not edit.
#include \"${HEADER}\"

namespace ${NAMESPACE} {
namespace {
// ${size} bytes and a terminating 0 (so that an empty file is still a valid array).
constexpr unsigned char kBytes[] = {
  ${bytes}0x00};
}  // namespace

std::string_view ${FUNCTION}() {
  return {reinterpret_cast<const char*>(kBytes), sizeof(kBytes) - 1};
}
}  // namespace ${NAMESPACE}
")
file(WRITE "${OUTPUT}" "${text}")
