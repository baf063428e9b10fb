#include "sharding/topology.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "sharding/mpi_comm.h"

namespace sf::sharding {

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

MpiSession::MpiSession(bool enable) {
  if (!enable) return;
  int provided = 0;
  // SERIALIZED: the gradient-sync worker thread (sharding/bucket_reducer.h) calls MPI while the
  // training thread runs backward, never both at once.
  SF_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  active_ = true;
}

MpiSession::~MpiSession() {
  if (!active_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::string Topology::describe() const {
  std::ostringstream s;
  s << world_size << " rank" << (world_size == 1 ? "" : "s") << ": " << num_trainers << " trainer"
    << (num_trainers == 1 ? "" : "s");
  if (num_servers > 0) s << ", " << num_servers << " parameter server" << (num_servers == 1 ? "" : "s");
  s << (metrics_rank >= 0 ? ", 1 metrics rank" : ", no metrics rank");
  for (int r = 0; r < world_size; ++r)
    s << "\n  rank " << r << "  "
      << (r == metrics_rank ? "metrics " : r >= num_trainers && r < num_trainers + num_servers ? "server  " : "trainer ")
      << " host " << hosts[r];
  return s.str();
}

Topology discover_topology(bool want_metrics_rank, int param_servers) {
  Topology t;
  t.host = host_name();
  SF_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &t.world_rank));
  SF_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &t.world_size));
  if (const char* n = std::getenv("SLURM_NTASKS")) {
    const int ntasks = std::atoi(n);
    if (std::getenv("SLURM_STEP_ID") && ntasks > 0 && ntasks != t.world_size)
      throw std::runtime_error("MPI world size is " + std::to_string(t.world_size) + " but SLURM_NTASKS=" +
                               std::to_string(ntasks) +
                               ": the tasks started as independent singletons (use srun --mpi=pmix, or mpirun)");
  }
  // Host names: fixed-size records, allgathered.
  constexpr int kLen = 256;
  std::vector<char> mine(kLen, 0), all(static_cast<size_t>(kLen) * t.world_size, 0);
  std::strncpy(mine.data(), t.host.c_str(), kLen - 1);
  SF_MPI_CHECK(MPI_Allgather(mine.data(), kLen, MPI_CHAR, all.data(), kLen, MPI_CHAR, MPI_COMM_WORLD));
  for (int r = 0; r < t.world_size; ++r) t.hosts.emplace_back(all.data() + static_cast<size_t>(r) * kLen);
  t.local_rank = 0;
  t.local_size = 0;
  for (int r = 0; r < t.world_size; ++r) {
    if (t.hosts[r] != t.host) continue;
    if (r < t.world_rank) ++t.local_rank;
    ++t.local_size;
  }
  if (want_metrics_rank && t.world_size >= 2) t.metrics_rank = t.world_size - 1;
  t.num_servers = std::max(0, param_servers);
  t.num_trainers = t.world_size - (t.metrics_rank >= 0 ? 1 : 0) - t.num_servers;
  if (t.num_trainers < 1)
    throw std::runtime_error(std::to_string(t.world_size) + " ranks leave no trainer after " +
                             std::to_string(t.num_servers) + " parameter server(s)" +
                             (t.metrics_rank >= 0 ? " and the metrics rank" : "") + "; start more ranks");
  t.role = t.world_rank == t.metrics_rank ? Role::Metrics
           : t.world_rank >= t.num_trainers ? Role::Server
                                            : Role::Trainer;
  return t;
}

MPI_Comm trainer_comm(const Topology& t) {
  MPI_Comm out = MPI_COMM_NULL;
  const int color = t.role == Role::Trainer ? 0 : MPI_UNDEFINED;
  SF_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, t.world_rank, &out));
  return out;
}

MPI_Comm sync_comm(const Topology& t) {
  MPI_Comm out = MPI_COMM_NULL;
  const int color = t.role == Role::Metrics ? MPI_UNDEFINED : 0;
  SF_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, t.world_rank, &out));
  return out;
}

}  // namespace sf::sharding
