// run_bench: model -> ceiling -> backend -> (prompt) -> decode at each depth. The timed loop
// calls the backend's own entry points (embed / execute_layer / logits on the CPU, one
// decode_step per token on the GPU) so what is timed is what `pdvm run` executes.
#include "bench/harness.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <unistd.h>

#include "core/backend.h"
#include "core/thread_pool.h"
#include "cpu/cpu_backend.h"
#include "cpu/read_bandwidth.h"
#include "model/load.h"
#ifdef PDVM_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace pdvm::bench {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::string gb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GB", bytes / 1e9);
  return buf;
}

// A deterministic, varied token for position `pos` (the id does not change the cost).
int32_t token_for(int64_t pos, int vocab) {
  return int32_t((uint64_t(pos) * 2654435761ull + 1) % uint64_t(vocab));
}

Result<core::WeightType> parse_synthetic_format(const std::string& name, const char* flag) {
  const auto formats = synthetic_formats();
  auto t = core::parse_weight_type(name);
  if (!t.is_ok() || std::find(formats.begin(), formats.end(), name) == formats.end())
    return unsupported(std::string(flag) + " '" + name +
                       "' is not available for synthetic weights (available: " + join(formats) + ")");
  return t.value();
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// Zero fraction over a model's sparse layer matrices (kept = n_nonzero); unset when none is sparse.
std::optional<double> measured_sparsity(const core::Model& m) {
  double kept = 0, total = 0;
  for (const auto& l : m.layers)
    for (const auto* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      if (w->sparse != nullptr) {
        kept += double(w->sparse->n_nonzero);
        total += double(w->rows) * double(w->cols);
      }
  if (total == 0) return std::nullopt;
  return 1.0 - kept / total;
}

bool is_available_backend(const std::string& b) { return b == "cpu" || b == "cuda"; }

}  // namespace

std::vector<std::string> synthetic_formats() {
  return {"f32",  "f16",  "bf16", "q8_0", "q4_0",   "q4_1",  "q5_0",
          "q5_1", "q4_K", "q5_K", "q6_K", "i8_row", "mdcsr", "bitmap_i8"};
}

core::TokenTraffic model_token_traffic(const core::Model& m, int64_t first_pos, int n_tokens,
                                       int kv_elem_bytes) {
  core::TokenTraffic t = core::mean_token_traffic(m.config, core::types_of(m), first_pos, n_tokens, kv_elem_bytes);
  t.layer_weight_bytes = 0;
  for (const auto& l : m.layers) {
    for (const auto* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) t.layer_weight_bytes += w->n_bytes();
    for (const auto* v : {&l.attn_norm, &l.ffn_norm, &l.bq, &l.bk, &l.bv})
      t.layer_weight_bytes += v->size() * sizeof(float);
  }
  t.head_bytes = m.output.n_bytes() + m.output_norm.size() * sizeof(float);
  t.embed_bytes = m.tok_embd.row_stride();
  return t;
}

Stats Stats::of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.min = v.front();
  s.max = v.back();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / double(n);
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.stdev = n > 1 ? std::sqrt(ss / double(n - 1)) : 0.0;
  return s;
}

Result<model::SyntheticSpec> make_synthetic_spec(const ShapeArgs& a) {
  model::SyntheticSpec spec;
  const bool custom = a.shape.empty() || a.shape == "custom";
  if (!custom) {
    PDVM_ASSIGN_OR_RETURN(spec, model::parse_shape(a.shape));
  } else {
    std::vector<std::string> missing;
    if (a.d_model <= 0) missing.push_back("--d-model");
    if (a.d_ff <= 0) missing.push_back("--d-ff");
    if (a.n_heads <= 0) missing.push_back("--heads");
    if (a.vocab_size <= 0) missing.push_back("--vocab");
    if (a.n_layers <= 0 && a.layers <= 0) missing.push_back("--n-layers");
    if (!missing.empty())
      return invalid_argument("no model: give -m FILE, --shape NAME (known: " +
                              join(model::known_shapes()) + "), or explicit dims (missing: " +
                              join(missing) + ")");
    spec.shape = "custom";
    core::ModelConfig& c = spec.config;
    c.arch = core::Arch::kLlama;
    c.max_seq = 4096;
    c.rms_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.rope_style = core::RopeStyle::kNeox;
    c.tie_embeddings = false;
  }
  core::ModelConfig& c = spec.config;
  const bool heads_changed = a.d_model > 0 || a.n_heads > 0;
  if (a.d_model > 0) c.d_model = a.d_model;
  if (a.d_ff > 0) c.d_ff = a.d_ff;
  if (a.n_heads > 0) c.n_heads = a.n_heads;
  if (a.vocab_size > 0) c.vocab_size = a.vocab_size;
  if (a.n_layers > 0) c.n_layers = a.n_layers;
  if (a.layers > 0) c.n_layers = a.layers;
  if (a.n_kv_heads > 0) c.n_kv_heads = a.n_kv_heads;
  else if (custom) c.n_kv_heads = c.n_heads;
  if (a.head_dim > 0) {
    c.head_dim = a.head_dim;
  } else if (custom || heads_changed) {
    if (c.n_heads <= 0 || c.d_model % c.n_heads != 0)
      return invalid_argument("heads (" + std::to_string(c.n_heads) + ") do not divide d_model (" +
                              std::to_string(c.d_model) +
                              "): head_dim = d_model / heads must be a whole number; choose heads "
                              "that divide d_model or give --head-dim");
    c.head_dim = c.d_model / c.n_heads;
  }
  c.rope_dim = c.head_dim;
  PDVM_TRY(c.validate().with_context("shape '" + spec.shape + "'"));

  PDVM_ASSIGN_OR_RETURN(spec.layer_type, parse_synthetic_format(a.layer_format, "--format"));
  const bool sparse = core::is_sparse(spec.layer_type);
  // A sparse embedding has no rows to look up: sparse layer formats get a q8_0 head by default.
  const std::string head = !a.head_format.empty() ? a.head_format : sparse ? "q8_0" : a.layer_format;
  PDVM_ASSIGN_OR_RETURN(spec.head_type, parse_synthetic_format(head, "--head-format"));
  if (core::is_sparse(spec.head_type))
    return unsupported("--head-format '" + head +
                       "': the embedding / LM head cannot be sparse (available: "
                       "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K, i8_row)");
  if (a.sparsity) {
    if (!sparse)
      return invalid_argument("--sparsity applies to the sparse formats (mdcsr, bitmap_i8), not --format " +
                              a.layer_format);
    if (!(*a.sparsity >= 0.0 && *a.sparsity < 1.0))
      return invalid_argument("--sparsity " + number(*a.sparsity) + " is out of range: it must be in [0, 1)");
  }
  spec.sparsity = sparse ? a.sparsity.value_or(kDefaultSparsity) : 0.0;
  spec.seed = a.seed;
  return spec;
}

ProgressSink stderr_progress() {
  const bool tty = isatty(fileno(stderr));
  return [tty](const std::string& line, bool final) {
    if (tty) {
      std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
    } else if (final) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  };
}

namespace {

// Decodes positions [from, to) without logits: the slow way to reach a context depth, used when
// the backend cannot fill its cache directly (core::Backend::fill_kv_random).
Status decode_fill(core::Backend& b, int n_vocab, int from, int to, const ProgressSink& progress) {
  int last_pct = -1;
  for (int pos = from; pos < to; ++pos) {
    PDVM_TRY(b.embed(token_for(pos, n_vocab)));
    for (int l = 0; l < b.n_layers(); ++l) PDVM_TRY(b.execute_layer(l, pos));
    const int pct = int(100.0 * (pos + 1 - from) / (to - from));
    if (progress && (pct != last_pct || pos + 1 == to)) {
      last_pct = pct;
      progress("filling KV cache by decoding: position " + std::to_string(pos + 1) + "/" +
                   std::to_string(to) + " (" + std::to_string(pct) + "%)",
               pos + 1 == to);
    }
  }
  return Status::ok();
}

struct StepTimes {
  double total_ms = 0, layers_ms = 0, head_ms = 0;
};

// One decode step through the Backend seam, timed by part (CPU: the calls are synchronous).
Result<StepTimes> timed_step(core::Backend& b, int n_vocab, int pos) {
  StepTimes t;
  const auto t0 = Clock::now();
  PDVM_TRY(b.embed(token_for(pos, n_vocab)));
  const auto t1 = Clock::now();
  for (int l = 0; l < b.n_layers(); ++l) PDVM_TRY(b.execute_layer(l, pos));
  const auto t2 = Clock::now();
  auto logits = b.logits();
  if (!logits.is_ok()) return logits.status();
  t.layers_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
  t.head_ms = ms_since(t2);
  t.total_ms = ms_since(t0);
  return t;
}

}  // namespace

Result<BenchReport> run_bench(const BenchOptions& o, const ProgressSink& progress) {
  // --- arguments --------------------------------------------------------------------------------
  if (!is_available_backend(o.backend))
    return invalid_argument("unknown backend '" + o.backend + "' (available: cpu, cuda)");
  if (o.kernels != "fast" && o.kernels != "reference")
    return invalid_argument("unknown CPU kernels '" + o.kernels + "' (available: fast, reference)");
  if (o.tokens < 1) return invalid_argument("--tokens must be at least 1, got " + std::to_string(o.tokens));
  if (o.repeats < 1) return invalid_argument("--repeats must be at least 1, got " + std::to_string(o.repeats));
  if (o.warmup < 0) return invalid_argument("--warmup must be >= 0, got " + std::to_string(o.warmup));
  if (o.prompt_tokens < 0) return invalid_argument("--prompt-tokens must be >= 0");
  if (o.depths.empty()) return invalid_argument("--depth needs at least one value");
  for (int d : o.depths)
    if (d < 0) return invalid_argument("--depth values must be >= 0, got " + std::to_string(d));
  if (o.ceiling_bytes != 0 && o.ceiling_bytes < (size_t(1) << 20))
    return invalid_argument("ceiling buffer must be at least 1 MiB");

  BenchReport r;
  r.options = o;
  r.date = utc_now_iso8601();
  r.commit = source_commit();
  r.command = o.command;
  r.build_type = build_description();
  r.gpu_mode = o.backend == "cuda" ? o.gpu_mode : "";
  r.load_avg.push_back(load_average_1m());
  const bool gpu = o.backend == "cuda";

#ifndef PDVM_HAVE_CUDA
  if (gpu)
    return unsupported("--backend cuda: this pdvm was built without CUDA (no nvcc or no CUDA "
                       "sources at configure time); available backends: cpu");
#else
  if (gpu) {
    auto n = cuda::cuda_device_count();
    if (!n.is_ok()) return unsupported("--backend cuda: no GPU found: " + n.status().message() +
                                       " (available backends here: cpu)");
    if (n.value() < 1) return unsupported("--backend cuda: no GPU found (available backends here: cpu)");
    auto mode = cuda::parse_mode(o.gpu_mode);
    if (!mode.is_ok()) return mode.status().with_context("--gpu-mode");
  }
#endif

  // Shape and format errors first, before seconds of measuring.
  model::SyntheticSpec spec;
  if (o.model_path.empty() && !o.ceiling_only) {
    PDVM_ASSIGN_OR_RETURN(spec, make_synthetic_spec(o.shape));
  } else if (!o.model_path.empty() && !o.shape.shape.empty()) {
    return invalid_argument("give either -m FILE or --shape NAME, not both");
  }
  if (!o.model_path.empty() && o.shape.sparsity)
    return invalid_argument("--sparsity applies to synthetic models; a model file keeps its own sparsity");

  // --- ceiling, measured in this process so "% of ceiling" compares like with like ----------
  auto measure_ceiling = [&]() -> Status {
    if (progress) progress("measuring the memory read ceiling...", false);
    if (!gpu) {
      core::ThreadPool pool(o.kernels == "reference" ? 1 : o.threads);
      const size_t n = o.ceiling_bytes != 0 ? o.ceiling_bytes : size_t(512) << 20;
      const cpu::ReadBandwidth bw = cpu::measure_read_bandwidth(pool, n, 5);
      r.ceiling.kind = "cpu-read";
      r.ceiling.samples_gbps.push_back(bw.gbps);
      r.ceiling.n_bytes = bw.n_bytes;
      r.ceiling.threads = bw.threads;
      r.threads = pool.size();
      r.device = cpu_model_name();
    }
#ifdef PDVM_HAVE_CUDA
    else {
      PDVM_ASSIGN_OR_RETURN(auto c, cuda::measure_read_ceiling(0, o.ceiling_bytes));
      r.ceiling.kind = "gpu-read";
      r.ceiling.samples_gbps.push_back(c.read_gbps);
      r.ceiling.memcpy_gbps = std::max(r.ceiling.memcpy_gbps, c.memcpy_gbps);
      r.ceiling.n_bytes = c.n_bytes;
    }
#endif
    r.ceiling.read_gbps = *std::max_element(r.ceiling.samples_gbps.begin(), r.ceiling.samples_gbps.end());
    if (progress) {
      char line[128];
      std::snprintf(line, sizeof(line), "read ceiling: %.1f GB/s (%s buffer)", r.ceiling.samples_gbps.back(),
                    gb(double(r.ceiling.n_bytes)).c_str());
      progress(line, true);
    }
    return Status::ok();
  };
  PDVM_TRY(measure_ceiling());
  if (o.ceiling_only) return r;

  // --- model ------------------------------------------------------------------------------------
  core::Model model;
  if (!o.model_path.empty()) {
    if (progress) progress("loading " + o.model_path + "...", false);
    PDVM_ASSIGN_OR_RETURN(auto loaded, model::load_model(o.model_path));
    model = std::move(loaded.model);
    if (o.shape.layers > 0) {
      if (o.shape.layers > model.config.n_layers)
        return invalid_argument("--layers " + std::to_string(o.shape.layers) + ": the model has only " +
                                std::to_string(model.config.n_layers));
      model.layers.resize(size_t(o.shape.layers));
      model.config.n_layers = o.shape.layers;
    }
    r.source = o.model_path;
    r.shape = "file";
    r.layer_format = model.layers.empty() ? "" : std::string(core::weight_type_name(model.layers[0].w_up.type));
    r.head_format = std::string(core::weight_type_name(model.output.type));
    r.sparsity = measured_sparsity(model);
    if (progress) progress("loaded " + o.model_path, true);
  } else {
    spec.threads = o.threads;
    const std::string what = "generating " + spec.shape + " weights (" +
                             std::string(core::weight_type_name(spec.layer_type)) + "): ";
    int last_pct = -1;
    model::ProgressFn fn = nullptr;
    if (progress) {
      fn = [&](size_t done, size_t total) {
        const int pct = total ? int(100.0 * double(done) / double(total)) : 100;
        if (pct == last_pct) return;
        last_pct = pct;
        progress(what + gb(double(done)) + " / " + gb(double(total)) + " (" + std::to_string(pct) + "%)",
                 done >= total);
      };
    }
    PDVM_ASSIGN_OR_RETURN(model, model::make_synthetic_model(spec, fn));
    r.source = "synthetic:" + spec.shape;
    r.shape = spec.shape;
    r.layer_format = std::string(core::weight_type_name(spec.layer_type));
    r.head_format = std::string(core::weight_type_name(spec.head_type));
    if (core::is_sparse(spec.layer_type)) r.sparsity = spec.sparsity;
  }
  r.has_model = true;
  r.config = model.config;

  // --- backend ----------------------------------------------------------------------------------
  std::vector<int> depths = o.depths;
  std::sort(depths.begin(), depths.end());
  depths.erase(std::unique(depths.begin(), depths.end()), depths.end());
  const int context = std::max(depths.back() + std::max(o.tokens, 1), o.prompt_tokens);
  r.context = context;
  std::unique_ptr<core::Backend> backend;
#ifdef PDVM_HAVE_CUDA
  cuda::CudaBackend* cuda_backend = nullptr;
#endif
  if (!gpu) {
    cpu::CpuOptions co;
    co.context = context;
    co.threads = o.threads;
    co.kernels = o.kernels == "reference" ? cpu::CpuKernels::kReference : cpu::CpuKernels::kFast;
    PDVM_ASSIGN_OR_RETURN(backend, cpu::make_cpu_backend(model, co));
    r.kv_elem_bytes = 4;  // the CPU KV cache is f32
  }
#ifdef PDVM_HAVE_CUDA
  else {
    cuda::CudaOptions co;
    co.mode = cuda::parse_mode(o.gpu_mode).value();
    co.context = context;
    auto made = cuda::make_cuda_backend(model, co);
    if (!made.is_ok()) return made.status().with_context("cuda backend (" + o.gpu_mode + " mode)");
    backend = std::move(made).value();
    cuda_backend = dynamic_cast<cuda::CudaBackend*>(backend.get());
    if (!cuda_backend) return Status(StatusCode::kInternal, "cuda backend has an unexpected type");
    r.kv_elem_bytes = 2;  // the CUDA KV cache is f16
    r.device = cuda_backend->device_name();
    r.device_weight_bytes = cuda_backend->weight_bytes();
  }
#endif
  r.backend = backend->name();
  const int vocab = model.config.vocab_size;
  r.model_weight_bytes = model_token_traffic(model, 0, 1, r.kv_elem_bytes).weight_bytes();

  // One decode step, wall time, as the backend runs it for `pdvm run`.
  auto step = [&](int pos) -> Result<StepTimes> {
#ifdef PDVM_HAVE_CUDA
    if (cuda_backend) {
      StepTimes t;
      const auto t0 = Clock::now();
      PDVM_TRY(cuda_backend->decode_step(token_for(pos, vocab), pos));
      PDVM_TRY(cuda_backend->synchronize());
      t.total_ms = ms_since(t0);
      t.layers_ms = t.total_ms;
      return t;
    }
#endif
    return timed_step(*backend, vocab, pos);
  };

  // --- prompt processing: P tokens from position 0 (no batched prefill yet: one step each) ----
  if (o.prompt_tokens > 0) {
    std::vector<double> ms;
    for (int rep = 0; rep < o.repeats; ++rep) {
      const auto t0 = Clock::now();
#ifdef PDVM_HAVE_CUDA
      if (cuda_backend) {
        for (int p = 0; p < o.prompt_tokens; ++p)
          PDVM_TRY(cuda_backend->decode_step(token_for(p, vocab), p));
        PDVM_TRY(cuda_backend->synchronize());
      } else
#endif
      {
        for (int p = 0; p < o.prompt_tokens; ++p) {
          PDVM_TRY(backend->embed(token_for(p, vocab)));
          for (int l = 0; l < backend->n_layers(); ++l) PDVM_TRY(backend->execute_layer(l, p));
        }
        auto lg = backend->logits();
        if (!lg.is_ok()) return lg.status();
      }
      ms.push_back(ms_since(t0));
      if (progress) progress("prompt " + std::to_string(rep + 1) + "/" + std::to_string(o.repeats), rep + 1 == o.repeats);
    }
    PromptResult pr;
    pr.tokens = o.prompt_tokens;
    pr.ms = Stats::of(ms);
    pr.tok_s = pr.ms.median > 0 ? 1000.0 * o.prompt_tokens / pr.ms.median : 0;
    r.prompt = pr;
  }

  // --- decode at each depth ------------------------------------------------------------------
  int filled = 0;  // positions [0, filled) hold K,V (from a fill or earlier steps)
  for (int depth : depths) {
    DepthResult d;
    d.depth = depth;
    d.fill_method = "none";
    if (depth > filled) {
      const Status s = backend->fill_kv_random(depth, 0x6b76 + uint64_t(depth));
      if (s.is_ok()) {
        d.fill_method = "fill_kv_random";
      } else if (s.code() == StatusCode::kUnsupported) {
        PDVM_TRY(decode_fill(*backend, vocab, filled, depth, progress));
        d.fill_method = "decode";
      } else {
        return s.with_context("filling the KV cache to depth " + std::to_string(depth));
      }
    } else if (depth > 0) {
      d.fill_method = "decode";  // reached by earlier steps
    }
    for (int w = 0; w < o.warmup; ++w) PDVM_TRY(step(depth).status());
    std::vector<double> tok_ms, layer_ms, head_ms;
    for (int rep = 0; rep < o.repeats; ++rep) {
      StepTimes sum;
      for (int i = 0; i < o.tokens; ++i) {
        PDVM_ASSIGN_OR_RETURN(const StepTimes t, step(depth + i));
        sum.total_ms += t.total_ms;
        sum.layers_ms += t.layers_ms;
        sum.head_ms += t.head_ms;
      }
      tok_ms.push_back(sum.total_ms / o.tokens);
      layer_ms.push_back(sum.layers_ms / o.tokens / std::max(1, model.config.n_layers));
      head_ms.push_back(sum.head_ms / o.tokens);
      if (progress)
        progress("depth " + std::to_string(depth) + ": repetition " + std::to_string(rep + 1) + "/" +
                     std::to_string(o.repeats),
                 rep + 1 == o.repeats);
    }
    filled = std::max(filled, depth + o.tokens);
    d.ms_per_token = Stats::of(tok_ms);
    d.ms_per_layer = Stats::of(layer_ms).median;
    d.ms_head = Stats::of(head_ms).median;
    d.tok_s = d.ms_per_token.median > 0 ? 1000.0 / d.ms_per_token.median : 0;
    d.traffic = model_token_traffic(model, depth, o.tokens, r.kv_elem_bytes);
    const double bytes = double(d.traffic.total_bytes());
    d.gbps = d.ms_per_token.median > 0 ? bytes / (d.ms_per_token.median * 1e6) : 0;
#ifdef PDVM_HAVE_CUDA
    if (cuda_backend) {
      d.launches_per_token = cuda_backend->launches_per_token();
      d.ms_head = 0;
      if (const std::string st = cuda_backend->stage_report(); !st.empty())
        std::fprintf(stderr, "stage times at depth %d (%s mode):\n%s", depth, o.gpu_mode.c_str(),
                     st.c_str());
    }
#endif
    r.results.push_back(d);
  }

  // --- the ceiling again, now that the model's pages and the backend are warm ------------------
  backend.reset();
  PDVM_TRY(measure_ceiling());
  r.load_avg.push_back(load_average_1m());
  for (DepthResult& d : r.results) {
    const double bytes = double(d.traffic.total_bytes());
    d.pct_of_ceiling = r.ceiling.read_gbps > 0 ? 100.0 * d.gbps / r.ceiling.read_gbps : 0;
    d.floor_ms = r.ceiling.read_gbps > 0 ? bytes / (r.ceiling.read_gbps * 1e6) : 0;
  }
  return r;
}

}  // namespace pdvm::bench
