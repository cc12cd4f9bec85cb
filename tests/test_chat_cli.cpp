// Terminal test of `pdvm chat` with the default model, driven through tmux (send-keys /
// capture-pane) as a person would use it: two turns where the second answer needs the first
// turn's context (kept in the KV cache), then /clear and the same question as a control (the
// answer must no longer know the name), /exit; and Ctrl-C stopping a reply, then quitting at the
// prompt. Greedy (--temp 0), so the replies are fixed for a given model file.
//
// The phrasing: SmolLM2-135M answers "What is my name?" with its own name ("Elena") after
// "My name is Ada." — transformers' greedy reply from the same GGUF is the same — so the second
// turn asks "Please repeat my name.", which it answers with "Ada" only when turn one is in context.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;

std::string run_capture(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  if (status) *status = st;
  return out;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string model_path() {
  if (const char* env = std::getenv("PDVM_MODEL"); env && *env) return env;
  return std::string(PDVM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// The pdvm binary: PDVM_CHAT_CLI overrides (a build with chat wired in), else the built CLI.
std::string cli_path() {
  if (const char* env = std::getenv("PDVM_CHAT_CLI"); env && *env) return env;
  return PDVM_CLI_PATH;
}

// A tmux session on a private server socket, killed when the test ends.
class Tmux {
 public:
  Tmux() : socket_("pdvm_chat_test_" + std::to_string(getpid())), name_("chat") {}
  ~Tmux() { std::system(("tmux -L " + socket_ + " kill-server >/dev/null 2>&1").c_str()); }

  bool start(const std::string& command) {
    const std::string cmd = "tmux -L " + socket_ + " new-session -d -s " + name_ + " -x 200 -y 60 " + quote(command);
    return std::system(cmd.c_str()) == 0;
  }
  void type(const std::string& text) {
    std::system(("tmux -L " + socket_ + " send-keys -t " + name_ + " -l " + quote(text)).c_str());
    std::system(("tmux -L " + socket_ + " send-keys -t " + name_ + " Enter").c_str());
  }
  void key(const std::string& k) { std::system(("tmux -L " + socket_ + " send-keys -t " + name_ + " " + k).c_str()); }
  bool alive() { return std::system(("tmux -L " + socket_ + " has-session -t " + name_ + " 2>/dev/null").c_str()) == 0; }
  // The whole pane history, wrapped lines joined.
  std::string screen() { return run_capture("tmux -L " + socket_ + " capture-pane -p -J -t " + name_ + " -S -3000 2>/dev/null"); }

 private:
  std::string socket_, name_;
};

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) {
    while (!l.empty() && (l.back() == ' ' || l.back() == '\r')) l.pop_back();
    out.push_back(l);
  }
  while (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

// Prompt lines are those starting with '>' (the prompt, possibly followed by what was typed).
int prompts(const std::vector<std::string>& ls) {
  int n = 0;
  for (const auto& l : ls) n += !l.empty() && l[0] == '>';
  return n;
}

bool wait_until(const std::function<bool()>& ready, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return ready();
}

// Waits until the pane shows `n` prompts and the last line is an empty prompt (a reply ended).
bool wait_for_prompt(Tmux& t, int n, double seconds) {
  return wait_until([&] {
    const auto ls = lines_of(t.screen());
    return prompts(ls) >= n && !ls.empty() && ls.back() == ">";
  }, seconds);
}

// The reply printed after the prompt line "> <question>" (the `occurrence`-th such line).
std::string answer_to(const std::string& screen, const std::string& question, int occurrence = 1) {
  const auto ls = lines_of(screen);
  int seen = 0;
  for (size_t i = 0; i < ls.size(); ++i) {
    if (ls[i] != "> " + question || ++seen != occurrence) continue;
    std::string out;
    for (size_t k = i + 1; k < ls.size() && (ls[k].empty() || ls[k][0] != '>'); ++k) out += ls[k] + "\n";
    return out;
  }
  return "";
}

class ChatCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v tmux >/dev/null 2>&1") != 0) GTEST_SKIP() << "tmux is not installed (apt-get install tmux)";
    if (!fs::exists(model_path()))
      GTEST_SKIP() << "default model not found at " << model_path() << " (set PDVM_MODEL or run scripts/setup.sh)";
    // CLI11 prints the help for any --help, so look for the subcommand in the listing.
    const std::string help = run_capture(quote(cli_path()) + " --help 2>&1");
    if (help.find("\n  chat ") == std::string::npos)
      GTEST_SKIP() << cli_path() << " has no 'chat' subcommand (set PDVM_CHAT_CLI to a build that has it)";
  }
  std::string command(int n_predict = 48) const {
    return quote(cli_path()) + " chat -m " + quote(model_path()) + " --temp 0 -c 1024 -n " + std::to_string(n_predict);
  }
};

TEST_F(ChatCli, SecondTurnUsesFirstTurnContext) {
  Tmux t;
  ASSERT_TRUE(t.start(command()));
  ASSERT_TRUE(wait_for_prompt(t, 1, 180)) << "no prompt after loading the model:\n" << t.screen();

  t.type("My name is Ada.");
  ASSERT_TRUE(wait_for_prompt(t, 2, 180)) << "first reply did not finish:\n" << t.screen();
  t.type("Please repeat my name.");
  ASSERT_TRUE(wait_for_prompt(t, 3, 180)) << "second reply did not finish:\n" << t.screen();
  const std::string second = answer_to(t.screen(), "Please repeat my name.");
  EXPECT_NE(second.find("Ada"), std::string::npos) << "second answer does not use the first turn:\n" << t.screen();

  // Control: after /clear the same question has no name to repeat.
  t.type("/clear");
  ASSERT_TRUE(wait_until([&] { return t.screen().find("[conversation cleared]") != std::string::npos; }, 30));
  t.type("Please repeat my name.");
  ASSERT_TRUE(wait_for_prompt(t, 5, 180)) << t.screen();
  const std::string control = answer_to(t.screen(), "Please repeat my name.", 2);
  EXPECT_FALSE(control.empty()) << t.screen();
  EXPECT_EQ(control.find("Ada"), std::string::npos) << "after /clear the model still knows the name:\n" << t.screen();

  t.type("/exit");
  EXPECT_TRUE(wait_until([&] { return !t.alive(); }, 30)) << "/exit did not end pdvm chat:\n" << t.screen();
}

TEST_F(ChatCli, CtrlCStopsReplyThenQuitsAtPrompt) {
  Tmux t;
  ASSERT_TRUE(t.start(command(4000)));
  ASSERT_TRUE(wait_for_prompt(t, 1, 180)) << t.screen();
  t.type("Write a very long story about a dragon who learns to code.");
  // Wait for the reply to start streaming, then interrupt it.
  ASSERT_TRUE(wait_until([&] {
    const auto ls = lines_of(t.screen());
    return !ls.empty() && ls.back().size() > 20 && ls.back()[0] != '>';
  }, 180)) << t.screen();
  t.key("C-c");
  ASSERT_TRUE(wait_for_prompt(t, 2, 60)) << "Ctrl-C did not return to the prompt:\n" << t.screen();
  EXPECT_NE(t.screen().find("[stopped]"), std::string::npos) << t.screen();
  EXPECT_TRUE(t.alive());
  // The conversation goes on after an interrupted reply.
  t.type("Thanks.");
  if (!wait_for_prompt(t, 3, 20)) {  // a long reply: stop this one too
    t.key("C-c");
    ASSERT_TRUE(wait_for_prompt(t, 3, 60)) << t.screen();
  }
  EXPECT_FALSE(answer_to(t.screen(), "Thanks.").empty()) << t.screen();
  t.key("C-c");
  EXPECT_TRUE(wait_until([&] { return !t.alive(); }, 30)) << "Ctrl-C at the prompt did not quit:\n" << t.screen();
}

}  // namespace
