// Writes a volume (data/volume.h) as a single-file NIfTI-1 image (.nii, or gzipped .nii.gz by
// name) through nifticlib, for the phantom generator and tests: the affine goes into the sform
// (code 2, aligned anatomical) and, as nifticlib derives it, the qform (code 1, scanner); voxel
// sizes into pixdim. Values are stored as float32, int16 or uint8 (rounded and clamped for the
// integer types). The file is written under a temporary name and renamed into place, so a failed
// write leaves nothing behind.
//
// Reentrant with respect to our state (nifticlib keeps only a debug level). Errors throw
// std::runtime_error naming the file.
#pragma once

#include <string>

#include "data/volume.h"

namespace sf::data {

enum class NiftiStoreType { Float32, Int16, UInt8 };

void write_nifti(const std::string& path, const Volume& v, NiftiStoreType type = NiftiStoreType::Float32);

}  // namespace sf::data
