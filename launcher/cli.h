// The styleforge command line: a table of subcommands, each {name, summary, run}.
//
// `styleforge <subcommand> [options]` looks the name up in the table and calls its run function
// with the remaining arguments. Every subcommand parses its own options with
// Boost.Program_options through parse_options(), which gives each one `--help` and a uniform
// one-line error for bad flags. Nothing here includes torch: subcommands that need it call into
// trainer/ or metrics/ through torch-free headers.
#pragma once

#include <boost/program_options.hpp>

#include <functional>
#include <string>
#include <vector>

namespace sf::cli {

// Process exit codes shared by all subcommands.
enum ExitCode : int {
  kOk = 0,
  kFailure = 1,   // the command ran and failed (bad data, numerical mismatch, ...)
  kUsage = 2,     // bad command line
  kRequeue = 3,   // stopped on a signal after a checkpoint: requeue the job
};

struct Subcommand {
  const char* name;
  const char* summary;
  std::function<int(const std::vector<std::string>& args)> run;
};

// The table, in the order `styleforge --help` prints it.
const std::vector<Subcommand>& subcommands();

int real_main(int argc, char** argv);

// Parses `args` against `desc` (and positional `pos`, may be null) into `vm`.
// Returns -1 when the caller should go on, otherwise the exit code to return (help printed: kOk;
// bad flag: kUsage with a one-line error on stderr).
int parse_options(const std::string& command, const std::string& usage, const std::vector<std::string>& args,
                  const boost::program_options::options_description& desc, boost::program_options::variables_map& vm,
                  const boost::program_options::positional_options_description* pos = nullptr);

// Subcommand entry points (one file each under launcher/).
int cmd_version(const std::vector<std::string>& args);
int cmd_selftest(const std::vector<std::string>& args);
int cmd_pack(const std::vector<std::string>& args);
int cmd_phantoms(const std::vector<std::string>& args);
int cmd_bench_data(const std::vector<std::string>& args);
int cmd_train(const std::vector<std::string>& args);
int cmd_generate(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_bench_comm(const std::vector<std::string>& args);
int cmd_bench_ops(const std::vector<std::string>& args);
int cmd_metrics(const std::vector<std::string>& args);
int cmd_embed(const std::vector<std::string>& args);
int cmd_status(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);
int cmd_import(const std::vector<std::string>& args);
int cmd_export(const std::vector<std::string>& args);
int cmd_vtt(const std::vector<std::string>& args);
int cmd_vtt_score(const std::vector<std::string>& args);
int cmd_classify(const std::vector<std::string>& args);

}  // namespace sf::cli
