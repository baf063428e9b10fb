// Atomic file replacement for everything styleforge writes that must never be half-written
// (dataset packs, checkpoints): write to a temporary name next to the destination, check every
// write and the close, fsync the file, rename it over the destination, fsync the folder.
//
// Temporary names are `DEST.tmp-PID@HOST`. A process killed while writing leaves its temporary
// behind; remove_stale_temporaries() deletes those of processes that no longer run on this host
// (and legacy `DEST.tmp-PID` files of dead processes), so the next start in that folder cleans
// up. Temporaries of live processes and of other hosts are never touched.
//
// All functions are reentrant. Errors throw std::runtime_error naming the path and errno text.
#pragma once

#include <ostream>
#include <string>

namespace sf::data {

// "DEST.tmp-<pid>@<host>" for this process.
std::string temp_name_for(const std::string& dest);

// Removes `*.h5.tmp-PID[@HOST]` files in `dir` left by processes that are gone (PID not running
// on this host; other hosts' files are kept). Returns how many were removed; logs each to `log`.
int remove_stale_temporaries(const std::string& dir, std::ostream* log = nullptr);

// fsync of a file (throws on failure: the data may not be on disk).
void fsync_file(const std::string& path);
// fsync of a folder, so that a rename in it is durable (best effort on file systems that refuse).
void fsync_dir(const std::string& dir);

// fsync(tmp), rename(tmp, dest), fsync(folder of dest). On failure throws naming `dest`; `tmp`
// is left for the caller to remove and `dest` is untouched.
void commit_file(const std::string& tmp, const std::string& dest);

}  // namespace sf::data
