// HDF5 wrapper: round trips, shapes, attributes and the errors for missing objects.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "data/h5.h"

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("sf_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(H5, RoundTripDatasetsAndAttributes) {
  std::string path = temp_path("rt.h5");
  {
    auto f = sf::h5::create_file(path, true);
    auto g = sf::h5::require_group(f, "params/sub");
    float a[6] = {1, 2, 3, 4, 5, 6};
    sf::h5::write_f32(g, "a.weight", a, {2, 3});
    double s = 2.5;
    sf::h5::write_f64(f, "scalar", &s, {});
    sf::h5::write_string_attr(f, "kind", "generator");
    sf::h5::write_int_attr(g, "n", 42);
  }
  auto f = sf::h5::open_file(path);
  EXPECT_TRUE(sf::h5::is_group(f, "params"));
  EXPECT_TRUE(sf::h5::is_dataset(f, "params/sub/a.weight"));
  EXPECT_FALSE(sf::h5::exists(f, "nope/deeper"));
  std::vector<int64_t> shape;
  auto a = sf::h5::read_f64(f, "params/sub/a.weight", &shape);
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a[5], 6.0);
  EXPECT_TRUE(sf::h5::dataset_shape(f, "scalar").empty());
  EXPECT_EQ(sf::h5::read_f32(f, "scalar")[0], 2.5f);
  EXPECT_EQ(sf::h5::read_string_attr(f, "kind"), "generator");
  auto g = sf::h5::open_group(f, "params/sub");
  EXPECT_EQ(sf::h5::read_int_attr(g, "n"), 42);
  EXPECT_EQ(sf::h5::members(sf::h5::open_group(f, "params")), (std::vector<std::string>{"sub"}));
  std::remove(path.c_str());
}

TEST(H5, ErrorsNameTheFileAndObject) {
  std::string path = temp_path("err.h5");
  { auto f = sf::h5::create_file(path, true); }
  auto f = sf::h5::open_file(path);
  try {
    sf::h5::read_f32(f, "missing");
    FAIL() << "expected an error";
  } catch (const sf::h5::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sf::h5::open_file(path + ".absent"), sf::h5::Error);
  EXPECT_THROW(sf::h5::create_file(path, false), sf::h5::Error);  // never overwrite without asking
  std::remove(path.c_str());
}

}  // namespace
