// Where a dataset pack is: the path a checkpoint stored, and `train --data` given a source that
// is not a pack yet (an image folder or a reference dataset zip).
//
// A run stores its --data path as it was typed, relative to the folder training started in.
// resolve_stored_pack() finds it again from elsewhere: as stored (from the current folder), else
// relative to each folder above the checkpoint (the run directory, its outdir, ... up to the
// root: the folder training started in is one of them when the outdir was below it), else the
// file name in the run directory or its outdir. Candidates found that way must have the run's
// content hash, so a different pack of the same name is never taken.
//
// Torch-free; reentrant. Errors throw std::runtime_error with one line naming the files.
#pragma once

#include <string>

namespace sf::data {

// True when `path` is a regular file starting with the HDF5 signature (a pack or checkpoint).
bool is_hdf5_file(const std::string& path);

// The pack a checkpoint's training options name (`stored`), found as described above;
// `expected_hash` ("sha256:...", may be empty: then any candidate is taken). Throws naming the
// checkpoint, the stored path and the folders searched when nothing fits.
std::string resolve_stored_pack(const std::string& stored, const std::string& checkpoint,
                                 const std::string& expected_hash);

// `train --data SOURCE` where SOURCE is a folder or a zip, not a pack: the pack name suggested
// for it (SOURCE without a trailing slash and without .zip, plus .h5).
std::string suggested_pack_name(const std::string& source);
// The one-line error for such a SOURCE (empty when SOURCE is an existing HDF5 file or does not
// exist: those keep their own errors).
std::string not_a_pack_error(const std::string& source);

// The pack `train --pack-if-needed` uses for SOURCE: <dir>/<source name>.h5.
std::string pack_if_needed_path(const std::string& source, const std::string& dir);
// True when `pack` exists and is at least as new as every file of `source` (a folder is scanned
// recursively; a zip is one file).
bool pack_is_current(const std::string& source, const std::string& pack);

}  // namespace sf::data
