// Readers for the TensorFlow StyleGAN2-ADA dataset layout: TFRecord files (length-prefixed records
// with masked CRC-32C values on the length and the data), the `tf.train.Example` messages inside
// them (fields `shape`, int64 list [C, H, W], and `data`, the raw uint8 image), and the numpy
// `.npy` label file (`<name>-rxx.labels`).
//
// The protobuf wire format is parsed by hand; nothing here depends on TensorFlow or protobuf.
// TfRecordReader owns its file stream; one reader must not be shared between threads. Every
// failure throws FormatError with a one-line message naming the file and the record index.
#pragma once

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sf::data {

class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Sequential reader of one .tfrecords file; both CRCs of every record are verified.
class TfRecordReader {
 public:
  explicit TfRecordReader(const std::string& path);
  // Reads the next record into `out`; false at a clean end of file.
  bool next(std::string& out);
  // Index of the record that next() returned last (0-based).
  int64_t index() const { return index_ - 1; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ifstream in_;
  uint64_t size_ = 0;  // file size: no record may claim more
  int64_t index_ = 0;
};

// One StyleGAN2-ADA image record.
struct TfExampleImage {
  std::vector<int64_t> shape;  // [C, H, W]
  std::string data;            // C*H*W bytes, CHW order
};

// Parses a serialized tf.train.Example and extracts `shape` and `data`; `where` names the record.
TfExampleImage parse_tf_example_image(const std::string& bytes, const std::string& where);

// A numpy array loaded from an .npy file (version 1.x–3.x, C order, little-endian or byte-sized).
struct NpyArray {
  std::string dtype;           // numpy descr such as "<f4", "<i8", "|u1"
  std::vector<int64_t> shape;
  std::vector<double> values;  // converted, C order
  bool is_integer() const;
};
NpyArray read_npy(const std::string& path);

// The tfrecords files of a StyleGAN2-ADA TF dataset folder: pairs (resolution log2, path), and the
// labels file if present. Throws when the folder has no `*-rNN.tfrecords` file.
struct TfDatasetFiles {
  std::vector<std::pair<int, std::string>> levels;  // sorted by level
  std::string labels;                               // "" when absent
};
TfDatasetFiles find_tf_dataset(const std::string& dir);

}  // namespace sf::data
