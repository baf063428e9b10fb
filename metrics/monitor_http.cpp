// The Prometheus HTTP endpoint of a run (monitor.h), through prometheus-cpp's pull exposer
// (civetweb). Built only when CMake found prometheus-cpp (STYLEFORGE_WITH_PROMETHEUS_CPP);
// otherwise the class throws on construction and metrics_http_available() is false.
#include "metrics/monitor.h"

#include <cerrno>
#include <mutex>
#include <stdexcept>

#ifdef STYLEFORGE_WITH_PROMETHEUS_CPP
#include <arpa/inet.h>
#include <dlfcn.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CivetServer.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#endif

namespace sf::metrics {

#ifdef STYLEFORGE_WITH_PROMETHEUS_CPP

// civetweb starts its threads with a fixed 100 KiB stack (pthread_attr_setstacksize). glibc
// carves the static TLS of every loaded library out of each thread's stack and refuses
// (EINVAL) a stack that cannot hold it; LibTorch with OpenBLAS and glog brings more than 100 KiB of
// static TLS, so in styleforge civetweb could start no thread at all ("Cannot create threads").
// This definition, exported by the executable, interposes libc's and raises any requested stack
// below 1 MiB to 1 MiB; callers asking for more are unchanged. (glibc bug 11787.)
extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t stacksize) {
  using Fn = int (*)(pthread_attr_t*, size_t);
  static const Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  constexpr size_t kMinStack = size_t{1} << 20;
  if (!real) return EINVAL;
  return real(attr, stacksize < kMinStack ? kMinStack : stacksize);
}

namespace {

// Holds the latest status; Collect() turns it into metric families at each scrape, so heartbeat
// and checkpoint ages are as of the scrape. Called from civetweb's threads.
class StatusCollectable : public prometheus::Collectable {
 public:
  void set(const RunStatus& s, const std::string& run, const std::vector<MetricResult>& latest) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = s;
    run_ = run;
    latest_ = latest;
    has_ = true;
  }
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<prometheus::MetricFamily> out;
    if (!has_) return out;
    for (const auto& fam : prometheus_families(status_, latest_, unix_now())) {
      prometheus::MetricFamily mf;
      mf.name = fam.name;
      mf.help = fam.help;
      mf.type = prometheus::MetricType::Gauge;
      for (const auto& smp : fam.samples) {
        prometheus::ClientMetric m;
        m.label.push_back({"run", run_});
        for (const auto& l : smp.labels) m.label.push_back({l.first, l.second});
        m.gauge.value = smp.value;
        mf.metric.push_back(std::move(m));
      }
      out.push_back(std::move(mf));
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  RunStatus status_;
  std::string run_;
  std::vector<MetricResult> latest_;
  bool has_ = false;
};

// civetweb's last error message (it reports through this callback only).
std::mutex g_civet_mu;
std::string g_civet_error;
int on_civet_log(const struct mg_connection*, const char* message) {
  std::lock_guard<std::mutex> lock(g_civet_mu);
  g_civet_error = message ? message : "";
  return 1;
}

// civetweb cannot listen on port 0: ask the kernel for a free port of the IPv4 address instead
// (released again before civetweb binds it, a race that only matters for tests).
int free_port(const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

}  // namespace

struct MetricsHttpServer::Impl {
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<StatusCollectable> collectable = std::make_shared<StatusCollectable>();
};

bool metrics_http_available() { return true; }

MetricsHttpServer::MetricsHttpServer(const std::string& bind) : impl_(std::make_unique<Impl>()) {
  std::string addr = bind;
  if (addr.empty()) addr = "127.0.0.1:9464";
  if (addr.find(':') == std::string::npos) addr = "127.0.0.1:" + addr;  // a bare port
  if (addr.size() > 2 && addr.compare(addr.size() - 2, 2, ":0") == 0) {
    const std::string host = addr.substr(0, addr.size() - 2);
    const int port = free_port(host);
    if (port <= 0) throw std::runtime_error("cannot find a free port on " + host);
    addr = host + ":" + std::to_string(port);
  }
  CivetCallbacks callbacks;
  callbacks.log_message = on_civet_log;
  try {
    impl_->exposer = std::make_unique<prometheus::Exposer>(addr, 2, &callbacks);
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(g_civet_mu);
    throw std::runtime_error("cannot serve metrics on " + addr + ": " + (g_civet_error.empty() ? e.what() : g_civet_error));
  }
  impl_->exposer->RegisterCollectable(impl_->collectable);
}

MetricsHttpServer::~MetricsHttpServer() = default;

void MetricsHttpServer::update(const RunStatus& s, const std::string& run_name, const std::vector<MetricResult>& latest) {
  impl_->collectable->set(s, run_name, latest);
}

int MetricsHttpServer::port() const {
  auto ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? -1 : ports.front();
}

#else  // no prometheus-cpp

struct MetricsHttpServer::Impl {};

bool metrics_http_available() { return false; }

MetricsHttpServer::MetricsHttpServer(const std::string& bind) {
  throw std::runtime_error("this styleforge was built without prometheus-cpp (install prometheus-cpp-dev and "
                           "re-run cmake); the .prom text files work without it");
}

MetricsHttpServer::~MetricsHttpServer() = default;

void MetricsHttpServer::update(const RunStatus&, const std::string&, const std::vector<MetricResult>&) {}

int MetricsHttpServer::port() const { return -1; }

#endif

}  // namespace sf::metrics
