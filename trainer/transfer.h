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

#include "trainer/networks.h"

namespace sf::trainer {

// Throws std::runtime_error (naming the file, or the URL to fetch and where to put it).
std::string resolve_transfer_source(const std::string& source, const std::string& cache_dir,
                                    const std::string& scratch_dir);
// The default cache directory: $STYLEFORGE_CACHE, else $XDG_CACHE_HOME/styleforge, else ~/.cache/styleforge.
std::string default_cache_dir();
// Returns a one-line summary of what was copied and adapted (for log.txt).
std::string transfer_networks(const std::string& checkpoint, Generator& G, Discriminator& D, Generator& G_ema);

}  // namespace sf::trainer
