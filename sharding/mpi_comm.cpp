#include "sharding/mpi_comm.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <sstream>
#include <thread>

#include "sharding/float_ops.h"

namespace sf::sharding {
namespace {

constexpr int kHeartbeatTag = 7401;
constexpr double kHeartbeatPeriodS = 1.0;

int world_rank() {
  int init = 0, r = -1;
  MPI_Initialized(&init);
  if (init) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

}  // namespace

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

void check_mpi(int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  std::ostringstream s;
  s << "rank " << world_rank() << " (" << host_name() << "): " << call << " failed: " << msg << " [" << file << ":"
    << line << "]";
  throw CommError(s.str());
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, double timeout_s) : timeout_s_(timeout_s), host_(host_name()) {
  SF_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  SF_MPI_CHECK(MPI_Comm_dup(comm, &hb_comm_));
  SF_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  SF_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  last_sent_ = std::chrono::steady_clock::now();
  last_heard_.assign(static_cast<size_t>(size_), std::chrono::steady_clock::now());
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (hb_comm_ != MPI_COMM_NULL) {
    // Drain heartbeats still queued for this rank before freeing the communicator.
    {
      int flag = 1;
      while (flag) {
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, kHeartbeatTag, hb_comm_, &flag, &st);
        if (flag) {
          int v;
          MPI_Recv(&v, 1, MPI_INT, st.MPI_SOURCE, kHeartbeatTag, hb_comm_, MPI_STATUS_IGNORE);
        }
      }
    }
    MPI_Comm_free(&hb_comm_);
  }
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::string MpiCommunicator::describe() const { return "mpi x" + std::to_string(size_); }

void MpiCommunicator::heartbeat_tick() {
  // Every rank tells rank 0 it is alive, and rank 0 tells every rank: a timeout can then name
  // the silent ranks on either side, rank 0 included.
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_sent_).count() >= kHeartbeatPeriodS) {
    hb_payload_ = rank_;
    for (int dest = (rank_ == 0 ? 1 : 0); dest < (rank_ == 0 ? size_ : 1); ++dest) {
      MPI_Request r;
      if (MPI_Isend(&hb_payload_, 1, MPI_INT, dest, kHeartbeatTag, hb_comm_, &r) == MPI_SUCCESS) MPI_Request_free(&r);
    }
    last_sent_ = now;
  }
  int flag = 1;
  while (flag) {
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kHeartbeatTag, hb_comm_, &flag, &st);
    if (!flag) break;
    int v;
    MPI_Recv(&v, 1, MPI_INT, st.MPI_SOURCE, kHeartbeatTag, hb_comm_, MPI_STATUS_IGNORE);
    last_heard_[static_cast<size_t>(st.MPI_SOURCE)] = now;
  }
}

void MpiCommunicator::wait_all(std::vector<MPI_Request>& reqs, const char* what) {
  // Poll with a yield between tests: a non-blocking collective only advances while MPI is
  // called, so long sleeps would stall its rounds; yielding leaves the core to ranks that compute.
  // After a few thousand empty polls (a peer is still computing, e.g. its backward pass while our
  // gradient worker waits) each poll sleeps 50 us, so the waiting thread stops competing with the
  // compute threads of its own and other ranks for the cores, at a cost of at most 50 us per round.
  const auto start = std::chrono::steady_clock::now();
  uint64_t idle = 0;
  for (uint64_t polls = 1;; ++polls) {
    int done = 0;
    SF_MPI_CHECK(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE));
    if (done) return;
    if (++idle > 4096)
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    else
      std::this_thread::yield();
    if (polls % 1024 != 0) continue;
    heartbeat_tick();
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (timeout_s_ > 0 && waited > timeout_s_) {
      std::ostringstream s;
      s << "rank " << rank_ << " (" << host_ << "): " << what << " did not complete within " << timeout_s_ << " s";
      {
        // Rank 0 hears from every rank, the others hear from rank 0.
        std::vector<int> silent;
        const auto now = std::chrono::steady_clock::now();
        for (int r = (rank_ == 0 ? 1 : 0); r < (rank_ == 0 ? size_ : 1); ++r)
          if (std::chrono::duration<double>(now - last_heard_[static_cast<size_t>(r)]).count() >
              std::max(3 * kHeartbeatPeriodS, 0.5 * timeout_s_))
            silent.push_back(r);
        if (!silent.empty()) {
          s << "; no heartbeat from rank";
          for (size_t i = 0; i < silent.size(); ++i) s << (i ? ", " : " ") << silent[i];
          s << " (dead or stuck)";
        }
      }
      throw CommError(s.str());
    }
  }
}

void MpiCommunicator::allreduce_sum(float* data, size_t count) { allreduce_sum_many({{data, count}}); }

void MpiCommunicator::allreduce_sum_many(const std::vector<std::pair<float*, size_t>>& buffers) {
  allreduce_many(buffers, false);
}

void MpiCommunicator::allreduce_mean_many(const std::vector<std::pair<float*, size_t>>& buffers) {
  allreduce_many(buffers, true);
}

void MpiCommunicator::allreduce_many(const std::vector<std::pair<float*, size_t>>& buffers, bool mean) {
  if (size_ == 1) return;  // the sum and the mean over one rank are the data itself
  // Small buffers: MPI's own (latency-optimal) non-blocking allreduce, all issued together.
  std::vector<MPI_Request> reqs;
  std::vector<std::pair<float*, size_t>> small;
  for (const auto& [p, n] : buffers) {
    if (n * sizeof(float) >= kRingMinBytes) continue;
    reqs.emplace_back();
    SF_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_, &reqs.back()));
    small.emplace_back(p, n);
  }
  wait_all(reqs, "allreduce");
  if (mean)
    for (const auto& [p, n] : small) divide_by(p, n, size_);
  for (const auto& [p, n] : buffers)
    if (n * sizeof(float) >= kRingMinBytes) ring_allreduce(p, n, mean);
}

void MpiCommunicator::ring_allreduce(float* data, size_t count, bool mean) {
  constexpr int kReduceTag = 7402, kGatherTag = 7403;
  const int n = size_, right = (rank_ + 1) % n, left = (rank_ + n - 1) % n;
  auto chunk_begin = [&](int c) { return count * static_cast<size_t>(c) / static_cast<size_t>(n); };
  auto chunk_len = [&](int c) { return chunk_begin(c + 1) - chunk_begin(c); };
  auto wrap = [n](int c) { return ((c % n) + n) % n; };
  const size_t seg = kRingSegmentFloats;
  ring_tmp_.resize(2 * seg);
  std::vector<MPI_Request> sends, recv(1);

  // Reduce-scatter: in step s this rank sends its partial sum of chunk rank-s to the right and
  // adds the left neighbour's partial sum of chunk rank-s-1 to its own. After n-1 steps it holds
  // the full sum of chunk rank+1.
  for (int s = 0; s < n - 1; ++s) {
    const int sc = wrap(rank_ - s), rc = wrap(rank_ - s - 1);
    const size_t slen = chunk_len(sc), rlen = chunk_len(rc);
    float* const out = data + chunk_begin(sc);
    for (size_t b = 0; b < slen; b += seg) {
      sends.emplace_back();
      SF_MPI_CHECK(MPI_Isend(out + b, static_cast<int>(std::min(seg, slen - b)), MPI_FLOAT, right, kReduceTag, comm_,
                             &sends.back()));
    }
    float* const acc = data + chunk_begin(rc);
    std::vector<MPI_Request> next(1, MPI_REQUEST_NULL);
    auto post = [&](size_t b, int slot, MPI_Request* r) {
      SF_MPI_CHECK(MPI_Irecv(ring_tmp_.data() + slot * seg, static_cast<int>(std::min(seg, rlen - b)), MPI_FLOAT, left,
                             kReduceTag, comm_, r));
    };
    int slot = 0;
    if (rlen > 0) post(0, 0, &recv[0]);
    for (size_t b = 0; b < rlen; b += seg) {
      if (b + seg < rlen) post(b + seg, 1 - slot, &next[0]);  // the next segment arrives while we add
      wait_all(recv, "allreduce");
      add_into(acc + b, ring_tmp_.data() + slot * seg, std::min(seg, rlen - b));
      recv[0] = next[0];
      next[0] = MPI_REQUEST_NULL;
      slot = 1 - slot;
    }
    wait_all(sends, "allreduce");
    sends.clear();
  }
  if (mean) {
    const int own = wrap(rank_ + 1);
    divide_by(data + chunk_begin(own), chunk_len(own), n);
  }
  // Allgather: in step s this rank passes the finished chunk rank+1-s to the right and receives
  // chunk rank-s from the left, in place.
  for (int s = 0; s < n - 1; ++s) {
    const int sc = wrap(rank_ + 1 - s), rc = wrap(rank_ - s);
    std::vector<MPI_Request> reqs;
    for (size_t b = 0, len = chunk_len(rc); b < len; b += seg) {
      reqs.emplace_back();
      SF_MPI_CHECK(MPI_Irecv(data + chunk_begin(rc) + b, static_cast<int>(std::min(seg, len - b)), MPI_FLOAT, left,
                             kGatherTag, comm_, &reqs.back()));
    }
    for (size_t b = 0, len = chunk_len(sc); b < len; b += seg) {
      reqs.emplace_back();
      SF_MPI_CHECK(MPI_Isend(data + chunk_begin(sc) + b, static_cast<int>(std::min(seg, len - b)), MPI_FLOAT, right,
                             kGatherTag, comm_, &reqs.back()));
    }
    wait_all(reqs, "allreduce");
  }
}

void MpiCommunicator::allreduce_sum(double* data, size_t count) {
  std::vector<MPI_Request> reqs(1);
  SF_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_DOUBLE, MPI_SUM, comm_, &reqs[0]));
  wait_all(reqs, "allreduce");
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  std::vector<MPI_Request> reqs;
  size_t off = 0;
  while (off < bytes) {
    const int chunk = static_cast<int>(std::min<size_t>(bytes - off, INT_MAX / 2));
    reqs.emplace_back();
    SF_MPI_CHECK(MPI_Ibcast(static_cast<char*>(data) + off, chunk, MPI_BYTE, root, comm_, &reqs.back()));
    off += static_cast<size_t>(chunk);
  }
  wait_all(reqs, "broadcast");
}

void MpiCommunicator::barrier() {
  std::vector<MPI_Request> reqs(1);
  SF_MPI_CHECK(MPI_Ibarrier(comm_, &reqs[0]));
  wait_all(reqs, "barrier");
}

}  // namespace sf::sharding
