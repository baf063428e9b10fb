// The Prometheus HTTP endpoint of a run (monitor.h), through prometheus-cpp's pull exposer
// (civetweb). Built only when CMake found prometheus-cpp (STYLEFORGE_WITH_PROMETHEUS_CPP);
// otherwise the class throws on construction and metrics_http_available() is false.
#include "metrics/monitor.h"

#include <mutex>
#include <stdexcept>

#ifdef STYLEFORGE_WITH_PROMETHEUS_CPP
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#endif

namespace sf::metrics {

#ifdef STYLEFORGE_WITH_PROMETHEUS_CPP

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
  try {
    impl_->exposer = std::make_unique<prometheus::Exposer>(addr, 2);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve metrics on " + addr + ": " + e.what());
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
