package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ironblade/ironblade/internal/netlab"
)

// ScrapeMetrics fetches http://addr/metrics from inside ns (a process's
// --metrics endpoint in a test namespace) and parses it with the
// Prometheus text parser.
func ScrapeMetrics(ns *netlab.Netns, addr string) (map[string]*dto.MetricFamily, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			var conn net.Conn
			// Made on the thread switched into ns, the socket stays there.
			err := ns.Do(func() error {
				var d net.Dialer
				var err error
				conn, err = d.DialContext(ctx, network, a)
				return err
			})
			return conn, err
		},
	}}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /metrics: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// MetricValue sums the samples of the metric family name whose labels
// include every name-value pair in labels (name1, value1, name2, ...); 0
// if there are none.
func MetricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var sum float64
next:
	for _, m := range fams[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool {
				return lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
	}
	return sum
}
