#include "data/zip.h"

#include <zip.h>

#include <filesystem>
#include <fstream>
#include <system_error>

#include "data/tfrecord.h"

namespace sf::data {

namespace {

// Deflate expands at most 1032:1; other methods are given the same bound plus a small margin.
constexpr uint64_t kMaxRatio = 1032;
// Largest entry read into memory.
constexpr uint64_t kMaxEntryBytes = 4ull << 30;

bool unsafe_name(const std::string& n) {
  if (n.empty() || n[0] == '/' || n[0] == '\\') return true;
  if (n.size() >= 2 && n[1] == ':') return true;  // drive letter
  size_t start = 0;
  while (start <= n.size()) {
    size_t end = n.find_first_of("/\\", start);
    if (end == std::string::npos) end = n.size();
    if (end - start == 2 && n.compare(start, 2, "..") == 0) return true;
    start = end + 1;
  }
  return false;
}

std::string error_text(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string s = zip_error_strerror(&e);
  zip_error_fini(&e);
  return s;
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

ZipReader::ZipReader(const std::string& path) : path_(path) {
  std::error_code ec;
  file_size_ = std::filesystem::file_size(path, ec);
  if (ec) throw FormatError(path + ": cannot open (" + ec.message() + ")");
  int err = 0;
  za_ = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err);
  if (!za_) {
    if (err == ZIP_ER_NOZIP) throw FormatError(path + ": not a zip archive (or its central directory is damaged)");
    throw FormatError(path + ": cannot open zip archive (" + one_line(error_text(err)) + ")");
  }
  try {
    const zip_int64_t n = zip_get_num_entries(za_, 0);
    for (zip_int64_t i = 0; i < n; ++i) {
      const char* raw = zip_get_name(za_, static_cast<zip_uint64_t>(i), 0);
      if (!raw)
        throw FormatError(path + ": corrupt zip central directory (entry " + std::to_string(i) + ": " +
                          one_line(zip_strerror(za_)) + ")");
      std::string name = raw;
      if (unsafe_name(name))
        throw FormatError(path + ": entry '" + name + "' has an absolute path or '..' component (refused)");
      if (name.back() == '/') continue;  // a folder
      names_.push_back(name);
      index_.emplace(name, static_cast<uint64_t>(i));
    }
  } catch (...) {
    zip_discard(za_);
    throw;
  }
}

ZipReader::~ZipReader() {
  if (za_) zip_discard(za_);  // opened read-only: nothing to write
}

bool ZipReader::contains(const std::string& name) const { return index_.count(name) > 0; }

std::vector<uint8_t> ZipReader::read(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw FormatError(path_ + ": no entry '" + name + "'");
  const std::string where = path_ + ": entry '" + name + "'";
  std::lock_guard<std::mutex> lock(mu_);
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(za_, it->second, 0, &st) != 0) throw FormatError(where + ": " + one_line(zip_strerror(za_)));
  const zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
  if ((st.valid & need) != need) throw FormatError(where + ": sizes unknown (damaged archive)");
  if (st.comp_size > file_size_)
    throw FormatError(where + ": declares " + std::to_string(st.comp_size) + " compressed bytes in an archive of " +
                      std::to_string(file_size_) + " (damaged archive)");
  if (st.comp_method == ZIP_CM_STORE ? st.size != st.comp_size : st.size > st.comp_size * kMaxRatio + 64)
    throw FormatError(where + ": declares " + std::to_string(st.size) + " bytes from " + std::to_string(st.comp_size) +
                      " compressed (damaged archive)");
  if (st.size > kMaxEntryBytes)
    throw FormatError(where + ": " + std::to_string(st.size) + " bytes (larger than " +
                      std::to_string(kMaxEntryBytes >> 30) + " GiB, refused)");
  if (!zip_compression_method_supported(static_cast<zip_int32_t>(st.comp_method), 0))
    throw FormatError(where + ": unsupported compression method " + std::to_string(st.comp_method));
  if (st.valid & ZIP_STAT_ENCRYPTION_METHOD && st.encryption_method != ZIP_EM_NONE)
    throw FormatError(where + ": encrypted entries are not supported");
  zip_file_t* f = zip_fopen_index(za_, it->second, 0);
  if (!f) throw FormatError(where + ": " + one_line(zip_strerror(za_)));
  std::vector<uint8_t> out(static_cast<size_t>(st.size));
  zip_uint64_t done = 0;
  std::string error;
  while (true) {
    // Reads until the end so that libzip checks the CRC; a stream longer than declared is an error.
    uint8_t extra;
    void* dst = done < out.size() ? static_cast<void*>(out.data() + done) : static_cast<void*>(&extra);
    const zip_uint64_t want = done < out.size() ? out.size() - done : 1;
    const zip_int64_t got = zip_fread(f, dst, want);
    if (got < 0) {
      error = one_line(zip_file_strerror(f));
      break;
    }
    if (got == 0) break;
    if (done >= out.size()) {
      error = "more data than the declared " + std::to_string(st.size) + " bytes";
      break;
    }
    done += static_cast<zip_uint64_t>(got);
  }
  zip_fclose(f);
  if (!error.empty()) throw FormatError(where + ": " + error);
  if (done != out.size())
    throw FormatError(where + ": truncated (" + std::to_string(done) + " of " + std::to_string(st.size) + " bytes)");
  return out;
}

void write_zip_stored(const std::string& path, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& files) {
  if (files.empty()) {
    // libzip removes an archive left without entries: write the empty archive itself.
    const char eocd[22] = {'P', 'K', 5, 6};
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(eocd, sizeof eocd);
    if (!f) throw FormatError(path + ": cannot write");
    return;
  }
  int err = 0;
  zip_t* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (!za) throw FormatError(path + ": cannot create zip archive (" + one_line(error_text(err)) + ")");
  for (const auto& [name, data] : files) {
    zip_source_t* src = zip_source_buffer(za, data.data(), data.size(), 0);
    zip_int64_t idx = src ? zip_file_add(za, name.c_str(), src, ZIP_FL_ENC_UTF_8) : -1;
    if (idx < 0) {
      if (src) zip_source_free(src);
      const std::string e = one_line(zip_strerror(za));
      zip_discard(za);
      throw FormatError(path + ": cannot add '" + name + "' (" + e + ")");
    }
    if (zip_set_file_compression(za, static_cast<zip_uint64_t>(idx), ZIP_CM_STORE, 0) != 0 ||
        zip_file_set_mtime(za, static_cast<zip_uint64_t>(idx), 946684800, 0) != 0) {
      const std::string e = one_line(zip_strerror(za));
      zip_discard(za);
      throw FormatError(path + ": cannot add '" + name + "' (" + e + ")");
    }
  }
  if (zip_close(za) != 0) {
    const std::string e = one_line(zip_strerror(za));
    zip_discard(za);
    throw FormatError(path + ": cannot write (" + e + ")");
  }
}

}  // namespace sf::data
