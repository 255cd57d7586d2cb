#pragma once
// Errors carry where they happened (file, line or byte offset) so a user can find the bad input.
#include <fmt/format.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace tsumugi {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An error tied to a position in an input file.
class InputError : public Error {
 public:
  InputError(std::string file, uint64_t line, const std::string& what)
      : Error(fmt::format("{}:{}: {}", file, line, what)), file_(std::move(file)), line_(line) {}
  const std::string& file() const { return file_; }
  uint64_t line() const { return line_; }

 private:
  std::string file_;
  uint64_t line_;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// errno-based message for system calls.
std::string errno_message(int err);

}  // namespace tsumugi
