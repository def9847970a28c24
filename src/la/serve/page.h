#pragma once
// The chat page `serve` answers GET / with: src/la/serve/page/index.html, one self-contained file
// (HTML, CSS and script inline, nothing fetched from elsewhere), built into the binary as a byte
// array by cmake/embed_file.cmake (src/CMakeLists.txt regenerates it when the page changes).
#include <string_view>

namespace la::serve {

// The page's bytes (UTF-8 HTML), valid for the life of the program.
std::string_view chat_page_html();

}  // namespace la::serve
