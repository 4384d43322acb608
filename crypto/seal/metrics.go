package seal

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector of the statistics that stats
// reports (TargetLink.Stats or InitiatorLink.Stats), with metric names
// under namespace ("ironblade", "ironaoe"): totals, and per peer its
// session state and rejected frames by reason.
func Collector(namespace string, stats func() Stats) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "auth", name), help, labels, nil)
	}
	return &collector{
		stats:      stats,
		sessions:   d("sessions", "Live authenticated sessions."),
		handshakes: d("handshakes_total", "Sessions established."),
		sealed:     d("frames_sealed_total", "Sealed frames sent."),
		opened:     d("frames_opened_total", "Sealed frames received and authenticated."),
		unsealed:   d("unsealed_accepted_total", "Plain frames let through to a keyed device (optional mode)."),
		rejected:   d("rejected_total", "Frames refused, by reason.", "reason"),
		peer:       d("peer_session_info", "A peer's session: 1 for its current state.", "peer", "device", "state", "session", "key_id"),
		peerSince:  d("peer_state_since_seconds", "When the peer entered its state, Unix time.", "peer", "device"),
		peerRekeys: d("peer_rekeys_total", "Sessions after the first with the peer.", "peer", "device"),
		peerReject: d("peer_rejected_total", "Frames from the peer refused, by reason.", "peer", "device", "reason"),
	}
}

type collector struct {
	stats                                             func() Stats
	sessions, handshakes, sealed, opened, unsealed    *prometheus.Desc
	rejected, peer, peerSince, peerRekeys, peerReject *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.handshakes, c.sealed, c.opened, c.unsealed,
		c.rejected, c.peer, c.peerSince, c.peerRekeys, c.peerReject} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(st.Sessions))
	ch <- prometheus.MustNewConstMetric(c.handshakes, prometheus.CounterValue, float64(st.Handshakes))
	ch <- prometheus.MustNewConstMetric(c.sealed, prometheus.CounterValue, float64(st.FramesSealed))
	ch <- prometheus.MustNewConstMetric(c.opened, prometheus.CounterValue, float64(st.FramesOpened))
	ch <- prometheus.MustNewConstMetric(c.unsealed, prometheus.CounterValue, float64(st.UnsealedAccepted))
	for _, r := range Reasons() {
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(st.Rejected[r.String()]), r.String())
	}
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(c.peer, prometheus.GaugeValue, 1, p.MAC, p.Device, p.State,
			fmt.Sprintf("%08x", p.Session), fmt.Sprintf("%08x", p.KeyID))
		ch <- prometheus.MustNewConstMetric(c.peerSince, prometheus.GaugeValue, float64(p.Since.UnixNano())/1e9, p.MAC, p.Device)
		ch <- prometheus.MustNewConstMetric(c.peerRekeys, prometheus.CounterValue, float64(p.Rekeys), p.MAC, p.Device)
		for reason, n := range p.Rejected {
			ch <- prometheus.MustNewConstMetric(c.peerReject, prometheus.CounterValue, float64(n), p.MAC, p.Device, reason)
		}
	}
}
