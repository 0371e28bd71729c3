#pragma once
#include <string>

namespace podcrypt {
// Opens (creating if needed) the TUN interface `requested` in non-blocking mode without packet
// information headers. Returns the fd, or -1 with `error` set.
int OpenTun(const std::string& requested, std::string* actual, std::string* error);
}  // namespace podcrypt
