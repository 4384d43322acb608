// Package metricsrv serves a command's Prometheus metrics over HTTP: the
// one /metrics endpoint of ironblade and ironaoe (--metrics ADDR), with the
// Go runtime's, the process's and the build's metrics beside the
// command's own.
package metricsrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownTimeout bounds how long stopping waits for scrapes in progress.
const shutdownTimeout = time.Second

// NewRegistry returns a registry holding the Go runtime's and the process's
// collectors and <namespace>_build_info (see BuildInfo), to which the
// command adds its own.
func NewRegistry(namespace, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		BuildInfo(namespace, version))
	return reg
}

// BuildInfo is <namespace>_build_info: 1, labelled with the program's
// version and the Go version that built it, for dashboards to tell which
// build runs where.
func BuildInfo(namespace, version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "1, labelled with the program's version and the Go version that built it.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// Register adds collectors to reg, saying which failed.
func Register(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: register collector: %w", err)
		}
	}
	return nil
}

// Serve serves reg at http://addr/metrics until stop is called; collectors
// may come and go in reg meanwhile. It returns the URL served.
func Serve(addr string, reg *prometheus.Registry, logger *slog.Logger) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server failed", "err", err)
		}
	}()
	url = "http://" + ln.Addr().String() + "/metrics"
	logger.Info("serving metrics", "url", url)
	return url, func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}, nil
}
