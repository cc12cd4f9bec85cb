// ChatTemplate (see chat_template.h): variables as transformers' render_jinja_template passes
// them (messages, tools=None, documents=None, add_generation_prompt, bos_token, eos_token, plus
// extras), and the built-in templates.
#include "chat/chat_template.h"

#include "chat/jinja_parser.h"
#include "chat/jinja_render.h"
#include "tokenizer/tokenizer.h"

namespace pdvm::chat {
namespace {

using jinja::Value;

Value from_json(const nlohmann::ordered_json& j, int depth = 0) {
  if (depth > 256) return Value::none();
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return j.get<uint64_t>() <= uint64_t(INT64_MAX) ? Value::integer(int64_t(j.get<uint64_t>()))
                                                      : Value::floating(double(j.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float: return Value::floating(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Value::List items;
      for (const auto& x : j) items.push_back(from_json(x, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value::Dict items;
      for (const auto& [k, v] : j.items()) items.emplace_back(k, from_json(v, depth + 1));
      return Value::dict(std::move(items));
    }
    default: return Value::none();
  }
}

struct Builtin { const char* name; const char* source; };

// Sources: the chat_template of each family's reference model on the Hugging Face Hub
// (SmolLM2-135M-Instruct GGUF metadata; meta-llama/Llama-2-7b-chat-hf;
// meta-llama/Meta-Llama-3-8B-Instruct; mistralai/Mistral-7B-Instruct-v0.2;
// microsoft/Phi-3.5-mini-instruct; microsoft/phi-4 as in llama.cpp's tests, which appends the
// assistant header after every user turn), as recorded in tests/data/chat/. "qwen2"
// is Qwen2.5-Instruct's template without its tool branch, "chatml" the plain ChatML format.
constexpr Builtin kBuiltins[] = {
    {"chatml",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
     "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
    {"smollm2",
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
     "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
     "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
    {"qwen2",
     "{%- if messages[0]['role'] == 'system' %}\n"
     "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
     "{%- else %}\n"
     "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
     "{%- endif %}\n"
     "{%- for message in messages %}\n"
     "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\") %}\n"
     "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
     "    {%- endif %}\n"
     "{%- endfor %}\n"
     "{%- if add_generation_prompt %}\n"
     "    {{- '<|im_start|>assistant\\n' }}\n"
     "{%- endif %}\n"},
    {"llama2",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
     "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
     "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
     "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
     "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
     "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
     "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"},
    {"llama3",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
     "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
     "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"},
    {"mistral",
     "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n"
     "    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n"
     "{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n"
     "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
     "        {{- raise_exception('After the optional system message, conversation roles must alternate "
     "user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n"
     "        {%- if loop.first and system_message is defined %}\n"
     "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
     "        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n"
     "    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n"
     "    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the "
     "exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n"},
    {"phi3",
     "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + "
     "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + "
     "'<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + "
     "'<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}"
     "{{ eos_token }}{% endif %}"},
    {"phi4",
     "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' "
     "+ message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_s"
     "ep|>' + message['content'] + '<|im_end|><|im_start|>assistant<|im_sep|>'}}{% elif (message['role'] ="
     "= 'assistant') %}{{message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}"},
};

}  // namespace

Result<ChatTemplate> ChatTemplate::parse(std::string_view jinja_source) {
  ChatTemplate t;
  PDVM_ASSIGN_OR_RETURN(t.program_, jinja::parse_template(jinja_source));
  return t;
}

const std::string& ChatTemplate::source() const { return program_->source; }

Result<std::string> ChatTemplate::render(const std::vector<Message>& messages, bool add_generation_prompt,
                                         std::string_view bos_token, std::string_view eos_token) const {
  RenderOptions o;
  o.add_generation_prompt = add_generation_prompt;
  o.bos_token = std::string(bos_token);
  o.eos_token = std::string(eos_token);
  return render(messages, o);
}

Result<std::string> ChatTemplate::render(const std::vector<Message>& messages, const RenderOptions& options) const {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return render_json(list, options);
}

Result<std::string> ChatTemplate::render_json(const nlohmann::ordered_json& messages,
                                              const RenderOptions& options) const {
  if (!program_) return invalid_argument("chat template: not parsed");
  if (!messages.is_array()) return invalid_argument("chat template: messages must be a JSON array");
  Value::Dict vars;
  vars.emplace_back("messages", from_json(messages));
  vars.emplace_back("tools", Value::none());
  vars.emplace_back("documents", Value::none());
  vars.emplace_back("add_generation_prompt", Value::boolean(options.add_generation_prompt));
  vars.emplace_back("bos_token", Value::string(options.bos_token));
  vars.emplace_back("eos_token", Value::string(options.eos_token));
  if (options.extra.is_object()) {
    for (const auto& [k, v] : options.extra.items()) {
      bool replaced = false;
      for (auto& kv : vars) if (kv.first == k) { kv.second = from_json(v); replaced = true; }
      if (!replaced) vars.emplace_back(k, from_json(v));
    }
  }
  auto out = jinja::render_program(*program_, vars, options.now);
  if (!out.is_ok()) return out.status().with_context("chat template");
  return out;
}

Result<ChatTemplate> builtin_template(std::string_view family) {
  for (const auto& b : kBuiltins)
    if (family == b.name) return ChatTemplate::parse(b.source);
  std::string names;
  for (const auto& b : kBuiltins) names += (names.empty() ? "" : ", ") + std::string(b.name);
  return not_found("no built-in chat template named '" + std::string(family) + "' (have: " + names + ")");
}

std::vector<std::string> builtin_template_names() {
  std::vector<std::string> out;
  for (const auto& b : kBuiltins) out.emplace_back(b.name);
  return out;
}

RenderOptions render_options_for(const tokenizer::Tokenizer& tok, bool add_generation_prompt) {
  RenderOptions o;
  o.add_generation_prompt = add_generation_prompt;
  if (tok.bos_id() >= 0) o.bos_token = std::string(tok.token_text(tok.bos_id()));
  if (!tok.eos_ids().empty()) o.eos_token = std::string(tok.token_text(tok.eos_ids().front()));
  return o;
}

}  // namespace pdvm::chat
