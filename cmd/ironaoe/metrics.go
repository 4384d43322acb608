package main

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

	"github.com/ironblade/ironblade/crypto/seal"
)

// startMetrics serves the engine's metrics at http://addr/metrics: per
// device and target (initiator.Collector), the sealing layer's with
// --auth-key, the build's, the Go runtime's and the process's. An empty
// addr serves nothing. It returns the URL served ("" for none) and a
// function that shuts the server down.
func startMetrics(addr string, eng *engine, log *slog.Logger) (url string, stop func(), err error) {
	if addr == "" {
		return "", func() {}, nil
	}
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		eng.ini.Collector(), buildInfo(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	if len(eng.seals) > 0 {
		cs = append(cs, seal.Collector("ironaoe", eng.mergedAuthStats))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return "", nil, fmt.Errorf("metrics: register collector: %w", err)
		}
	}
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
			log.Error("metrics server failed", "err", err)
		}
	}()
	url = "http://" + ln.Addr().String() + "/metrics"
	log.Info("serving metrics", "url", url)
	return url, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}, nil
}

// buildInfo is ironaoe_build_info: 1, labelled with the version and the
// Go version the binary was built with.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "ironaoe_build_info",
		Help:        "1, labelled with ironaoe's version and the Go version that built it.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// mergedAuthStats adds up the sealing layers of every link into one
// Stats, for seal.Collector: a peer seen on two links (the same MAC for
// the same device) is reported once, from the first.
func (e *engine) mergedAuthStats() seal.Stats {
	m := seal.Stats{Role: "initiator", Rejected: map[string]uint64{}}
	seen := map[[2]string]bool{}
	for _, st := range e.authStats() {
		m.Sessions += st.Sessions
		m.Handshakes += st.Handshakes
		m.FramesSealed += st.FramesSealed
		m.FramesOpened += st.FramesOpened
		m.UnsealedAccepted += st.UnsealedAccepted
		for r, n := range st.Rejected {
			m.Rejected[r] += n
		}
		for _, p := range st.Peers {
			if k := [2]string{p.MAC, p.Device}; !seen[k] {
				seen[k] = true
				m.Peers = append(m.Peers, p)
			}
		}
	}
	return m
}
