//===- Error.h - runtime errors ---------------------------------*- C++ -*-===//
//
// The runtime reports every problem with input (artifacts, checkpoints,
// token data) as a dsv3rt::Error whose message names the file and the
// tensor or field; tools print it and exit non-zero. Internal invariants
// use DSV3_CHECK, which is on in every build type.
//
//===----------------------------------------------------------------------===//
#ifndef DSV3_RUNTIME_ERROR_H
#define DSV3_RUNTIME_ERROR_H

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace dsv3rt {

class Error : public std::runtime_error {
public:
  explicit Error(const std::string &message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args &&...args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

} // namespace dsv3rt

#define DSV3_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond))                                                               \
      ::dsv3rt::fail("internal error at {}:{}: {} ({})", __FILE__, __LINE__,   \
                     #cond, ::fmt::format(__VA_ARGS__));                        \
  } while (0)

#endif // DSV3_RUNTIME_ERROR_H
