#pragma once
// Standard base64 (RFC 4648, with padding): raw bytes in JSON (error records, HF charsmaps).
#include <string>
#include <string_view>

namespace tsumugi {

std::string base64_encode(std::string_view bytes);

}  // namespace tsumugi
