// Run monitoring (metrics/monitor.h, metrics/report.h): status.json and Prometheus text content,
// promtool's verdict on it, the HTTP endpoint, `styleforge status` on synthetic run directories,
// and `styleforge report`'s PNGs and HTML.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "data/image.h"
#include "metrics/monitor.h"
#include "metrics/report.h"
#include "metrics/report_plot.h"
#include "tests/test_data_util.h"

namespace fs = std::filesystem;
using sf::test::ScratchDir;
using namespace sf::metrics;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

using Shell = sf::test::CliResult;
Shell shell(const std::string& cmd) { return sf::test::run_shell(cmd); }

// One stats.jsonl line as the training loop writes it.
std::string stats_line(double kimg, double total_sec, double p, double timestamp, double g_loss = 1.5) {
  nlohmann::json j;
  auto stat = [&](const char* name, double mean) { j[name] = {{"num", 1}, {"mean", mean}, {"std", 0}}; };
  stat("Loss/G/loss", g_loss);
  stat("Loss/D/loss", 0.75);
  stat("Loss/signs/real", 0.625);
  stat("Loss/r1_penalty", 0.03);
  stat("Progress/kimg", kimg);
  stat("Progress/augment", p);
  stat("Timing/sec_per_kimg", 20);
  stat("Timing/total_sec", total_sec);
  j["timestamp"] = timestamp;
  return j.dump();
}

void write_file(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

RunStatus sample_status() {
  RunStatus s;
  s.kimg = 12.5;
  s.total_kimg = 100;
  s.sec_per_kimg = 20;
  s.augment_p = 0.125;
  s.r_t = 0.625;
  s.losses = {{"Loss/G/loss", 1.5}, {"Loss/D/loss", 0.75}};
  RankHeartbeat a = local_heartbeat(0, 40, 20);
  RankHeartbeat b = local_heartbeat(1, 40, 25);
  b.host = "node\"07";  // needs escaping in a label value
  b.unix_time -= 120;
  s.ranks = {a, b};
  return s;
}

// A run directory with a checkpoint and a FID line.
fs::path make_run(const ScratchDir& tmp, const std::string& name) {
  fs::path dir = tmp.path / name;
  fs::create_directories(dir);
  write_file(dir / "network-snapshot-000012.h5", "x");
  write_file(dir / "network-snapshot-000008.h5", "x");
  write_file(dir / "metric-fid50k_full.jsonl",
             R"({"results": {"fid50k_full": 45.5}, "metric": "fid50k_full", "snapshot_pkl": "network-snapshot-000008.h5", "timestamp": 1700000000})"
             "\n"
             R"({"results": {"fid50k_full": 30.25}, "metric": "fid50k_full", "snapshot_pkl": "network-snapshot-000012.h5", "timestamp": 1700000100})"
             "\n{\"results\": {\"fid50k_fu");  // a line still being appended
  write_file(dir / "metric-kid50k_full.jsonl",
             R"({"results": {"kid50k_full": 0.0125}, "metric": "kid50k_full", "snapshot_pkl": "network-snapshot-000012.h5", "timestamp": 1700000100})"
             "\n");
  return dir;
}

}  // namespace

TEST(Monitor, StatusFromStatsLine) {
  RunStatus s = status_from_stats(nlohmann::json::parse(stats_line(2.5, 100, 0.25, 1700000000.5)));
  EXPECT_DOUBLE_EQ(s.kimg, 2.5);
  EXPECT_DOUBLE_EQ(s.augment_p, 0.25);
  EXPECT_DOUBLE_EQ(s.sec_per_kimg, 20);
  EXPECT_DOUBLE_EQ(s.r_t, 0.625);
  EXPECT_DOUBLE_EQ(s.unix_time, 1700000000.5);
  EXPECT_EQ(s.losses.size(), 4u);  // every Loss/* stat
  EXPECT_DOUBLE_EQ(s.losses.at("Loss/G/loss"), 1.5);
  EXPECT_DOUBLE_EQ(s.losses.at("Loss/r1_penalty"), 0.03);
}

TEST(Monitor, PublishWritesStatusJsonAndPrometheusFiles) {
  ScratchDir tmp("monitor_publish");
  fs::path run = make_run(tmp, "00003-brains-auto1");
  fs::create_directories(tmp.path / "textfile");
  setenv("STYLEFORGE_PROM_DIR", (tmp.path / "textfile").c_str(), 1);
  publish_run_status(run.string(), sample_status());
  unsetenv("STYLEFORGE_PROM_DIR");

  nlohmann::json j = nlohmann::json::parse(slurp((run / "status.json").string()));
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(j["run"], "00003-brains-auto1");
  EXPECT_DOUBLE_EQ(j["kimg"].get<double>(), 12.5);
  EXPECT_EQ(j["last_checkpoint"], "network-snapshot-000012.h5");  // filled from the run dir
  EXPECT_GT(j["last_checkpoint_unix_time"].get<double>(), 0);
  EXPECT_GT(j["unix_time"].get<double>(), 1.6e9);
  EXPECT_EQ(j["ranks"].size(), 2u);
  EXPECT_DOUBLE_EQ(j["metrics"]["fid50k_full"].get<double>(), 30.25);
  RunStatus back;
  ASSERT_TRUE(read_run_status(run.string(), &back));
  EXPECT_EQ(back.ranks.at(1).host, "node\"07");
  EXPECT_DOUBLE_EQ(back.losses.at("Loss/D/loss"), 0.75);

  const std::string prom = slurp((run / "styleforge.prom").string());
  EXPECT_TRUE(contains(prom, "# TYPE styleforge_kimg gauge\nstyleforge_kimg{run=\"00003-brains-auto1\"} 12.5\n")) << prom;
  EXPECT_TRUE(contains(prom, "styleforge_total_kimg{run=\"00003-brains-auto1\"} 100\n"));
  EXPECT_TRUE(contains(prom, "styleforge_seconds_per_kimg{run=\"00003-brains-auto1\"} 20\n"));
  EXPECT_TRUE(contains(prom, "styleforge_augment_p{run=\"00003-brains-auto1\"} 0.125\n"));
  EXPECT_TRUE(contains(prom, "styleforge_r_t{run=\"00003-brains-auto1\"} 0.625\n"));
  EXPECT_TRUE(contains(prom, "styleforge_loss{run=\"00003-brains-auto1\",stat=\"Loss/G/loss\"} 1.5\n"));
  EXPECT_TRUE(contains(prom, "styleforge_metric{run=\"00003-brains-auto1\",metric=\"fid50k_full\"} 30.25\n"));
  EXPECT_TRUE(contains(prom, "styleforge_metric{run=\"00003-brains-auto1\",metric=\"kid50k_full\"} 0.0125\n"));
  EXPECT_TRUE(contains(prom, "styleforge_metric_kimg{run=\"00003-brains-auto1\",metric=\"fid50k_full\"} 12\n"));
  EXPECT_TRUE(contains(prom, "styleforge_state{run=\"00003-brains-auto1\",state=\"running\"} 1\n"));
  EXPECT_TRUE(contains(prom, "styleforge_state{run=\"00003-brains-auto1\",state=\"done\"} 0\n"));
  EXPECT_TRUE(contains(prom, "styleforge_rank_heartbeat_age_seconds{run=\"00003-brains-auto1\",rank=\"1\",host=\"node\\\"07\"} 12"))
      << prom;  // about 120 s
  EXPECT_TRUE(contains(prom, "styleforge_checkpoint_age_seconds{run=\"00003-brains-auto1\"} "));
  EXPECT_TRUE(contains(prom, "# HELP styleforge_r_t "));
  // The textfile-collector copy is the same text; no temporary file is left anywhere.
  EXPECT_EQ(slurp((tmp.path / "textfile" / "00003-brains-auto1.prom").string()), prom);
  for (const auto& dir : {run, tmp.path / "textfile"})
    for (const auto& e : fs::directory_iterator(dir)) EXPECT_FALSE(contains(e.path().filename().string(), ".tmp-")) << e.path();

  set_run_state(run.string(), "requeue");
  ASSERT_TRUE(read_run_status(run.string(), &back));
  EXPECT_EQ(back.state, "requeue");
  EXPECT_TRUE(contains(slurp((run / "styleforge.prom").string()), "state=\"requeue\"} 1\n"));
}

// promtool is installed by scripts/install-deps.sh (Debian package prometheus): its absence fails.
TEST(Monitor, PromtoolAcceptsTheTextFile) {
  ScratchDir tmp("monitor_promtool");
  fs::path run = make_run(tmp, "slurm-1234");
  RunStatus s = sample_status();
  s.losses["Loss/pl_penalty"] = std::nan("");  // a diverged statistic is exported as NaN
  publish_run_status(run.string(), s);
  Shell which = shell("command -v promtool");
  ASSERT_EQ(which.rc, 0) << "promtool not found: bash scripts/install-deps.sh installs it (package prometheus)";
  Shell check = shell("promtool check metrics < " + (run / "styleforge.prom").string());
  EXPECT_EQ(check.rc, 0) << check.out;
  EXPECT_EQ(check.out, "") << check.out;  // no lint problems either
}

TEST(Monitor, HttpEndpointServesTheSameNames) {
  if (!metrics_http_available()) {
    EXPECT_THROW(MetricsHttpServer("127.0.0.1:0"), std::runtime_error);
    return;
  }
  MetricsHttpServer server("127.0.0.1:0");
  ASSERT_GT(server.port(), 0);
  server.update(sample_status(), "run-a", {{"fid50k_full", 30.25, "network-snapshot-000012.h5", 12, 1700000100}});
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string resp;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_TRUE(contains(resp, "200")) << resp.substr(0, 200);
  EXPECT_TRUE(contains(resp, "styleforge_kimg{run=\"run-a\"} 12.5")) << resp;
  EXPECT_TRUE(contains(resp, "styleforge_metric{run=\"run-a\",metric=\"fid50k_full\"} 30.25")) << resp;
  EXPECT_TRUE(contains(resp, "styleforge_rank_heartbeat_age_seconds{run=\"run-a\",rank=\"1\",host=\"node\\\"07\"}")) << resp;
  EXPECT_TRUE(contains(resp, "# TYPE styleforge_state gauge")) << resp;
}

TEST(MonitorStatus, SummarizesSyntheticRunDirectories) {
  ScratchDir tmp("monitor_status");
  const double now = unix_now();
  // A fresh status: running, with ETA, FID/KID, the slowest rank (its heartbeat is 2 minutes old).
  fs::path run = make_run(tmp, "slurm-77");
  publish_run_status(run.string(), sample_status());
  RunSummary r = summarize_run(run.string(), now + 5, 30 * 60);
  EXPECT_EQ(r.state, "running");
  EXPECT_NEAR(r.eta_sec, (100 - 12.5) * 20, 1e-6);
  EXPECT_EQ(r.slowest_rank, 1);
  EXPECT_EQ(r.slowest_host, "node\"07");
  EXPECT_EQ(r.checkpoint, "network-snapshot-000012.h5");
  ASSERT_EQ(r.metrics.size(), 2u);
  const std::string line = status_line(r);
  for (const char* part : {"slurm-77", "running", "12.5/100.0", "20", "29m 10s", "0.125", "fid50k_full=30.25",
                           "kid50k_full=0.0125", "r1@node\"07", "network-snapshot-000012.h5 ("})
    EXPECT_TRUE(contains(line, part)) << part << " missing from: " << line;
  EXPECT_TRUE(contains(status_header(), "SLOWEST RANK"));

  // Two hours later the same status is stalled.
  RunSummary stale = summarize_run(run.string(), now + 7200, 30 * 60);
  EXPECT_EQ(stale.state, "stalled");
  EXPECT_TRUE(contains(status_line(stale), "stalled 2h 00m")) << status_line(stale);

  // A run without status.json: derived from stats.jsonl, log.txt and training_options.json.
  fs::path old = tmp.path / "00001-old";
  fs::create_directories(old);
  write_file(old / "stats.jsonl", stats_line(0.5, 10, 0.0, now - 100) + "\n" + stats_line(1.0, 20, 0.01, now - 50) + "\n");
  write_file(old / "training_options.json", R"({"total_kimg": 4.0, "kimg_per_tick": 0.5})");
  write_file(old / "log.txt", "tick 1\nExiting for requeue.\n");
  RunSummary o = summarize_run(old.string(), now, 30 * 60);
  EXPECT_FALSE(o.has_status);
  EXPECT_EQ(o.state, "requeue");
  EXPECT_DOUBLE_EQ(o.status.kimg, 1.0);
  EXPECT_DOUBLE_EQ(o.status.total_kimg, 4.0);
  EXPECT_NEAR(o.eta_sec, 3.0 * 20, 1e-9);
  write_file(old / "log.txt", "tick 1\nExiting...\n");
  EXPECT_EQ(summarize_run(old.string(), now, 30 * 60).state, "done");

  EXPECT_THROW(summarize_run((tmp.path / "missing").string(), now, 60), std::runtime_error);
  EXPECT_EQ(format_duration(35), "35s");
  EXPECT_EQ(format_duration(245), "4m 05s");
  EXPECT_EQ(format_duration(2 * 86400 + 3 * 3600 + 60), "2d 03h");
  EXPECT_EQ(format_duration(-1), "-");
}

TEST(MonitorStatus, ColumnsLineUpWithLongRunNamesAndFinishedRunsHaveNoHeartbeat) {
  ScratchDir tmp("monitor_status_align");
  const double now = unix_now();
  // A 52-character run name (an --outdir run of a long dataset name) and a short one.
  const std::string long_name = "00012-brain-mri-t1-axial-paper256-gamma10-ada-bgc-m";
  fs::path a = make_run(tmp, long_name);
  publish_run_status(a.string(), sample_status());
  fs::path b = make_run(tmp, "slurm-9");
  RunStatus done = sample_status();
  done.state = "done";
  done.kimg = 100;
  publish_run_status(b.string(), done);
  std::vector<RunSummary> runs = {summarize_run(a.string(), now + 5, 1800), summarize_run(b.string(), now + 5, 1800)};
  ASSERT_EQ(runs[1].state, "done");
  const std::vector<std::string> lines = status_table(runs);
  ASSERT_EQ(lines.size(), 3u);
  // Every column starts where its header does: the cell at the header's offset is preceded by
  // a space and begins with the expected text.
  const std::string& header = lines[0];
  auto starts_at = [&](const std::string& line, const char* col, const std::string& text) {
    const size_t at = header.find(col);
    return at != std::string::npos && line.size() > at && line.compare(at, text.size(), text) == 0 && line[at - 1] == ' ';
  };
  EXPECT_EQ(lines[1].rfind(long_name + "  ", 0), 0u) << lines[1];
  EXPECT_TRUE(starts_at(lines[1], "STATE", "running")) << header << "\n" << lines[1];
  EXPECT_TRUE(starts_at(lines[2], "STATE", "done")) << header << "\n" << lines[2];
  EXPECT_TRUE(starts_at(lines[1], "KIMG", "12.5/100.0")) << header << "\n" << lines[1];
  EXPECT_TRUE(starts_at(lines[2], "KIMG", "100.0/100.0")) << header << "\n" << lines[2];
  EXPECT_TRUE(starts_at(lines[1], "FID/KID", "fid50k_full=30.25")) << header << "\n" << lines[1];
  EXPECT_TRUE(starts_at(lines[2], "SLOWEST RANK", "r1@")) << header << "\n" << lines[2];
  EXPECT_TRUE(starts_at(lines[1], "LAST CHECKPOINT", "network-snapshot-000012.h5")) << header << "\n" << lines[1];
  EXPECT_TRUE(starts_at(lines[2], "LAST CHECKPOINT", "network-snapshot-000012.h5")) << header << "\n" << lines[2];
  // The running run shows how old its slowest rank's heartbeat is; the finished one does not.
  EXPECT_TRUE(contains(lines[1], " hb 2m")) << lines[1];
  EXPECT_FALSE(contains(lines[2], " hb ")) << lines[2];
  EXPECT_TRUE(contains(lines[2], "r1@node\"07 25s/k  ")) << lines[2];
}

#ifdef STYLEFORGE_BINARY
TEST(MonitorStatus, CommandPrintsOneLinePerRun) {
  ScratchDir tmp("monitor_status_cli");
  fs::path a = make_run(tmp, "slurm-1");
  publish_run_status(a.string(), sample_status());
  fs::path b = tmp.path / "slurm-2";
  fs::create_directories(b);
  write_file(b / "stats.jsonl", stats_line(0.25, 10, 0.0, unix_now()) + "\n");
  // A folder of runs expands to its run directories.
  Shell out = shell(std::string(STYLEFORGE_BINARY) + " status " + tmp.path.string());
  EXPECT_EQ(out.rc, 0) << out.out;
  std::istringstream lines(out.out);
  std::string header, l1, l2, extra;
  std::getline(lines, header);
  std::getline(lines, l1);
  std::getline(lines, l2);
  EXPECT_FALSE(std::getline(lines, extra)) << out.out;
  EXPECT_TRUE(contains(header, "STATE")) << out.out;
  EXPECT_TRUE(contains(l1, "slurm-1") && contains(l1, "running") && contains(l1, "fid50k_full=30.25")) << l1;
  EXPECT_TRUE(contains(l2, "slurm-2") && contains(l2, "running")) << l2;
  Shell json = shell(std::string(STYLEFORGE_BINARY) + " status --json " + a.string());
  ASSERT_EQ(json.rc, 0) << json.out;
  nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j.at(0)["state"], "running");
  EXPECT_EQ(j.at(0)["slowest_rank"]["rank"], 1);
  Shell missing = shell(std::string(STYLEFORGE_BINARY) + " status " + (tmp.path / "nope").string());
  EXPECT_EQ(missing.rc, 1) << missing.out;
}
#endif

TEST(Report, WritesPlotsAndHtml) {
  ScratchDir tmp("monitor_report");
  fs::path run = make_run(tmp, "00002-report");
  // Ticks 0..9, a process killed after tick 9 having checkpointed at tick 7, resumed: the ticks
  // it re-does (8, 9) replace the old ones and a resume mark sits at kimg 0.7.
  std::string stats;
  for (int i = 0; i <= 9; ++i) stats += stats_line(i * 0.1, 10.0 * (i + 1), 0.01 * i, 1.7e9 + i, 9.0) + "\n";
  for (int i = 8; i <= 12; ++i) stats += stats_line(i * 0.1, 10.0 * (i - 7), 0.01 * i, 1.7e9 + 100 + i) + "\n";
  write_file(run / "stats.jsonl", stats);
  write_file(run / "training_options.json", R"({"aug": "ada", "ada_target": 0.6, "kimg_per_tick": 0.1, "total_kimg": 2})");
  sf::data::Image fakes;
  fakes.width = fakes.height = 8;
  fakes.channels = 3;
  fakes.pixels.assign(8 * 8 * 3, 128);
  sf::data::write_png_file((run / "fakes000000.png").string(), fakes);
  sf::data::write_png_file((run / "fakes000001.png").string(), fakes);

  StatsHistory h = read_stats_history(run.string());
  ASSERT_EQ(h.kimg.size(), 13u);
  EXPECT_NEAR(h.kimg.back(), 1.2, 1e-12);
  ASSERT_EQ(h.resumes.size(), 1u);
  EXPECT_NEAR(h.resumes[0], 0.7, 1e-12);
  EXPECT_DOUBLE_EQ(h.mean.at("Loss/G/loss")[8], 1.5);  // the resumed process's value
  EXPECT_DOUBLE_EQ(h.mean.at("Loss/G/loss")[7], 9.0);

  fs::path out = tmp.path / "report-out";
  ReportFiles files = write_report(run.string(), out.string());
  ASSERT_GE(files.plots.size(), 6u);
  for (const char* name : {"plot-losses.png", "plot-penalties.png", "plot-augment.png", "plot-fid.png", "plot-kid.png", "plot-speed.png"}) {
    ASSERT_TRUE(fs::exists(out / name)) << name;
    sf::data::Image img = sf::data::read_image_file((out / name).string());
    EXPECT_EQ(img.width, 960);
    EXPECT_EQ(img.height, 540);
    // Not blank: some pixels of each plot are the first series' colour (or text/grid at least).
    size_t dark = 0;
    for (size_t i = 0; i < img.pixels.size(); i += 3) dark += img.pixels[i] < 200;
    EXPECT_GT(dark, 1000u) << name;
  }
  const std::string html = slurp(files.html);
  EXPECT_EQ(files.html, (out / "report.html").string());
  for (const char* part : {"<img src=\"plot-losses.png\"", "<img src=\"plot-augment.png\"", "<img src=\"plot-fid.png\"",
                           "<img src=\"fakes000001.png\"", "00002-report", "fid50k_full", "30.25", "network-snapshot-000012.h5",
                           "resumed", "</html>"})
    EXPECT_TRUE(contains(html, part)) << part;
  EXPECT_TRUE(fs::exists(out / "fakes000001.png"));  // copied next to the page

  // Without an --out the report goes into the run directory; a run that has only started (its
  // options, no tick yet) still gets its page.
  fs::path fresh = tmp.path / "00003-fresh";
  fs::create_directories(fresh);
  write_file(fresh / "training_options.json", R"({"aug": "ada", "total_kimg": 2})");
  ReportFiles e = write_report(fresh.string());
  EXPECT_TRUE(fs::exists(fresh / "report.html"));
  EXPECT_TRUE(fs::exists(fresh / "plot-losses.png"));
  EXPECT_TRUE(contains(slurp(e.html), "No fakes grid yet"));

  // An empty folder is no run: refused, nothing written into it.
  fs::path empty = tmp.path / "00004-empty";
  fs::create_directories(empty);
  try {
    write_report(empty.string());
    ADD_FAILURE() << "an empty folder was reported";
  } catch (const std::runtime_error& err) {
    EXPECT_TRUE(contains(err.what(), "not a run directory")) << err.what();
  }
  EXPECT_TRUE(fs::is_empty(empty));
}

#ifdef STYLEFORGE_BINARY
TEST(Report, CommandRefusesEmptyFoldersAndReportsEachRunOfAFolder) {
  ScratchDir tmp("report_cli");
  const std::string bin = STYLEFORGE_BINARY;
  // An empty folder and a file: one line on stderr, exit code != 0, no plots.
  fs::path empty = tmp.path / "empty";
  fs::create_directories(empty);
  Shell e = shell(bin + " report " + empty.string());
  EXPECT_NE(e.rc, 0) << e.out;
  EXPECT_EQ(std::count(e.out.begin(), e.out.end(), '\n'), 1) << e.out;
  EXPECT_TRUE(contains(e.out, empty.string() + ": not a run directory")) << e.out;
  EXPECT_TRUE(fs::is_empty(empty));
  Shell missing = shell(bin + " report " + (tmp.path / "nope").string());
  EXPECT_NE(missing.rc, 0) << missing.out;
  EXPECT_TRUE(contains(missing.out, "nope: no such directory")) << missing.out;

  // A folder of runs: each run gets its own report (into the run, or --out/<run name>/).
  fs::path runs = tmp.path / "runs";
  for (const char* name : {"00000-a", "00001-b"}) {
    fs::create_directories(runs / name);
    write_file(runs / name / "stats.jsonl", stats_line(0.1, 10, 0.0, 1.7e9) + "\n" + stats_line(0.2, 20, 0.01, 1.7e9 + 10) + "\n");
  }
  fs::create_directories(runs / "not-a-run");
  Shell all = shell(bin + " report " + runs.string());
  ASSERT_EQ(all.rc, 0) << all.out;
  EXPECT_TRUE(fs::exists(runs / "00000-a" / "report.html"));
  EXPECT_TRUE(fs::exists(runs / "00001-b" / "plot-losses.png"));
  EXPECT_TRUE(fs::is_empty(runs / "not-a-run"));
  EXPECT_FALSE(fs::exists(runs / "report.html"));
  EXPECT_TRUE(contains(all.out, "reported 2 run(s)")) << all.out;
  Shell to = shell(bin + " report " + runs.string() + " --out " + (tmp.path / "out").string());
  ASSERT_EQ(to.rc, 0) << to.out;
  EXPECT_TRUE(fs::exists(tmp.path / "out" / "00000-a" / "report.html"));
  EXPECT_TRUE(fs::exists(tmp.path / "out" / "00001-b" / "report.html"));
}
#endif

TEST(Report, TicksAndFont) {
  double step = 0;
  std::vector<double> t = nice_ticks(0, 0.1, 8, &step);
  EXPECT_NEAR(step, 0.02, 1e-12);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(tick_label(t[3], step), "0.06");
  t = nice_ticks(-3, 247, 8, &step);
  EXPECT_DOUBLE_EQ(step, 50);
  EXPECT_EQ(t.front(), 0);
  EXPECT_EQ(tick_label(200, step), "200");
  // Glyphs are drawn: 'A' sets pixels, ' ' none; the text width follows the 6-pixel cell.
  Canvas c(40, 20);
  c.text(0, 0, "A", 1, {0, 0, 0});
  int set = 0;
  for (size_t i = 0; i < c.image().pixels.size(); i += 3) set += c.image().pixels[i] == 0;
  EXPECT_EQ(set, 18);  // the 5x7 'A'
  EXPECT_EQ(Canvas::text_width("abc", 2), (3 * 6 - 1) * 2);
}
