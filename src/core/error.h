// One exception type for every user-facing failure: its message is the one line the CLI prints.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace txs {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace txs
