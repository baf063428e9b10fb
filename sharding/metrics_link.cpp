#include "sharding/metrics_link.h"

#include <chrono>
#include <stdexcept>
#include <thread>

#include "sharding/mpi_comm.h"

namespace sf::sharding {
namespace {
constexpr int kTagSizes = 8101, kTagHeader = 8102, kTagData = 8103, kTagDone = 8104, kTagStop = 8105, kTagAck = 8106;
}

MetricsLink::MetricsLink(int trainer0_rank, int metrics_rank) : trainer0_(trainer0_rank), metrics_(metrics_rank) {
  SF_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
  int me = 0;
  MPI_Comm_rank(comm_, &me);
  if (me == trainer0_) SF_MPI_CHECK(MPI_Irecv(&stop_buf_, 1, MPI_INT, metrics_, kTagStop, comm_, &stop_req_));
}

MetricsLink::~MetricsLink() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (stop_req_ != MPI_REQUEST_NULL) {
    MPI_Cancel(&stop_req_);
    MPI_Request_free(&stop_req_);
  }
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MetricsLink::send_snapshot(const std::string& header, std::vector<float> data) {
  auto p = std::make_unique<Pending>();
  p->header = header;
  p->data = std::move(data);
  p->sizes[0] = static_cast<long long>(p->header.size());
  p->sizes[1] = static_cast<long long>(p->data.size());
  SF_MPI_CHECK(MPI_Isend(p->sizes, 2, MPI_LONG_LONG, metrics_, kTagSizes, comm_, &p->reqs[0]));
  SF_MPI_CHECK(MPI_Isend(p->header.data(), static_cast<int>(p->header.size()), MPI_CHAR, metrics_, kTagHeader, comm_,
                         &p->reqs[1]));
  SF_MPI_CHECK(MPI_Isend(p->data.data(), static_cast<int>(p->data.size()), MPI_FLOAT, metrics_, kTagData, comm_,
                         &p->reqs[2]));
  pending_.push_back(std::move(p));
  poll();
}

void MetricsLink::poll() {
  while (!pending_.empty()) {
    int done = 0;
    SF_MPI_CHECK(MPI_Testall(3, pending_.front()->reqs, &done, MPI_STATUSES_IGNORE));
    if (!done) break;
    pending_.pop_front();
  }
  if (stop_req_ != MPI_REQUEST_NULL && !stop_seen_) {
    int flag = 0;
    SF_MPI_CHECK(MPI_Test(&stop_req_, &flag, MPI_STATUS_IGNORE));
    if (flag) stop_seen_ = true;
  }
}

bool MetricsLink::stop_requested() {
  poll();
  return stop_seen_;
}

void MetricsLink::finish(int exit_code, bool wait, double timeout_s) {
  int msg[2] = {exit_code, wait ? 1 : 0};
  SF_MPI_CHECK(MPI_Send(msg, 2, MPI_INT, metrics_, kTagDone, comm_));
  // Outstanding snapshot sends complete as the metrics rank drains them.
  const auto start = std::chrono::steady_clock::now();
  auto expired = [&] {
    return timeout_s > 0 &&
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s;
  };
  while (!pending_.empty()) {
    poll();
    if (expired()) throw CommError("metrics rank did not take the last snapshots within the timeout");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (wait) {
    MPI_Request r;
    int ackv = 0;
    SF_MPI_CHECK(MPI_Irecv(&ackv, 1, MPI_INT, metrics_, kTagAck, comm_, &r));
    int flag = 0;
    while (!flag) {
      SF_MPI_CHECK(MPI_Test(&r, &flag, MPI_STATUS_IGNORE));
      if (!flag && expired()) throw CommError("metrics rank did not finish its last evaluation within the timeout");
      if (!flag) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

MetricsMessage MetricsLink::next(const std::function<void()>& idle) {
  if (pending_done_) {
    MetricsMessage d = std::move(*pending_done_);
    pending_done_.reset();
    return d;
  }
  MetricsMessage newest;
  bool have_snapshot = false;
  std::vector<std::string> skipped;
  // Wait for at least one message, then drain everything that is already there.
  bool first = true;
  while (true) {
    int flag = 0;
    MPI_Status st;
    if (first) {
      while (!flag) {
        SF_MPI_CHECK(MPI_Iprobe(trainer0_, MPI_ANY_TAG, comm_, &flag, &st));
        if (!flag) {
          if (idle) idle();
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
      }
      first = false;
    } else {
      SF_MPI_CHECK(MPI_Iprobe(trainer0_, MPI_ANY_TAG, comm_, &flag, &st));
      if (!flag) break;
    }
    if (st.MPI_TAG == kTagDone) {
      int msg[2];
      SF_MPI_CHECK(MPI_Recv(msg, 2, MPI_INT, trainer0_, kTagDone, comm_, MPI_STATUS_IGNORE));
      MetricsMessage done;
      done.kind = MetricsMessage::Done;
      done.exit_code = msg[0];
      done.wait = msg[1] != 0;
      // A snapshot that arrived before Done is still evaluated first when the trainer waits.
      if (have_snapshot && done.wait) {
        newest.skipped = skipped;
        pending_done_ = std::make_unique<MetricsMessage>(done);
        return newest;
      }
      if (have_snapshot) skipped.push_back(newest.header);
      done.skipped = skipped;
      return done;
    }
    if (st.MPI_TAG != kTagSizes) throw CommError("metrics link: unexpected message tag " + std::to_string(st.MPI_TAG));
    long long sizes[2];
    SF_MPI_CHECK(MPI_Recv(sizes, 2, MPI_LONG_LONG, trainer0_, kTagSizes, comm_, MPI_STATUS_IGNORE));
    MetricsMessage m;
    m.kind = MetricsMessage::Snapshot;
    m.header.resize(static_cast<size_t>(sizes[0]));
    m.data.resize(static_cast<size_t>(sizes[1]));
    SF_MPI_CHECK(MPI_Recv(m.header.data(), static_cast<int>(sizes[0]), MPI_CHAR, trainer0_, kTagHeader, comm_,
                          MPI_STATUS_IGNORE));
    SF_MPI_CHECK(MPI_Recv(m.data.data(), static_cast<int>(sizes[1]), MPI_FLOAT, trainer0_, kTagData, comm_,
                          MPI_STATUS_IGNORE));
    if (have_snapshot) skipped.push_back(newest.header);
    newest = std::move(m);
    have_snapshot = true;
  }
  newest.skipped = skipped;
  return newest;
}

void MetricsLink::request_stop() {
  MPI_Request r;
  SF_MPI_CHECK(MPI_Isend(&stop_send_buf_, 1, MPI_INT, trainer0_, kTagStop, comm_, &r));
  MPI_Request_free(&r);
}

void MetricsLink::ack() {
  int v = 1;
  SF_MPI_CHECK(MPI_Send(&v, 1, MPI_INT, trainer0_, kTagAck, comm_));
}

}  // namespace sf::sharding
