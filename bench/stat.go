package bench

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ironblade/ironblade/initiator"
)

// statDocument is the output of `ironaoe stat --json`, as far as a bench
// reads it: each serve or attach process's PID and its initiator.Stats.
// The rest of each process's entry (its command, listeners, sealing
// layer) is ironaoe's own and of no use here.
type statDocument struct {
	Processes []statProcess `json:"processes"`
}

// statProcess is one process of a statDocument.
type statProcess struct {
	PID   int             `json:"pid"`
	Stats initiator.Stats `json:"stats"`
}

// parseStat decodes the output of `ironaoe stat --json`.
func parseStat(data []byte) (statDocument, error) {
	var doc statDocument
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, fmt.Errorf("decode ironaoe stat: %w", err)
	}
	return doc, nil
}

// parseRetransmits sums the retransmissions to every target in the output
// of `ironaoe stat --json`.
func parseRetransmits(data []byte) (uint64, error) {
	doc, err := parseStat(data)
	if err != nil {
		return 0, err
	}
	if len(doc.Processes) == 0 {
		return 0, errors.New("ironaoe stat: no process answered")
	}
	var n uint64
	for _, p := range doc.Processes {
		for _, d := range p.Stats.Devices {
			for _, t := range d.Targets {
				n += t.Retransmits
			}
		}
	}
	return n, nil
}
