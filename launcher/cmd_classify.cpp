// `styleforge classify`: a ResNet classifier on a pack's class labels, real-only against real +
// synthetic images, over seeds (trainer/classify.h).
#include <filesystem>
#include <iostream>
#include <stdexcept>

#include <memory>

#include "launcher/cli.h"
#include "sharding/mpi_comm.h"
#include "sharding/topology.h"
#include "trainer/classify.h"
#include "trainer/training_loop.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_classify(const std::vector<std::string>& args) {
  trainer::classify::Options o;
  std::string seeds, augment;
  po::options_description desc("options");
  desc.add_options()
      ("data", po::value(&o.data)->required(), "dataset pack with class labels (e.g. phantoms: 0 no lesion, 1 lesion)")
      ("outdir", po::value(&o.outdir)->required(), "folder for classify.json and classify.png")
      ("arch", po::value(&o.arch)->default_value("resnet18"), "resnet18 | resnet50 (torchvision's layouts)")
      ("width-mult", po::value(&o.width_mult)->default_value(1.0), "scales every layer's width (1: torchvision's)")
      ("weights", po::value(&o.weights),
       "TorchScript module with torchvision ResNet parameter names to start from (fc replaced when its class count "
       "differs); default: from scratch")
      ("seeds", po::value(&seeds)->default_value("0,1,2"), "one classifier per seed and arm (initialisation and batch order)")
      ("val-frac", po::value(&o.val_frac)->default_value(0.15), "validation share per class (model selection), [0, 1)")
      ("test-frac", po::value(&o.test_frac)->default_value(0.2), "test share per class, (0, 1) (ignored with --folds)")
      ("split-seed", po::value(&o.split_seed)->default_value(0), "seed of the stratified split (fixed over --seeds)")
      ("folds", po::value(&o.folds)->default_value(0), "K >= 2: stratified K-fold cross-validation instead of one split")
      ("augment", po::value(&augment)->default_value("none"), "classical augmentation: none or a list of flips,rot90,intensity")
      ("epochs", po::value(&o.epochs)->default_value(20), "training epochs (the best validation epoch is tested)")
      ("batch", po::value(&o.batch)->default_value(32), "batch size")
      ("lr", po::value(&o.lr)->default_value(1e-3), "Adam learning rate")
      ("weight-decay", po::value(&o.weight_decay)->default_value(1e-4), "Adam weight decay")
      ("synthetic-network", po::value(&o.synthetic_network),
       "GAN checkpoint(s) for the real+synthetic arm: one conditional CKPT, or class0=A.h5,class1=B.h5 (unconditional)")
      ("synthetic-per-class", po::value(&o.synthetic_per_class)->default_value(0),
       "synthetic images per class, added to the training set only")
      ("synthetic-seed", po::value(&o.synthetic_seed)->default_value(0), "first z seed of the synthetic images")
      ("trunc", po::value(&o.truncation_psi)->default_value(1.0), "truncation psi of the synthetic images")
      ("threads", po::value(&o.threads)->default_value(0), "LibTorch threads (0: all cores)")
      ("device", po::value(&o.device)->default_value("auto"), "auto | cpu | cuda | cuda:N")
      ("verbose,v", po::bool_switch(&o.verbose), "one line per epoch: train loss, validation loss and accuracy")
      ("quiet,q", po::bool_switch(&o.quiet), "only the summary table");
  po::variables_map vm;
  if (int rc = parse_options("classify",
                             "--data PACK --outdir DIR [--arch resnet18] [--seeds 0,1,2] "
                             "[--synthetic-network CKPT --synthetic-per-class N] [options]",
                             args, desc, vm);
      rc >= 0)
    return rc;
  auto usage = [](const std::string& msg) {
    std::cerr << "styleforge classify: " << msg << " (see styleforge classify --help)\n";
    return kUsage;
  };
  if (o.arch != "resnet18" && o.arch != "resnet50")
    return usage("--arch: unknown architecture '" + o.arch + "' (resnet18 or resnet50)");
  if (!(o.val_frac >= 0 && o.val_frac < 1)) return usage("--val-frac must be in [0, 1)");
  if (o.folds == 0 && !(o.test_frac > 0 && o.test_frac < 1)) return usage("--test-frac must be in (0, 1)");
  if (o.folds == 0 && !(o.val_frac + o.test_frac < 1)) return usage("--val-frac + --test-frac must be below 1");
  if (o.folds == 1 || o.folds < 0) return usage("--folds must be 0 (one split) or at least 2");
  if (o.epochs < 1) return usage("--epochs must be at least 1");
  if (o.batch < 2) return usage("--batch must be at least 2");
  if (!(o.width_mult > 0 && o.width_mult <= 4)) return usage("--width-mult must be in (0, 4]");
  if (!(o.lr > 0)) return usage("--lr must be positive");
  if (o.weight_decay < 0) return usage("--weight-decay must not be negative");
  if (o.synthetic_per_class < 0) return usage("--synthetic-per-class must not be negative");
  if (o.synthetic_network.empty() != (o.synthetic_per_class == 0))
    return usage("--synthetic-network and --synthetic-per-class N (N >= 1) go together");
  if (!std::filesystem::exists(o.data)) return usage("--data " + o.data + ": no such file");
  if (!o.weights.empty() && !std::filesystem::exists(o.weights)) return usage("--weights " + o.weights + ": no such file");
  try {
    o.seeds = trainer::parse_seed_list(seeds);
    o.augment = trainer::classify::parse_augment(augment);
    (void)trainer::classify::parse_synthetic_networks(o.synthetic_network);
  } catch (const std::invalid_argument& e) {
    return usage(e.what());
  }
  // Under mpirun/srun: data-parallel over every rank of the job (trainer/classify.h).
  sharding::MpiSession mpi(sharding::launched_by_mpi());
  std::unique_ptr<sharding::MpiCommunicator> comm;
  if (mpi.active()) {
    comm = std::make_unique<sharding::MpiCommunicator>(MPI_COMM_WORLD, 600.0);
    if (comm->size() > 1) o.comm = comm.get();
  }
  try {
    trainer::classify::run_classify(o);
  } catch (const std::invalid_argument& e) {
    std::cerr << "styleforge classify: " << e.what() << "\n";
    if (mpi.active()) MPI_Abort(MPI_COMM_WORLD, kUsage);
    return kUsage;
  } catch (const std::exception& e) {
    std::cerr << "styleforge classify: " << (comm ? "rank " + std::to_string(comm->rank()) + ": " : std::string()) << e.what() << "\n";
    if (mpi.active()) MPI_Abort(MPI_COMM_WORLD, kFailure);
    return kFailure;
  }
  return kOk;
}

}  // namespace sf::cli
