#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>

namespace {

constexpr unsigned watchdog_seconds = 60;
const char* current_test = "";

// A hung test fails loudly instead of stalling the suite: every test case re-arms the alarm.
struct watchdog final : doctest::IReporter {
  explicit watchdog(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override { alarm(0); }
  void test_case_start(const doctest::TestCaseData& tc) override {
    current_test = tc.m_name;
    alarm(watchdog_seconds);
  }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override { alarm(0); }
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

DOCTEST_REGISTER_LISTENER("watchdog", 1, watchdog);

#if defined(__SANITIZE_THREAD__)
#define EVCO_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EVCO_TEST_TSAN 1
#endif
#endif
#ifdef EVCO_TEST_TSAN
#include <sanitizer/common_interface_defs.h>
#endif

int main(int argc, char** argv) {
#ifdef EVCO_TEST_TSAN
  // clang's ThreadSanitizer symbolizes through a child process (llvm-symbolizer) with two
  // pipes, started the first time it needs a stack's names: when it checks a race against
  // tests/tsan.supp. Started now, its pipes are there before any test counts descriptors.
  char name[64];
  __sanitizer_symbolize_pc(__builtin_return_address(0), "%f", name, sizeof name);
#endif
  std::signal(SIGALRM, [](int) {
    static const char msg[] = "watchdog: test case hung, aborting\n";
    (void)!write(2, msg, sizeof msg - 1);
    (void)!write(2, current_test, __builtin_strlen(current_test));
    (void)!write(2, "\n", 1);
    std::_Exit(3);
  });
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
