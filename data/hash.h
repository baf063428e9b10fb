// Checksums and digests used by the data layer: CRC-32C (TFRecord framing) and SHA-256 (the
// content hash of a dataset pack that keys metric caches).
//
// Both are small portable implementations with no library dependency. Sha256 is an incremental
// hasher; one instance must not be used from two threads at once, distinct instances are
// independent. The free functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sf::data {

// CRC-32 with zlib's polynomial and conventions (equal to zlib's crc32(crc, data, n)), computed by
// ISA-L's carry-less-multiply implementation: the per-image checksum of packs.
uint32_t crc32_zlib(const void* data, size_t n, uint32_t crc = 0);

// CRC-32C (Castagnoli), as used by TFRecord; `crc` continues a previous value.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// The masked form TFRecord stores: rotate right by 15 and add 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  // Finishes and returns the 64-character lower-case hex digest; the hasher is then reset.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

}  // namespace sf::data
