// `styleforge classify`: the ResNets, their training and evaluation, and the run over arms and
// seeds (trainer/classify.h).
//
// The networks follow torchvision's ResNet layout and parameter names (conv1/bn1, layer1..4 of
// BasicBlock or Bottleneck with the stride on the 3x3 convolution, downsample.0/.1, fc), so that a
// TorchScript export of a torchvision model loads by name. Initialisation as torchvision: Kaiming
// normal (fan_out, ReLU) convolutions, BatchNorm weight 1 and bias 0, PyTorch's default Linear.
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "data/atomic_file.h"
#include "data/pack.h"
#include "trainer/class_images.h"
#include "trainer/classify.h"
#include "trainer/device.h"
#include "sharding/communicator.h"

namespace fs = std::filesystem;
namespace nn = torch::nn;

namespace sf::trainer::classify {
namespace {

// ---- networks ----
struct BlockImpl : nn::Module {
  bool bottleneck;
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  nn::Sequential downsample{nullptr};

  BlockImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck_) : bottleneck(bottleneck_) {
    auto conv = [](int64_t i, int64_t o, int64_t k, int64_t s) {
      return nn::Conv2d(nn::Conv2dOptions(i, o, k).stride(s).padding(k / 2).bias(false));
    };
    const int64_t out = bottleneck ? planes * 4 : planes;
    if (bottleneck) {
      conv1 = register_module("conv1", conv(in, planes, 1, 1));
      bn1 = register_module("bn1", nn::BatchNorm2d(planes));
      conv2 = register_module("conv2", conv(planes, planes, 3, stride));
      bn2 = register_module("bn2", nn::BatchNorm2d(planes));
      conv3 = register_module("conv3", conv(planes, out, 1, 1));
      bn3 = register_module("bn3", nn::BatchNorm2d(out));
    } else {
      conv1 = register_module("conv1", conv(in, planes, 3, stride));
      bn1 = register_module("bn1", nn::BatchNorm2d(planes));
      conv2 = register_module("conv2", conv(planes, planes, 3, 1));
      bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    }
    if (stride != 1 || in != out)
      downsample = register_module("downsample", nn::Sequential(conv(in, out, 1, stride), nn::BatchNorm2d(out)));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = torch::relu(bn1(conv1(x)));
    y = bn2(conv2(y));
    if (bottleneck) y = bn3(conv3(torch::relu(y)));
    return torch::relu(y + (downsample ? downsample->forward(x) : x));
  }
};
TORCH_MODULE(Block);

struct ResNetImpl : nn::Module {
  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  nn::Linear fc{nullptr};

  ResNetImpl(const std::string& arch, int in_channels, int num_classes, double width_mult) {
    bool bottleneck;
    std::vector<int> depth;
    if (arch == "resnet18") {
      bottleneck = false, depth = {2, 2, 2, 2};
    } else if (arch == "resnet50") {
      bottleneck = true, depth = {3, 4, 6, 3};
    } else {
      throw std::invalid_argument("--arch: unknown architecture '" + arch + "' (resnet18 or resnet50)");
    }
    auto width = [&](int base) { return std::max<int64_t>(1, std::llround(base * width_mult)); };
    const int64_t stem = width(64);
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in_channels, stem, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(stem));
    int64_t in = stem;
    nn::Sequential* layers[4] = {&layer1, &layer2, &layer3, &layer4};
    for (int l = 0; l < 4; ++l) {
      nn::Sequential seq;
      const int64_t planes = width(64 << l);
      for (int b = 0; b < depth[static_cast<size_t>(l)]; ++b) {
        seq->push_back(Block(in, planes, b == 0 && l > 0 ? 2 : 1, bottleneck));
        in = bottleneck ? planes * 4 : planes;
      }
      *layers[l] = register_module("layer" + std::to_string(l + 1), seq);
    }
    fc = register_module("fc", nn::Linear(in, num_classes));
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* c = m->as<nn::Conv2d>()) nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(bn1(conv1(x))), 3, 2, 1);
    x = layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
    return fc(torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1));
  }
};
TORCH_MODULE(ResNet);

std::map<std::string, torch::Tensor> named_state(nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value();
  for (const auto& b : m.named_buffers()) out[b.key()] = b.value();
  return out;
}

// Copies a TorchScript module's parameters and buffers into `model` by torchvision name. A fc of
// another class count keeps its fresh initialisation; a 3-channel conv1 feeding gray images is
// summed over its input channels (and a gray one repeated / 3 for colour images).
void load_weights(ResNet& model, const std::string& path, std::ostream& log) {
  torch::jit::Module src;
  try {
    src = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    what = what.substr(0, std::min(what.find('\n'), what.find(". ")));
    throw std::invalid_argument("--weights " + path + ": not a TorchScript module (" + what + ")");
  }
  std::map<std::string, torch::Tensor> have;
  for (const auto& p : src.named_parameters(true)) have[p.name] = p.value;
  for (const auto& b : src.named_buffers(true)) have[b.name] = b.value;
  torch::NoGradGuard ng;
  int copied = 0;
  for (auto& [name, dst] : named_state(*model)) {
    auto it = have.find(name);
    if (it == have.end())
      throw std::invalid_argument("--weights " + path + ": no '" + name + "' (torchvision ResNet names expected; --arch " +
                                  "and --width-mult must match the module)");
    torch::Tensor s = it->second.to(torch::kCPU).to(dst.scalar_type());
    if (s.sizes() != dst.sizes()) {
      if (name.rfind("fc.", 0) == 0) {
        if (name == "fc.weight")
          log << "--weights: fc has " << s.size(0) << " outputs, replaced by a new fc for " << dst.size(0) << " classes\n";
        continue;
      }
      if (name == "conv1.weight" && s.dim() == 4 && s.size(0) == dst.size(0) && s.size(2) == dst.size(2)) {
        if (dst.size(1) == 1) {
          s = s.sum(1, true);
        } else if (s.size(1) == 1) {
          s = s.repeat({1, dst.size(1), 1, 1}) / static_cast<double>(dst.size(1));
        }
        log << "--weights: conv1 adapted from " << it->second.size(1) << " to " << dst.size(1) << " input channels\n";
      }
      if (s.sizes() != dst.sizes()) {
        std::ostringstream m;
        m << "--weights " << path << ": '" << name << "' has shape " << it->second.sizes() << ", the network needs "
          << dst.sizes() << " (--arch and --width-mult must match the module)";
        throw std::invalid_argument(m.str());
      }
    }
    dst.copy_(s);
    ++copied;
  }
  log << "--weights: " << copied << " tensors loaded from " << path << "\n";
}

// ---- data ----
struct Data {
  torch::Tensor images;          // uint8 [N, C, R, R] (CPU)
  std::vector<int64_t> labels;
  int num_classes = 0, channels = 0, resolution = 0;
  std::vector<std::string> class_names;
};

Data load_pack(const std::string& path) {
  data::PackReader r(path);
  const auto& info = r.info();
  if (info.label_kind != data::LabelKind::Class)
    throw std::invalid_argument("--data " + path + ": the pack has no class labels (label kind '" +
                                data::label_kind_name(info.label_kind) + "'; pack a folder with dataset.json labels)");
  Data d;
  d.num_classes = info.label_dim, d.channels = info.channels, d.resolution = info.resolution;
  d.class_names = info.class_names;
  const int64_t n = r.size();
  d.images = torch::empty({n, info.channels, info.resolution, info.resolution}, torch::kUInt8);
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i, d.labels.push_back(r.class_label(i));
  r.read_images(idx.data(), idx.size(), d.images.data_ptr<uint8_t>());
  return d;
}

torch::Tensor normalize(const torch::Tensor& u8, c10::Device dev) {
  return u8.to(dev).to(torch::kFloat).div_(127.5).sub_(1.0);
}

// Classical augmentation of a normalized batch, per image: flips (horizontal and vertical, each
// with p = 1/2), rot90 (k in 0..3), intensity (x * U(0.9, 1.1) + U(-0.1, 0.1)).
torch::Tensor augment(torch::Tensor x, const std::vector<std::string>& kinds) {
  const int64_t n = x.size(0);
  auto mask = [&](double p) {
    return (torch::rand({n, 1, 1, 1}) < p).to(x.device());
  };
  for (const auto& k : kinds) {
    if (k == "flips") {
      x = torch::where(mask(0.5), x.flip({3}), x);
      x = torch::where(mask(0.5), x.flip({2}), x);
    } else if (k == "rot90" && x.size(2) == x.size(3)) {
      torch::Tensor r = torch::randint(0, 4, {n, 1, 1, 1}).to(x.device());
      torch::Tensor out = x;
      for (int q = 1; q < 4; ++q) out = torch::where(r == q, torch::rot90(x, q, {2, 3}), out);
      x = out;
    } else if (k == "intensity") {
      torch::Tensor scale = (torch::rand({n, 1, 1, 1}) * 0.2 + 0.9).to(x.device());
      torch::Tensor shift = (torch::rand({n, 1, 1, 1}) * 0.2 - 0.1).to(x.device());
      x = x * scale + shift;
    }
  }
  return x;
}

// Softmax probabilities [n, K] of the images idx (eval mode), and the mean cross-entropy.
std::vector<float> predict(ResNet& model, const torch::Tensor& images, const std::vector<int64_t>& idx,
                           const std::vector<int64_t>& labels, int batch, c10::Device dev, double* mean_loss) {
  model->eval();
  torch::NoGradGuard ng;
  std::vector<float> probs;
  double loss = 0;
  for (size_t b = 0; b < idx.size(); b += static_cast<size_t>(batch)) {
    const size_t n = std::min(idx.size() - b, static_cast<size_t>(batch));
    torch::Tensor sel = torch::tensor(std::vector<int64_t>(idx.begin() + b, idx.begin() + b + n), torch::kLong);
    torch::Tensor logits = model->forward(normalize(images.index_select(0, sel), dev));
    std::vector<int64_t> yv;
    for (size_t i = 0; i < n; ++i) yv.push_back(labels[static_cast<size_t>(idx[b + i])]);
    loss += torch::cross_entropy_loss(logits, torch::tensor(yv, torch::kLong).to(dev), {}, at::Reduction::Sum)
                .item<double>();
    torch::Tensor p = torch::softmax(logits, 1).to(torch::kCPU).contiguous();
    probs.insert(probs.end(), p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
  }
  if (mean_loss) *mean_loss = idx.empty() ? 0 : loss / static_cast<double>(idx.size());
  return probs;
}

std::vector<int64_t> labels_of(const std::vector<int64_t>& labels, const std::vector<int64_t>& idx) {
  std::vector<int64_t> out;
  for (int64_t i : idx) out.push_back(labels[static_cast<size_t>(i)]);
  return out;
}

struct RunResult {
  Metrics test;
  int best_epoch = 0;
  double val_accuracy = std::nan(""), seconds = 0;
};

// Sums the gradients (grads) or the values of `tensors` over the ranks, through one host buffer.
void sum_over_ranks(sharding::Communicator& comm, const std::vector<torch::Tensor>& tensors, bool grads) {
  std::vector<torch::Tensor> parts;
  for (const auto& t : tensors) {
    const torch::Tensor v = grads ? t.grad() : t;
    if (v.defined()) parts.push_back(v.detach().to(torch::kCPU, torch::kFloat).reshape({-1}));
  }
  if (parts.empty()) return;
  torch::Tensor flat = torch::cat(parts).contiguous();
  comm.allreduce_sum(flat.data_ptr<float>(), static_cast<size_t>(flat.numel()));
  torch::NoGradGuard ng;
  int64_t off = 0;
  for (const auto& t : tensors) {
    torch::Tensor v = grads ? t.grad() : t;
    if (!v.defined()) continue;
    v.copy_(flat.narrow(0, off, v.numel()).view(v.sizes()));
    off += v.numel();
  }
}

// BatchNorm running statistics: the mean over the ranks (each rank saw its share of the batches).
void average_buffers(sharding::Communicator& comm, torch::nn::Module& model) {
  std::vector<torch::Tensor> floats;
  for (auto& b : model.buffers())
    if (b.is_floating_point()) floats.push_back(b);
  sum_over_ranks(comm, floats, /*grads=*/false);
  torch::NoGradGuard ng;
  for (auto& b : floats) b.div_(static_cast<double>(comm.size()));
}

// Every rank must end with the same parameters (same batches, summed gradients, same Adam steps).
void check_same_model(sharding::Communicator& comm, torch::nn::Module& model) {
  double local = 0;
  for (const auto& p : model.parameters()) local += p.detach().to(torch::kCPU, torch::kDouble).abs().sum().item<double>();
  double sum = local;
  comm.allreduce_sum(&sum, 1);
  if (std::abs(sum - local * comm.size()) > 1e-9 * std::abs(sum) + 1e-12)
    throw std::runtime_error("classify: rank " + std::to_string(comm.rank()) + ": the ranks' models diverged");
}

// One classifier: trained on split.train (which holds the synthetic images' indices in the
// real+synthetic arm, see with_synthetic), the epoch with the best validation accuracy (lower
// validation loss on ties; the last epoch without a validation set) evaluated on split.test.
RunResult train_one(const Options& o, const Data& d, const torch::Tensor& images, const std::vector<int64_t>& labels,
                    const Split& split, int64_t seed, c10::Device dev, std::ostream& log) {
  const std::vector<int64_t>& train_idx = split.train;
  const auto t0 = std::chrono::steady_clock::now();
  torch::manual_seed(static_cast<uint64_t>(seed));
  ResNet model(o.arch, d.channels, d.num_classes, o.width_mult);
  if (!o.weights.empty()) {
    std::ostringstream quiet;  // what load_weights says was printed once by run_classify's check
    load_weights(model, o.weights, quiet);
  }
  model->to(dev);
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  std::map<std::string, torch::Tensor> best;
  double best_acc = -1, best_loss = 0;
  RunResult res;
  const int64_t n = static_cast<int64_t>(train_idx.size());
  torch::Tensor all_idx = torch::tensor(train_idx, torch::kLong);
  torch::Tensor all_y = torch::tensor(labels_of(labels, train_idx), torch::kLong);
  const std::vector<int64_t> val_y = labels_of(labels, split.val);
  const int world = o.comm ? o.comm->size() : 1, rank = o.comm ? o.comm->rank() : 0;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    model->train();
    // Several ranks draw the same batch order: the global stream is re-seeded per epoch (the
    // augmentation's draws, which depend on the local batch size, differ between ranks).
    if (world > 1) torch::manual_seed(static_cast<uint64_t>(seed) * 1000003u + static_cast<uint64_t>(epoch));
    torch::Tensor perm = torch::randperm(n, torch::kLong);
    double loss_sum = 0;
    int64_t loss_n = 0;
    for (int64_t b = 0; b < n; b += o.batch) {
      const int64_t m = std::min<int64_t>(o.batch, n - b);
      if (m < 2 * world) break;  // BatchNorm needs two images (per rank)
      torch::Tensor sel = perm.narrow(0, b, m);
      if (world > 1) sel = sel.slice(0, rank, m, world);  // this rank's share of the batch
      torch::Tensor x = augment(normalize(images.index_select(0, all_idx.index_select(0, sel)), dev), o.augment);
      torch::Tensor y = all_y.index_select(0, sel).to(dev);
      torch::Tensor loss = world > 1
                               ? torch::nn::functional::cross_entropy(
                                     model->forward(x), y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)) /
                                     static_cast<double>(m)
                               : torch::nn::functional::cross_entropy(model->forward(x), y);
      opt.zero_grad();
      loss.backward();
      if (world > 1) sum_over_ranks(*o.comm, model->parameters(), /*grads=*/true);
      opt.step();
      loss_sum += loss.item<double>() * static_cast<double>(m), loss_n += m;
    }
    if (world > 1) average_buffers(*o.comm, *model);
    const double train_loss = loss_n ? loss_sum / static_cast<double>(loss_n) : std::nan("");
    if (split.val.empty()) {
      if (o.verbose) log << "  epoch " << epoch << ": train loss " << train_loss << "\n";
      continue;
    }
    double vloss = 0;
    const Metrics vm = evaluate_predictions(val_y, predict(model, images, split.val, labels, o.batch, dev, &vloss),
                                            d.num_classes);
    if (o.verbose)
      log << "  epoch " << epoch << ": train loss " << train_loss << ", val loss " << vloss << ", val accuracy "
          << vm.accuracy << "\n";
    if (vm.accuracy > best_acc || (vm.accuracy == best_acc && vloss < best_loss)) {
      best_acc = vm.accuracy, best_loss = vloss, res.best_epoch = epoch;
      torch::NoGradGuard ng;
      best.clear();
      for (auto& [k, v] : named_state(*model)) best[k] = v.detach().clone();
    }
  }
  if (!best.empty()) {
    torch::NoGradGuard ng;
    for (auto& [k, v] : named_state(*model)) v.copy_(best.at(k));
    res.val_accuracy = best_acc;
  } else {
    res.best_epoch = o.epochs;
  }
  if (world > 1) check_same_model(*o.comm, *model);
  res.test = evaluate_predictions(labels_of(labels, split.test),
                                  predict(model, images, split.test, labels, o.batch, dev, nullptr), d.num_classes);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

nlohmann::json metrics_json(const Metrics& m) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"accuracy", num(m.accuracy)}, {"sensitivity", num(m.sensitivity)}, {"specificity", num(m.specificity)},
          {"auc", num(m.auc)}};
}

nlohmann::json counts_json(const std::vector<int64_t>& labels, const std::vector<int64_t>& idx, int K) {
  std::vector<int64_t> c(static_cast<size_t>(K), 0);
  for (int64_t i : idx) ++c[static_cast<size_t>(labels[static_cast<size_t>(i)])];
  return c;
}

const char* kMetricKeys[4] = {"accuracy", "sensitivity", "specificity", "auc"};

}  // namespace

nlohmann::json run_classify(const Options& o) {
  const bool rank0 = !o.comm || o.comm->rank() == 0;  // prints and writes; other ranks compute the same
  std::ostringstream quiet_log;
  std::ostream& log = rank0 ? static_cast<std::ostream&>(std::cout) : quiet_log;
  if (o.arch != "resnet18" && o.arch != "resnet50")
    throw std::invalid_argument("--arch: unknown architecture '" + o.arch + "' (resnet18 or resnet50)");
  if (o.seeds.empty()) throw std::invalid_argument("--seeds: no seeds");
  if (o.epochs < 1) throw std::invalid_argument("--epochs must be at least 1");
  if (o.batch < 2) throw std::invalid_argument("--batch must be at least 2");
  if (!(o.width_mult > 0 && o.width_mult <= 4)) throw std::invalid_argument("--width-mult must be in (0, 4]");
  if (!(o.lr > 0)) throw std::invalid_argument("--lr must be positive");
  const auto nets = parse_synthetic_networks(o.synthetic_network);
  if (!nets.empty() && o.synthetic_per_class < 1)
    throw std::invalid_argument("--synthetic-network needs --synthetic-per-class N (N >= 1)");
  if (nets.empty() && o.synthetic_per_class > 0)
    throw std::invalid_argument("--synthetic-per-class needs --synthetic-network");
  at::set_num_threads(o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const c10::Device dev = resolve_device(o.device, 0, 1, true);

  Data d = load_pack(o.data);
  const int K = d.num_classes;
  if (K < 2) throw std::invalid_argument("--data " + o.data + ": the pack has " + std::to_string(K) + " class(es), classify needs 2 or more");
  std::vector<Split> splits;
  if (o.folds > 0)
    splits = stratified_folds(d.labels, K, o.folds, o.val_frac, o.split_seed);
  else
    splits.push_back(stratified_split(d.labels, K, o.val_frac, o.test_frac, o.split_seed));

  if (!o.weights.empty()) {  // checked (and its adaptations reported) once, before any training
    ResNet probe(o.arch, d.channels, K, o.width_mult);
    std::ostringstream notes;
    load_weights(probe, o.weights, notes);
    if (!o.quiet) log << notes.str();
  }
  // Synthetic images: checked against the pack before any training.
  std::vector<std::pair<int, std::string>> sources;  // class -> checkpoint (cls -1 conditional)
  for (const auto& [cls, path] : nets) {
    if (!fs::exists(path)) throw std::invalid_argument("--synthetic-network " + path + ": no such file");
    const GeneratorShape g = read_generator_shape(path);
    if (g.img_resolution != d.resolution || g.img_channels != d.channels)
      throw std::invalid_argument("--synthetic-network " + path + ": generates " + std::to_string(g.img_channels) + "x" +
                                  std::to_string(g.img_resolution) + "x" + std::to_string(g.img_resolution) +
                                  " images, the pack has " + std::to_string(d.channels) + "x" +
                                  std::to_string(d.resolution) + "x" + std::to_string(d.resolution));
    if (cls < 0) {
      if (g.c_dim == 0)
        throw std::invalid_argument("--synthetic-network " + path +
                                    ": unconditional network; give one per class (class0=A.h5,class1=B.h5)");
      if (g.c_dim != K)
        throw std::invalid_argument("--synthetic-network " + path + ": conditional on " + std::to_string(g.c_dim) +
                                    " classes, the pack has " + std::to_string(K));
      for (int c = 0; c < K; ++c) sources.push_back({c, path});
    } else {
      if (cls >= K)
        throw std::invalid_argument("--synthetic-network: class" + std::to_string(cls) + " but the pack has " +
                                    std::to_string(K) + " classes");
      if (g.c_dim != 0)
        throw std::invalid_argument("--synthetic-network " + path + ": conditional network given for class" +
                                    std::to_string(cls) + "; give it alone, without classN=");
      sources.push_back({cls, path});
    }
  }
  torch::Tensor images = d.images;
  std::vector<int64_t> labels = d.labels;
  std::vector<int64_t> synthetic_idx;
  const int64_t num_real = images.size(0);
  if (!sources.empty()) {
    std::vector<int64_t> seeds;
    for (int64_t s = 0; s < o.synthetic_per_class; ++s) seeds.push_back(o.synthetic_seed + s);
    std::vector<torch::Tensor> parts{images};
    for (const auto& [cls, path] : sources) {
      const auto t0 = std::chrono::steady_clock::now();
      const bool conditional = nets.size() == 1 && nets[0].first < 0;
      ClassImages ci = generate_class_images(path, conditional ? cls : -1, seeds, o.truncation_psi, "const", o.device);
      torch::Tensor t = torch::from_blob(ci.pixels.data(), {static_cast<int64_t>(seeds.size()), ci.channels,
                                                            ci.resolution, ci.resolution}, torch::kUInt8).clone();
      parts.push_back(t);
      for (size_t i = 0; i < seeds.size(); ++i) {
        synthetic_idx.push_back(static_cast<int64_t>(labels.size()));
        labels.push_back(cls);
      }
      if (!o.quiet)
        log << "generated " << seeds.size() << " images of class " << cls << " with " << path << " ("
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s)\n";
    }
    images = torch::cat(parts);
  }

  nlohmann::json settings = {
      {"data", o.data}, {"arch", o.arch}, {"width_mult", o.width_mult}, {"weights", o.weights},
      {"seeds", o.seeds}, {"val_frac", o.val_frac}, {"test_frac", o.folds > 0 ? nlohmann::json(nullptr) : nlohmann::json(o.test_frac)},
      {"split_seed", o.split_seed}, {"folds", o.folds}, {"augment", o.augment}, {"epochs", o.epochs},
      {"batch", o.batch}, {"lr", o.lr}, {"weight_decay", o.weight_decay}, {"optimizer", "adam"},
      {"device", describe_device(dev)}, {"threads", at::get_num_threads()},
      {"synthetic_network", o.synthetic_network}, {"synthetic_per_class", o.synthetic_per_class},
      {"synthetic_seeds", sources.empty() ? nlohmann::json(nullptr)
                                          : nlohmann::json({o.synthetic_seed, o.synthetic_seed + o.synthetic_per_class - 1})},
      {"truncation_psi", o.truncation_psi},
      {"model_selection", "epoch with the best validation accuracy (lower validation loss on ties; last epoch without a validation set)"},
      {"metrics", K == 2 ? "binary: positive = class 1 (sensitivity = recall of class 1, specificity = recall of class 0, "
                           "AUC = Mann-Whitney U of p(class 1))"
                         : "macro averages of one-vs-rest sensitivity, specificity and AUC over the classes in the test set"},
      {"split_unit", "image (the pack records no patient or group id)"}};
  std::vector<int64_t> class_counts(static_cast<size_t>(K), 0);
  for (int64_t y : d.labels) ++class_counts[static_cast<size_t>(y)];
  nlohmann::json result = {{"settings", settings},
                           {"pack", {{"path", o.data}, {"num_images", num_real}, {"classes", K},
                                     {"class_names", d.class_names}, {"class_counts", class_counts},
                                     {"resolution", d.resolution}, {"channels", d.channels}}}};
  nlohmann::json split_json = nlohmann::json::array();
  for (size_t f = 0; f < splits.size(); ++f)
    split_json.push_back({{"fold", o.folds > 0 ? nlohmann::json(f) : nlohmann::json(nullptr)},
                          {"train", counts_json(d.labels, splits[f].train, K)},
                          {"val", counts_json(d.labels, splits[f].val, K)},
                          {"test", counts_json(d.labels, splits[f].test, K)}});
  result["splits"] = split_json;
  if (!o.quiet) {
    log << "classify: " << o.data << ": " << num_real << " images " << d.channels << "x" << d.resolution << "x"
        << d.resolution << ", " << K << " classes; " << o.arch << " (width x" << o.width_mult << ") on "
        << describe_device(dev) << ", " << o.epochs << " epochs, batch " << o.batch << "; split by image (the pack "
        << "records no patient id)";
    if (o.folds > 0)
      log << ", " << o.folds << " stratified folds\n";
    else
      log << ": train " << splits[0].train.size() << ", val " << splits[0].val.size() << ", test "
          << splits[0].test.size() << "\n";
    if (K == 2) log << "binary metrics: positive = class 1\n";
  }

  struct Arm { std::string name; bool synthetic; };
  std::vector<Arm> arms{{"real", false}};
  if (!sources.empty()) arms.push_back({"real+synthetic", true});
  nlohmann::json arms_json = nlohmann::json::array();
  for (const Arm& arm : arms) {
    nlohmann::json runs = nlohmann::json::array(), per_seed = nlohmann::json::array();
    std::map<std::string, std::vector<double>> seed_values;
    for (int64_t seed : o.seeds) {
      std::map<std::string, std::vector<double>> fold_values;
      for (size_t f = 0; f < splits.size(); ++f) {
        const Split s = with_synthetic(splits[f], num_real, arm.synthetic ? static_cast<int64_t>(synthetic_idx.size()) : 0);
        RunResult r = train_one(o, d, images, labels, s, seed, dev, log);
        nlohmann::json run = metrics_json(r.test);
        run["seed"] = seed;
        if (o.folds > 0) run["fold"] = f;
        run["train_images"] = s.train.size();
        run["val_images"] = s.val.size();
        run["test_images"] = s.test.size();
        run["best_epoch"] = r.best_epoch;
        run["val_accuracy"] = std::isfinite(r.val_accuracy) ? nlohmann::json(r.val_accuracy) : nlohmann::json(nullptr);
        run["seconds"] = r.seconds;
        runs.push_back(run);
        const double vals[4] = {r.test.accuracy, r.test.sensitivity, r.test.specificity, r.test.auc};
        for (int k = 0; k < 4; ++k) fold_values[kMetricKeys[k]].push_back(vals[k]);
        if (!o.quiet) {
          char line[256];
          std::snprintf(line, sizeof line,
                        "%-15s seed %lld%s: best epoch %d, test accuracy %.3f, sensitivity %.3f, specificity %.3f, "
                        "AUC %.3f (%.1f s)\n",
                        arm.name.c_str(), static_cast<long long>(seed),
                        o.folds > 0 ? (" fold " + std::to_string(f)).c_str() : "", r.best_epoch, r.test.accuracy,
                        r.test.sensitivity, r.test.specificity, r.test.auc, r.seconds);
          log << line << std::flush;
        }
      }
      nlohmann::json s = {{"seed", seed}};
      for (const char* k : kMetricKeys) {
        const double v = mean_std(fold_values[k]).mean;  // the mean over folds (the value itself without folds)
        s[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
        seed_values[k].push_back(v);
      }
      per_seed.push_back(s);
    }
    nlohmann::json summary;
    for (const char* k : kMetricKeys) {
      std::vector<double> finite;
      for (double v : seed_values[k])
        if (std::isfinite(v)) finite.push_back(v);
      const MeanStd ms = mean_std(finite);
      summary[k] = {{"mean", std::isfinite(ms.mean) ? nlohmann::json(ms.mean) : nlohmann::json(nullptr)},
                    {"std", std::isfinite(ms.std) ? nlohmann::json(ms.std) : nlohmann::json(nullptr)},
                    {"n", finite.size()}};
    }
    arms_json.push_back({{"name", arm.name},
                         {"synthetic_images", arm.synthetic ? synthetic_idx.size() : 0},
                         {"runs", runs}, {"per_seed", per_seed}, {"summary", summary}});
  }
  result["arms"] = arms_json;
  result["ranks"] = o.comm ? o.comm->size() : 1;
  if (!rank0) return result;

  fs::create_directories(o.outdir);
  const std::string json_path = (fs::path(o.outdir) / "classify.json").string();
  const std::string tmp = data::temp_name_for(json_path);
  {
    std::ofstream f(tmp);
    f << result.dump(2) << "\n";
    f.close();
    if (!f) throw std::runtime_error(json_path + ": cannot write");
  }
  data::commit_file(tmp, json_path);
  const std::string png_path = (fs::path(o.outdir) / "classify.png").string();
  data::write_png_file(png_path, render_summary_plot(result));

  // The summary table.
  char line[256];
  std::snprintf(line, sizeof line, "\n%-15s %-17s %-17s %-17s %-17s\n", "arm", "accuracy", "sensitivity", "specificity",
                "ROC AUC");
  log << line;
  for (const auto& a : result["arms"]) {
    std::string row;
    std::snprintf(line, sizeof line, "%-15s", a["name"].get<std::string>().c_str());
    row += line;
    for (const char* k : kMetricKeys) {
      const auto& s = a["summary"][k];
      if (s["mean"].is_number())
        std::snprintf(line, sizeof line, " %.3f +- %-8.3f", s["mean"].get<double>(),
                      s["std"].is_number() ? s["std"].get<double>() : 0.0);
      else
        std::snprintf(line, sizeof line, " %-17s", "n/a");
      row += line;
    }
    log << row << "\n";
  }
  log << "(mean +- std over " << o.seeds.size() << " seed(s)" << (o.folds > 0 ? ", each the mean of its folds" : "")
      << "; test set only)\nwrote " << json_path << " and " << png_path << "\n";
  return result;
}

}  // namespace sf::trainer::classify
