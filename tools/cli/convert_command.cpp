// `pdvm convert` flags -> model::ConvertOptions -> convert_model_file, with a progress bar.
#include "convert_command.h"

#include <cstdio>
#include <sstream>
#include <string>

#include "model/convert.h"

namespace pdvm::cli {
namespace {

struct ConvertArgs {
  std::string model, out, format = "int8", prune = "magnitude", calibration, matrices;
  double sparsity = 0;
  int calibration_tokens = 256;
  bool lm_head = false;
  int threads = 0;
};

ConvertArgs& args() {
  static ConvertArgs a;  // this process's one convert command
  return a;
}

}  // namespace

CLI::App* add_convert_command(CLI::App& app) {
  ConvertArgs& a = args();
  auto* cmd = app.add_subcommand("convert", "write a native .pdvm file with pruned, int8-quantized matrices");
  cmd->add_option("model", a.model, "source model: HF directory, .gguf or .pdvm")->required();
  cmd->add_option("-o,--out", a.out, "output .pdvm file")->required();
  cmd->add_option("--format", a.format, "int8 (dense, scale per row), q8_0 (dense, scale per 32), mdcsr, bitmap")
      ->check(CLI::IsMember({"int8", "q8_0", "mdcsr", "bitmap"}));
  cmd->add_option("--sparsity", a.sparsity, "fraction of each row's weights pruned, [0, 1)")->check(CLI::Range(0.0, 0.999));
  cmd->add_option("--prune", a.prune, "magnitude (|W|) or activation (Wanda: |W| * ||x||)")
      ->check(CLI::IsMember({"magnitude", "activation"}));
  cmd->add_option("--calibration", a.calibration, "text file for activation-aware pruning");
  cmd->add_option("--calibration-tokens", a.calibration_tokens, "tokens of it to run (default 256)")->check(CLI::PositiveNumber);
  cmd->add_option("--matrices", a.matrices, "comma-separated layer matrices to compress (default: wq,wk,wv,wo,w_gate,w_up,w_down)");
  cmd->add_flag("--lm-head", a.lm_head, "compress the LM head too (dense formats only; never pruned)");
  cmd->add_option("-t,--threads", a.threads, "threads for the calibration pass")->check(CLI::NonNegativeNumber);
  return cmd;
}

int run_convert_command() {
  const ConvertArgs& a = args();
  model::ConvertOptions o;
  auto f = model::parse_compress_format(a.format);
  if (!f.is_ok()) { std::fprintf(stderr, "pdvm convert: %s\n", f.status().message().c_str()); return 2; }
  o.format = *f;
  o.sparsity = a.sparsity;
  o.prune = a.prune == "activation" ? model::PruneMethod::kWanda : model::PruneMethod::kMagnitude;
  o.calibration_file = a.calibration;
  o.calibration_tokens = a.calibration_tokens;
  o.compress_output = a.lm_head;
  o.threads = a.threads;
  if (o.prune == model::PruneMethod::kWanda && a.calibration.empty() && a.sparsity > 0) {
    std::fprintf(stderr, "pdvm convert: --prune activation needs --calibration FILE.txt\n");
    return 2;
  }
  if (!a.matrices.empty()) {
    o.matrices.clear();
    std::stringstream ss(a.matrices);
    for (std::string item; std::getline(ss, item, ',');) o.matrices.push_back(item);
  }
  o.progress = [](int done, int total, const std::string& name) {
    const int width = 30, fill = total > 0 ? done * width / total : width;
    std::fprintf(stderr, "\r[%.*s%*s] %d/%d %-24s", fill, "##############################", width - fill, "",
                 done, total, name.c_str());
    if (done == total) std::fprintf(stderr, "\n");
  };
  model::ConvertReport rep;
  Status s = model::convert_model_file(a.model, a.out, o, &rep);
  if (!s.is_ok()) {
    std::fprintf(stderr, "\npdvm convert: %s\n", s.message().c_str());
    return 1;
  }
  int64_t nnz = 0, dense = 0;
  for (const auto& m : rep.matrices)
    if (m.name.rfind("layers.", 0) == 0) { nnz += m.n_nonzero; dense += m.rows * m.cols; }
  std::printf("wrote %s: %zu bytes; layer matrices: %lld weights, %.1f%% kept, %zu bytes = %.3f bytes per weight\n",
              a.out.c_str(), rep.file_bytes, (long long)dense, dense ? 100.0 * double(nnz) / double(dense) : 0.0,
              rep.layer_weight_bytes, dense ? double(rep.layer_weight_bytes) / double(dense) : 0.0);
  return 0;
}

}  // namespace pdvm::cli
