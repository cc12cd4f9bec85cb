// The benchmark harness behind `pdvm bench`: builds (or loads) a model, measures the machine's
// read-bandwidth ceiling in the same process, times decode steps at chosen context depths (and
// optionally prompt processing), and states every result against core/traffic.h's byte counts.
// The report is printed as a table and written as JSON (schema: bench/results/README.md).
// Not thread-safe; allocates freely (it is outside the decode loop, except the timed steps).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/traffic.h"
#include "model/synthetic.h"
#include "pdvm/status.h"

namespace pdvm::bench {

// Where the model comes from: a file (-m), or a synthetic shape (--shape and/or explicit dims).
struct ShapeArgs {
  std::string shape;  // "" -> custom dims, all of d_model, d_ff, n_heads, vocab, n_layers needed
  int d_model = 0, d_ff = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab_size = 0,
      n_layers = 0;   // 0: the shape's value (explicit values override the named shape)
  int layers = 0;     // --layers N: keep only the first N layers (0: all)
  std::string layer_format = "q8_0";
  std::string head_format;  // "" -> same as layer_format (q8_0 for the sparse formats)
  // --sparsity S: zero fraction of each layer-matrix row, only for the sparse formats (mdcsr,
  // bitmap_i8), in [0, 1); unset -> kDefaultSparsity for them. An error for dense formats.
  std::optional<double> sparsity;
  uint64_t seed = 0x5eed;
};

constexpr double kDefaultSparsity = 0.5;

// Turns ShapeArgs into a validated synthetic spec; errors list what is known / available.
Result<model::SyntheticSpec> make_synthetic_spec(const ShapeArgs& a);

// Weight formats the synthetic generator (and so the CPU bench) can produce, by name. The
// sparse ones (mdcsr, bitmap_i8) are layer formats only; their embedding / LM head is q8_0.
std::vector<std::string> synthetic_formats();

struct BenchOptions {
  std::string model_path;  // non-empty: load this file; else synthetic from `shape`
  ShapeArgs shape;
  std::string backend = "cpu";     // cpu | cuda
  std::string gpu_mode = "token";  // cuda: ops | layer | token
  std::string kernels = "fast";    // cpu: fast | reference
  int threads = 0;                 // 0: all cores
  std::vector<int> depths = {0};   // context depths to time decode at
  int tokens = 16;                 // timed decode steps per repetition
  int warmup = 2;                  // untimed steps before the repetitions (per depth)
  int repeats = 5;                 // repetitions; median, min, max over them
  int prompt_tokens = 0;           // > 0: also time processing a prompt of this many tokens
  bool ceiling_only = false;       // --ceiling: measure and report the ceiling, nothing else
  size_t ceiling_bytes = 0;  // buffer for the read ceiling (>> last-level cache); 0: the device's
                             // default (CPU 512 MiB, GPU 2 GiB)
  bool progress = true;            // progress lines on stderr
  std::string command;             // the full command line, recorded in the report
};

struct Stats {
  double median = 0, min = 0, max = 0, mean = 0, stdev = 0;
  static Stats of(std::vector<double> samples);
};

struct Ceiling {
  std::string kind;       // "cpu-read" | "gpu-read"
  double read_gbps = 0;   // bytes read per second (1e9), best repeat
  double memcpy_gbps = 0; // GPU device-to-device copy (read + write) rate; 0 on CPU
  size_t n_bytes = 0;
  int threads = 0;        // CPU threads that read (0 on GPU)
  // Each measurement (before the model is built, and again after the timed steps); read_gbps is
  // the best. A shared or throttled machine deflates a single reading, which would inflate "%".
  std::vector<double> samples_gbps;
};

struct DepthResult {
  int depth = 0;                 // positions in the KV cache before the first timed step
  Stats ms_per_token;            // over repetitions (each the mean of `tokens` steps)
  double ms_per_layer = 0;       // median layer time (CPU: measured; GPU: token / n_layers)
  double ms_head = 0;            // final norm + LM head (CPU: measured; GPU: 0, not split)
  double tok_s = 0;              // 1000 / median ms_per_token
  core::TokenTraffic traffic;    // mean over the timed positions
  double gbps = 0;               // traffic.total_bytes() / median time
  double pct_of_ceiling = 0;     // gbps / ceiling.read_gbps * 100
  double floor_ms = 0;           // traffic.total_bytes() / ceiling: the fastest possible step
  std::optional<int> launches_per_token;  // GPU only
  std::string fill_method;       // how the depth was reached: "none" | "fill_kv_random" | "decode"
};

struct PromptResult {
  int tokens = 0;
  Stats ms;          // whole prompt, over repetitions
  double tok_s = 0;  // tokens / median seconds
};

struct BenchReport {
  std::string date;       // UTC, ISO 8601
  std::string commit;     // git describe of the source tree, or "unknown"
  std::string command;
  std::string build_type; // "release" (NDEBUG) or "debug", plus compiler and ISA
  std::string backend;    // backend name() ("cpu", "cpu-reference", "cuda-ops", ...)
  std::string device;     // CPU model or GPU name
  std::string gpu_mode;   // "" on CPU
  int threads = 0;
  // 1-minute load average at the start and at the end (/proc/loadavg): other work on the machine
  // competes for cores and memory bandwidth, and this says how much there was.
  std::vector<double> load_avg;
  int kv_elem_bytes = 4;
  int context = 0;
  // model
  std::string source, shape, layer_format, head_format;
  // Zero fraction of the sparse layer matrices: the spec's for synthetic models; for a file, kept
  // weights counted over its sparse layer matrices. Unset when no layer matrix is sparse.
  std::optional<double> sparsity;
  core::ModelConfig config;
  size_t model_weight_bytes = 0;  // traffic weights per token (layers + head + one embedding row)
  std::optional<size_t> device_weight_bytes;  // GPU: what the backend actually uploaded
  BenchOptions options;
  Ceiling ceiling;
  std::vector<DepthResult> results;
  std::optional<PromptResult> prompt;
  bool has_model = false;  // false for --ceiling
};

// Progress lines ("generating weights 1.2/2.0 GB") go here; nullptr: silent.
using ProgressSink = std::function<void(const std::string& line, bool final)>;
ProgressSink stderr_progress();

// Traffic of decoding `n_tokens` positions from `first_pos`, with the weight terms taken from
// the model's own matrices (Matrix::n_bytes(): for the sparse types every array the kernel
// reads), so it is right for any mix of types; the KV and FLOP terms are core::mean_token_traffic's.
core::TokenTraffic model_token_traffic(const core::Model& m, int64_t first_pos, int n_tokens,
                                       int kv_elem_bytes);

// Runs the whole benchmark. Errors (bad shape, unknown format, no GPU, ...) say what is available.
Result<BenchReport> run_bench(const BenchOptions& options, const ProgressSink& progress = nullptr);

// Report -> JSON (schema_version 1) and back-check; readable table.
nlohmann::json to_json(const BenchReport& report);
// Checks the required keys and their types; names the first one missing or wrong.
Status validate_report_json(const nlohmann::json& j);
std::string format_table(const BenchReport& report);

// Environment facts, also used by the Google Benchmark suites' custom context.
std::string source_commit();  // `git describe --always --dirty` of the source tree, or "unknown"
std::string cpu_model_name(); // /proc/cpuinfo "model name", or "unknown CPU"
std::string build_description();
std::string utc_now_iso8601();
std::string self_command_line();
double load_average_1m();     // /proc/loadavg's first field, or -1 when unreadable  // /proc/self/cmdline joined with spaces (quoted when needed)

}  // namespace pdvm::bench
