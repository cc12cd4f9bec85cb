// The bench report's three faces: JSON (schema in bench/results/README.md, checked by
// validate_report_json), the readable table, and the environment facts both carry (commit,
// CPU model, build, date, command line).
#include <array>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "bench/harness.h"

namespace pdvm::bench {
namespace {

using nlohmann::json;

json stats_json(const Stats& s) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}, {"mean", s.mean}, {"stdev", s.stdev}};
}

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  std::array<char, 256> buf{};
  while (fgets(buf.data(), int(buf.size()), f)) out += buf.data();
  pclose(f);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// The source tree this file was compiled from: __FILE__ is <root>/src/bench/report.cpp.
std::string source_root() {
  std::string f = __FILE__;
  const std::string tail = "src/bench/report.cpp";
  if (f.size() < tail.size() || f.compare(f.size() - tail.size(), tail.size(), tail) != 0) return "";
  f.resize(f.size() - tail.size());
  return f.empty() ? "." : f;
}

}  // namespace

std::string source_commit() {
#ifdef PDVM_BUILD_COMMIT
  // Defined by the build (configure-time `git describe`): the commit the binary was built from.
  return PDVM_BUILD_COMMIT;
#endif
  const std::string root = source_root();
  if (root.empty() || root.find('\'') != std::string::npos) return "unknown";
  const std::string out =
      run_command("git -C '" + root + "' describe --always --dirty --tags 2>/dev/null");
  return out.empty() ? "unknown" : out;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        size_t b = line.find_first_not_of(" \t", colon + 1);
        return b == std::string::npos ? "unknown CPU" : line.substr(b);
      }
    }
  }
  return "unknown CPU";
}

std::string build_description() {
  std::string s;
#ifdef NDEBUG
  s = "release";
#else
  s = "debug";
#endif
#if defined(__clang__)
  s += ", clang " __clang_version__;
#elif defined(__GNUC__)
  s += ", gcc " __VERSION__;
#endif
#if defined(__AVX512F__)
  s += ", avx512";
#elif defined(__AVX2__)
  s += ", avx2";
#endif
#ifdef PDVM_HAVE_CUDA
  s += ", cuda";
#endif
  return s;
}

double load_average_1m() {
  std::ifstream in("/proc/loadavg");
  double v = -1;
  if (!(in >> v)) return -1;
  return v;
}

std::string utc_now_iso8601() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string self_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string out, arg;
  auto flush = [&] {
    const bool quote = arg.empty() || arg.find_first_of(" \t'\"$") != std::string::npos;
    if (!out.empty()) out += ' ';
    if (quote) {
      out += '\'';
      for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    } else {
      out += arg;
    }
    arg.clear();
  };
  for (char c : all) {
    if (c == '\0') flush();
    else arg += c;
  }
  if (!arg.empty()) flush();
  return out;
}

json to_json(const BenchReport& r) {
  json j;
  j["schema"] = "pdvm-bench";
  j["schema_version"] = 1;
  j["date"] = r.date;
  j["commit"] = r.commit;
  j["command"] = r.command;
  j["build"] = r.build_type;
  j["device"] = {{"backend", r.has_model ? r.backend : r.options.backend},
                 {"name", r.device},
                 {"threads", r.threads},
                 {"gpu_mode", r.gpu_mode.empty() ? json(nullptr) : json(r.gpu_mode)},
                 {"hardware_threads", int(std::thread::hardware_concurrency())},
                 {"load_avg_1m", r.load_avg}};
  j["ceiling"] = {{"kind", r.ceiling.kind},
                  {"read_gbps", r.ceiling.read_gbps},
                  {"memcpy_gbps", r.ceiling.memcpy_gbps > 0 ? json(r.ceiling.memcpy_gbps) : json(nullptr)},
                  {"n_bytes", r.ceiling.n_bytes},
                  {"threads", r.ceiling.threads},
                  {"samples_gbps", r.ceiling.samples_gbps}};
  j["settings"] = {{"tokens", r.options.tokens},
                   {"warmup", r.options.warmup},
                   {"repeats", r.options.repeats},
                   {"prompt_tokens", r.options.prompt_tokens},
                   {"kernels", r.options.kernels},
                   {"context", r.context},
                   {"kv_elem_bytes", r.kv_elem_bytes}};
  if (r.has_model) {
    const auto& c = r.config;
    j["model"] = {{"source", r.source},
                  {"shape", r.shape},
                  {"n_layers", c.n_layers},
                  {"d_model", c.d_model},
                  {"d_ff", c.d_ff},
                  {"n_heads", c.n_heads},
                  {"n_kv_heads", c.n_kv_heads},
                  {"head_dim", c.head_dim},
                  {"vocab_size", c.vocab_size},
                  {"layer_format", r.layer_format},
                  {"head_format", r.head_format},
                  {"sparsity", r.sparsity ? json(*r.sparsity) : json(nullptr)},
                  {"weight_bytes_per_token", r.model_weight_bytes},
                  {"device_weight_bytes",
                   r.device_weight_bytes ? json(*r.device_weight_bytes) : json(nullptr)}};
  } else {
    j["model"] = nullptr;
  }
  j["results"] = json::array();
  for (const auto& d : r.results) {
    j["results"].push_back(
        {{"depth", d.depth},
         {"ms_per_token", stats_json(d.ms_per_token)},
         {"ms_per_layer", d.ms_per_layer},
         {"ms_head", d.ms_head},
         {"tok_s", d.tok_s},
         {"bytes_per_token",
          {{"weights", d.traffic.weight_bytes()},
           {"kv", d.traffic.kv_read_bytes},
           {"total", d.traffic.total_bytes()}}},
         {"flops_per_token", d.traffic.flops},
         {"gbps", d.gbps},
         {"pct_of_ceiling", d.pct_of_ceiling},
         {"floor_ms", d.floor_ms},
         {"launches_per_token", d.launches_per_token ? json(*d.launches_per_token) : json(nullptr)},
         {"fill_method", d.fill_method}});
  }
  if (r.prompt) {
    j["prompt"] = {{"tokens", r.prompt->tokens}, {"ms", stats_json(r.prompt->ms)}, {"tok_s", r.prompt->tok_s}};
  } else {
    j["prompt"] = nullptr;
  }
  return j;
}

Status validate_report_json(const json& j) {
  enum Kind { kString, kNumber, kInteger, kObject, kArray, kNumberOrNull, kIntegerOrNull,
              kStringOrNull, kObjectOrNull };
  auto check = [](const json& obj, const std::string& where, const char* key, Kind kind) -> Status {
    const std::string at = where + "." + key;
    if (!obj.is_object() || !obj.contains(key)) return corrupt("bench JSON: missing key '" + at + "'");
    const json& v = obj.at(key);
    bool ok = false;
    switch (kind) {
      case kString: ok = v.is_string(); break;
      case kNumber: ok = v.is_number(); break;
      case kInteger: ok = v.is_number_integer(); break;
      case kObject: ok = v.is_object(); break;
      case kArray: ok = v.is_array(); break;
      case kNumberOrNull: ok = v.is_number() || v.is_null(); break;
      case kIntegerOrNull: ok = v.is_number_integer() || v.is_null(); break;
      case kStringOrNull: ok = v.is_string() || v.is_null(); break;
      case kObjectOrNull: ok = v.is_object() || v.is_null(); break;
    }
    static const char* names[] = {"string", "number", "integer", "object", "array", "number or null",
                                  "integer or null", "string or null", "object or null"};
    return ok ? Status::ok() : corrupt("bench JSON: '" + at + "' should be " + names[kind] + ", got " + v.type_name());
  };
  PDVM_TRY(check(j, "$", "schema", kString));
  if (j.at("schema") != "pdvm-bench") return corrupt("bench JSON: '$.schema' is not \"pdvm-bench\"");
  PDVM_TRY(check(j, "$", "schema_version", kInteger));
  if (j.at("schema_version") != 1)
    return corrupt("bench JSON: schema_version " + j.at("schema_version").dump() + ", this pdvm reads 1");
  for (const char* k : {"date", "commit", "command", "build"}) PDVM_TRY(check(j, "$", k, kString));
  PDVM_TRY(check(j, "$", "device", kObject));
  PDVM_TRY(check(j["device"], "$.device", "backend", kString));
  PDVM_TRY(check(j["device"], "$.device", "name", kString));
  PDVM_TRY(check(j["device"], "$.device", "threads", kInteger));
  PDVM_TRY(check(j["device"], "$.device", "gpu_mode", kStringOrNull));
  PDVM_TRY(check(j, "$", "ceiling", kObject));
  PDVM_TRY(check(j["ceiling"], "$.ceiling", "kind", kString));
  PDVM_TRY(check(j["ceiling"], "$.ceiling", "read_gbps", kNumber));
  PDVM_TRY(check(j["ceiling"], "$.ceiling", "memcpy_gbps", kNumberOrNull));
  PDVM_TRY(check(j["ceiling"], "$.ceiling", "n_bytes", kInteger));
  // samples_gbps came later within schema 1 (results from before it stay valid without it)
  if (j["ceiling"].contains("samples_gbps")) PDVM_TRY(check(j["ceiling"], "$.ceiling", "samples_gbps", kArray));
  PDVM_TRY(check(j, "$", "settings", kObject));
  for (const char* k : {"tokens", "warmup", "repeats", "prompt_tokens", "context", "kv_elem_bytes"})
    PDVM_TRY(check(j["settings"], "$.settings", k, kInteger));
  PDVM_TRY(check(j, "$", "model", kObjectOrNull));
  if (j["model"].is_object()) {
    const json& m = j["model"];
    for (const char* k : {"source", "shape", "layer_format", "head_format"}) PDVM_TRY(check(m, "$.model", k, kString));
    for (const char* k : {"n_layers", "d_model", "d_ff", "n_heads", "n_kv_heads", "head_dim", "vocab_size",
                          "weight_bytes_per_token"})
      PDVM_TRY(check(m, "$.model", k, kInteger));
    PDVM_TRY(check(m, "$.model", "device_weight_bytes", kIntegerOrNull));
    // sparsity came later within schema 1 (null for dense layers; absent in earlier results)
    if (m.contains("sparsity")) PDVM_TRY(check(m, "$.model", "sparsity", kNumberOrNull));
  }
  PDVM_TRY(check(j, "$", "results", kArray));
  for (size_t i = 0; i < j["results"].size(); ++i) {
    const json& d = j["results"][i];
    const std::string at = "$.results[" + std::to_string(i) + "]";
    PDVM_TRY(check(d, at, "depth", kInteger));
    PDVM_TRY(check(d, at, "ms_per_token", kObject));
    for (const char* k : {"median", "min", "max", "mean", "stdev"})
      PDVM_TRY(check(d["ms_per_token"], at + ".ms_per_token", k, kNumber));
    for (const char* k : {"ms_per_layer", "ms_head", "tok_s", "flops_per_token", "gbps", "pct_of_ceiling", "floor_ms"})
      PDVM_TRY(check(d, at, k, kNumber));
    PDVM_TRY(check(d, at, "bytes_per_token", kObject));
    for (const char* k : {"weights", "kv", "total"})
      PDVM_TRY(check(d["bytes_per_token"], at + ".bytes_per_token", k, kInteger));
    PDVM_TRY(check(d, at, "launches_per_token", kIntegerOrNull));
    PDVM_TRY(check(d, at, "fill_method", kString));
  }
  PDVM_TRY(check(j, "$", "prompt", kObjectOrNull));
  if (j["prompt"].is_object()) {
    PDVM_TRY(check(j["prompt"], "$.prompt", "tokens", kInteger));
    PDVM_TRY(check(j["prompt"], "$.prompt", "ms", kObject));
    PDVM_TRY(check(j["prompt"], "$.prompt", "tok_s", kNumber));
  }
  return Status::ok();
}

std::string format_table(const BenchReport& r) {
  std::ostringstream os;
  char line[512];
  std::snprintf(line, sizeof(line), "pdvm bench  %s  commit %s  %s\n", r.date.c_str(), r.commit.c_str(),
                r.build_type.c_str());
  os << line;
  const std::string backend = r.has_model ? r.backend : r.options.backend;
  std::string load;
  for (double l : r.load_avg) {
    char one[32];
    std::snprintf(one, sizeof(one), "%s%.1f", load.empty() ? "" : " -> ", l);
    load += one;
  }
  std::snprintf(line, sizeof(line), "device      %s (%s%s%s, %d threads; %u hardware threads, load %s)\n",
                r.device.c_str(), backend.c_str(), r.gpu_mode.empty() ? "" : ", mode ", r.gpu_mode.c_str(),
                r.threads, std::thread::hardware_concurrency(), load.c_str());
  os << line;
  std::string samples;
  for (double g : r.ceiling.samples_gbps) {
    char one[32];
    std::snprintf(one, sizeof(one), "%s%.1f", samples.empty() ? "" : ", ", g);
    samples += one;
  }
  std::snprintf(line, sizeof(line), "ceiling     %.1f GB/s read (%s, %.0f MB buffer; best of %s)", r.ceiling.read_gbps,
                r.ceiling.kind.c_str(), double(r.ceiling.n_bytes) / 1e6, samples.c_str());
  os << line;
  if (r.ceiling.memcpy_gbps > 0) {
    std::snprintf(line, sizeof(line), "; device-to-device copy %.1f GB/s", r.ceiling.memcpy_gbps);
    os << line;
  }
  os << "\n";
  if (!r.has_model) return os.str();
  const auto& c = r.config;
  char sparsity[48] = "";
  if (r.sparsity) std::snprintf(sparsity, sizeof(sparsity), " at %.1f%% sparsity", 100.0 * *r.sparsity);
  std::snprintf(line, sizeof(line),
                "model       %s: %d layers, d_model %d, d_ff %d, heads %d/%d x %d, vocab %d; weights %s%s, "
                "head %s; %.3f GB/token\n",
                r.source.c_str(), c.n_layers, c.d_model, c.d_ff, c.n_heads, c.n_kv_heads, c.head_dim,
                c.vocab_size, r.layer_format.c_str(), sparsity, r.head_format.c_str(),
                double(r.model_weight_bytes) / 1e9);
  os << line;
  std::snprintf(line, sizeof(line), "settings    %d tokens x %d repeats after %d warm-up steps; context %d\n\n",
                r.options.tokens, r.options.repeats, r.options.warmup, r.context);
  os << line;
  const bool gpu = !r.gpu_mode.empty();
  std::snprintf(line, sizeof(line), "%6s %10s %16s %9s %9s %8s %10s %9s %8s %9s %8s%s\n", "depth", "ms/token",
                "[min..max]", "ms/layer", "ms/head", "tok/s", "weights MB", "KV MB", "GB/s", "% ceil",
                "floor ms", gpu ? "  launches" : "");
  os << line;
  for (const auto& d : r.results) {
    char range[40];
    std::snprintf(range, sizeof(range), "[%.2f..%.2f]", d.ms_per_token.min, d.ms_per_token.max);
    std::snprintf(line, sizeof(line), "%6d %10.3f %16s %9.3f %9.3f %8.1f %10.1f %9.2f %8.1f %8.1f%% %8.3f", d.depth,
                  d.ms_per_token.median, range, d.ms_per_layer, d.ms_head, d.tok_s,
                  double(d.traffic.weight_bytes()) / 1e6, double(d.traffic.kv_read_bytes) / 1e6, d.gbps,
                  d.pct_of_ceiling, d.floor_ms);
    os << line;
    if (d.launches_per_token) os << "  " << *d.launches_per_token;
    os << "\n";
  }
  if (r.prompt) {
    std::snprintf(line, sizeof(line), "\nprompt      %d tokens: %.1f ms [%.1f..%.1f], %.1f tok/s (one step per token)\n",
                  r.prompt->tokens, r.prompt->ms.median, r.prompt->ms.min, r.prompt->ms.max, r.prompt->tok_s);
    os << line;
  }
  return os.str();
}

}  // namespace pdvm::bench
