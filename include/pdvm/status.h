// Status and Result<T>: the error type at every boundary of pdvm (files, configs, CLI arguments,
// tokenizer input, device init). A Status carries one human-readable message that says what was
// expected, what was found and where. Internal invariants use PDVM_ASSERT instead, which stays
// on in release builds.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace pdvm {

enum class StatusCode { kOk = 0, kInvalidArgument, kNotFound, kIoError, kCorrupt, kUnsupported,
                        kOutOfRange, kOutOfMemory, kDevice, kInternal };

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Prefixes context ("model.gguf: ") to the message; keeps the code.
  Status with_context(const std::string& where) const {
    return is_ok() ? *this : Status(code_, where + ": " + message_);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status io_error(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status corrupt(std::string m) { return {StatusCode::kCorrupt, std::move(m)}; }
inline Status unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status out_of_range(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }

// Result<T>: a T or a non-ok Status (C++20 has no std::expected).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).is_ok()) v_ = Status(StatusCode::kInternal, "Result from ok Status");
  }
  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "pdvm: internal error: %s:%d: assertion failed: %s\n", file, line, expr);
  std::abort();
}

}  // namespace pdvm

// Internal invariant: on in every build type; aborts with file:line.
#define PDVM_ASSERT(x) \
  do { if (!(x)) ::pdvm::assert_fail(#x, __FILE__, __LINE__); } while (0)

// Propagates a non-ok Status from an expression returning Status.
#define PDVM_TRY(expr) \
  do { ::pdvm::Status pdvm_s_ = (expr); if (!pdvm_s_.is_ok()) return pdvm_s_; } while (0)

#define PDVM_CONCAT_INNER(a, b) a##b
#define PDVM_CONCAT(a, b) PDVM_CONCAT_INNER(a, b)
// Assigns the value of a Result<T> expression to `lhs`, or returns its Status.
#define PDVM_ASSIGN_OR_RETURN(lhs, expr) \
  auto PDVM_CONCAT(pdvm_r_, __LINE__) = (expr); \
  if (!PDVM_CONCAT(pdvm_r_, __LINE__).is_ok()) return PDVM_CONCAT(pdvm_r_, __LINE__).status(); \
  lhs = std::move(PDVM_CONCAT(pdvm_r_, __LINE__)).value()
