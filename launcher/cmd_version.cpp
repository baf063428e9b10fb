// `styleforge version`: versions of styleforge and of every library it was built with.
#include <hdf5.h>
#include <mpi.h>

#include <iostream>

#include "launcher/cli.h"
#include "trainer/build_info.h"
#ifdef STYLEFORGE_WITH_NCCL
#include <nccl.h>
#endif

namespace sf::cli {

int cmd_version(const std::vector<std::string>& args) {
  boost::program_options::options_description desc("options");
  boost::program_options::variables_map vm;
  if (int rc = parse_options("version", "", args, desc, vm); rc >= 0) return rc;

  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  char mpi_lib[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int mpi_len = 0, mpi_ver = 0, mpi_sub = 0;
  MPI_Get_library_version(mpi_lib, &mpi_len);
  MPI_Get_version(&mpi_ver, &mpi_sub);
  std::string mpi_first_line(mpi_lib, static_cast<size_t>(mpi_len));
  mpi_first_line = mpi_first_line.substr(0, mpi_first_line.find_first_of(",\n"));

  std::cout << "styleforge " << STYLEFORGE_VERSION << "\n"
            << "libtorch   " << trainer::torch_version() << (trainer::torch_has_cuda() ? " (CUDA build)" : " (CPU build)") << "\n"
            << "cuda       " << trainer::cuda_version() << "\n"
            << "cudnn      " << trainer::cudnn_version() << "\n"
            << "cpu        " << trainer::cpu_threads() << "\n";
#ifdef STYLEFORGE_WITH_NCCL
  int nccl = 0;
  ncclGetVersion(&nccl);  // the library linked, whether or not a GPU is present
  std::cout << "nccl       " << nccl / 10000 << "." << (nccl % 10000) / 100 << "." << nccl % 100
            << " (gradient communicator for GPU trainers)\n";
#else
  std::cout << "nccl       not built (nccl.h / cudart not found)\n";
#endif
  const int gpus = trainer::gpu_count();
  std::cout << "gpus       " << gpus << " visible"
            << (gpus == 0 ? (trainer::torch_has_cuda() ? ": training runs on the CPU (--device auto)" : ": CPU build")
                          : ": training runs on CUDA (--device auto)")
            << "\n"
            << "mpi        " << mpi_first_line << " (MPI " << mpi_ver << "." << mpi_sub << ")\n"
            << "hdf5       " << maj << "." << min << "." << rel << "\n";
  return kOk;
}

}  // namespace sf::cli
