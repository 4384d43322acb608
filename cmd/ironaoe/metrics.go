package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/internal/metricsrv"
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
	reg := metricsrv.NewRegistry("ironaoe", version)
	cs := []prometheus.Collector{eng.ini.Collector()}
	if len(eng.seals) > 0 {
		cs = append(cs, seal.Collector("ironaoe", eng.mergedAuthStats))
	}
	if err := metricsrv.Register(reg, cs...); err != nil {
		return "", nil, err
	}
	return metricsrv.Serve(addr, reg, log)
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
