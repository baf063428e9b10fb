// Transfer learning: starting a run from a published network (`styleforge train --resume SOURCE`
// where SOURCE is not a styleforge training checkpoint).
//
// resolve_transfer_source() turns SOURCE into the path of a styleforge checkpoint holding G, D
// and G_ema: a named source (ffhq256, ffhq512, ffhq1024, afhqcat, afhqdog, afhqwild, brecahad,
// metfaces, celebahq256, lsundog256) is looked up in the cache directory; a reference network
// pickle (.pkl) is imported without executing anything from it; a network-only .h5 is used as is.
// transfer_networks() copies the source networks into the freshly initialised networks of the
// run, adapting what can be adapted (resolution, image channels, conditioning, Freeze-D) and
// failing with one message listing every key that cannot be.
#pragma once

#include <string>
#include <vector>

#include "trainer/networks.h"
#include "trainer/train_options.h"

namespace sf::trainer {

// Throws std::runtime_error (naming the file, or the URL to fetch and where to put it).
std::string resolve_transfer_source(const std::string& source, const std::string& cache_dir,
                                    const std::string& scratch_dir);
// The default cache directory: $STYLEFORGE_CACHE, else $XDG_CACHE_HOME/styleforge, else ~/.cache/styleforge.
std::string default_cache_dir();
// Returns a one-line summary of what was copied and adapted (for log.txt).
//   same key, same shape                   copied (Freeze-D's frozen layers too)
//   blocks at resolutions only one side has dropped (source) or kept freshly initialised (run),
//                                          e.g. D's FromRGB of a new top block
//   ToRGB rows, S -> N image channels      every run row = the mean of the S source rows (weight
//                                          and bias): gray from RGB the mean, RGB from gray the gray
//                                          row replicated; N channels (e.g. stacked MRI modalities)
//                                          from RGB all start equal and diverge in training
//   FromRGB columns, S -> N image channels every run column = the sum of the S source columns
//                                          split over N, in effective weights (the layer's
//                                          equalised-learning-rate gain is 1/sqrt(image channels):
//                                          stored = sum * sqrt(N) / (N * sqrt(S))), so an image whose
//                                          N channels all equal a gray g gives the source's features
//                                          for g replicated to S channels
//   mapping.fc0.weight, c_dim changed      the z columns copied, the embedding columns fresh
//   label embeddings, D's mapping and its projection (b4.out) when c_dim changed: fresh
// Any other shape difference (channel_base/channel_max, mapping or minibatch-std settings)
// throws one std::runtime_error listing every such key with both shapes; nothing is modified then.
std::string transfer_networks(const std::string& checkpoint, Generator& G, Discriminator& D, Generator& G_ema);

// Transfer mode of `styleforge train --resume SOURCE`: the run keeps the source's architecture
// (z/w dims, mapping layers and learning rate, architectures, channel_base/channel_max,
// conv_clamp, fp16 resolutions, minibatch-std channels); resolution, image channels and c_dim
// stay the dataset's, minibatch-std group and Freeze-D the run's. Throws std::invalid_argument
// when an explicit --cbase/--cmax/--map contradicts the source. Call after TrainOptions::resolve().
void adopt_source_architecture(const std::string& checkpoint, TrainOptions& o);

// The named sources --resume accepts, with the URL each is published at.
struct NamedTransferSource {
  const char* name;
  const char* url;
};
const std::vector<NamedTransferSource>& named_transfer_sources();

}  // namespace sf::trainer
