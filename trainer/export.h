// `styleforge export`: a styleforge checkpoint to a network pickle in the reference's format
// (stylegan2-ada-pytorch's network-snapshot-*.pkl): a dict with G, D, G_ema (torch.nn.Module
// objects), augment_pipe and training_set_kwargs, as legacy.load_network_pkl expects.
//
// The pickle builds each network by calling the reference's own class by its import path
// (training.networks.Generator / Discriminator, training.augment.AugmentPipe) with the
// constructor keyword arguments of our configuration (the names the reference's train.py uses),
// then loads every tensor with load_state_dict (strict: the reference checks that every key and
// shape matches) and returns the module in eval mode without gradients, as the reference's
// snapshots hold them. Tensors travel as raw little-endian float32 bytes, rebuilt through numpy.
// Such a pickle therefore loads wherever the reference's `training` and `torch_utils` packages
// are importable (its generate.py, projector.py, calc_metrics.py and train.py --resume, run from
// its checkout) with torch and numpy; unlike the reference's own snapshots it embeds no source
// code. Its modules are ordinary persistent-class instances there, so re-pickling them with the
// reference's tools gives the reference's own format.
//
// training_set_kwargs: the run's dataset (the pack path, labels, x-flips, size, resolution) for
// trained checkpoints, the original pickle's for imported ones, None otherwise. augment_pipe: the
// run's pipeline with its current p when the run augments (an imported network: the original
// pipeline's settings and p), else None.
//
// Torch-free header; blocking; errors throw std::runtime_error naming the file. The destination
// is written to a temporary name and renamed (data/atomic_file.h): a failure leaves nothing.
#pragma once

#include <cstdint>
#include <string>

namespace sf::trainer {

struct ExportResult {
  std::string dest;
  int64_t G_tensors = 0, D_tensors = 0, G_ema_tensors = 0;
  bool has_augment_pipe = false;
  bool has_training_set_kwargs = false;
  uint64_t bytes = 0;
  std::string summary() const;  // one line
};

ExportResult export_network_pickle(const std::string& checkpoint, const std::string& dest, bool overwrite = false);

}  // namespace sf::trainer
