// The pdvm subcommands. main.cpp parses flags into these option structs; each run_* function
// does the work and returns the process exit code (0 ok, 1 model/runtime error).
#pragma once

#include <string>
#include <vector>

#include "generate/generate.h"

namespace pdvm::cli {

struct ModelArgs {
  std::string model;        // path; "" -> the default model
  int context = 0;          // -c
  int threads = 0;          // -t
  std::string kernels = "fast";  // fast | reference
  std::string backend = "cpu";   // cpu | cuda
  std::string gpu_mode = "token";  // cuda: ops | layer | token (the fastest in every format)
};

struct RunArgs {
  ModelArgs m;
  std::string prompt;
  bool chat = true;         // apply the chat template
  std::string system;       // system prompt ("" -> the template's default)
  std::string template_name;  // --template: built-in name or Jinja file ("" -> the model's)
  bool ignore_eos = false;
  bool stats = true;
  generate::GenerateOptions gen;
};

struct LogitsArgs {
  ModelArgs m;
  std::vector<int> ids;
  int top = 0;              // > 0: print only the top N per position
};

std::string default_model_path();
int run_generate(const RunArgs& a);
int run_inspect(const std::string& model);
int run_logits(const LogitsArgs& a);
int run_tokenize(const std::string& model, const std::string& text, bool json, bool decode);

}  // namespace pdvm::cli
