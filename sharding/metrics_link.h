// The channel between trainer rank 0 and the metrics rank (MPI point-to-point on a private
// duplicate of MPI_COMM_WORLD).
//
// Trainer side: send_snapshot() hands over a snapshot (a JSON header: kimg, checkpoint path,
// generator config, and one flat float32 buffer of G_ema's tensors) with non-blocking sends and
// returns at once; the link keeps the buffer alive until the send completes and drives progress
// from poll(), which the training loop calls every iteration. finish() tells the metrics rank that
// training ended (with the job's exit code) and, only when asked, waits for its last evaluation.
// stop_requested() reports a stop request the metrics rank received (SIGTERM/SIGUSR1 there).
//
// Metrics side: next() waits for the next message and returns the newest snapshot that arrived,
// listing the older ones it skipped; request_stop() forwards a signal to trainer rank 0; ack()
// tells a waiting trainer that the last evaluation is written.
// Not thread-safe; each side is driven by its main thread. Torch-free.
#pragma once

#include <mpi.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sf::sharding {

struct MetricsMessage {
  enum Kind { Snapshot, Done } kind = Done;
  std::string header;            // JSON (Snapshot)
  std::vector<float> data;       // flat tensors (Snapshot)
  int exit_code = 0;             // Done
  bool wait = false;             // Done: the trainer waits for ack()
  std::vector<std::string> skipped;  // headers of older snapshots dropped in favour of this one
};

class MetricsLink {
 public:
  MetricsLink(int trainer0_rank, int metrics_rank);
  ~MetricsLink();
  MetricsLink(const MetricsLink&) = delete;
  MetricsLink& operator=(const MetricsLink&) = delete;

  // ---- trainer rank 0 ----
  void send_snapshot(const std::string& header, std::vector<float> data);
  void poll();
  bool stop_requested();
  void finish(int exit_code, bool wait, double timeout_s);
  size_t pending_sends() const { return pending_.size(); }

  // ---- metrics rank ----
  // `idle` (may be empty) is called while waiting, e.g. to forward a stop signal.
  MetricsMessage next(const std::function<void()>& idle = {});
  void request_stop();
  void ack();

 private:
  struct Pending {
    std::string header;
    std::vector<float> data;
    MPI_Request reqs[3];
    long long sizes[2];
  };
  MPI_Comm comm_ = MPI_COMM_NULL;
  int trainer0_, metrics_;
  std::deque<std::unique_ptr<Pending>> pending_;
  std::unique_ptr<MetricsMessage> pending_done_;  // metrics side: Done received behind a snapshot
  bool stop_seen_ = false;
  MPI_Request stop_req_ = MPI_REQUEST_NULL;
  int stop_buf_ = 0;
  int stop_send_buf_ = 1;
};

}  // namespace sf::sharding
