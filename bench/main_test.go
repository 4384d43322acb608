package bench

import (
	"testing"

	"github.com/ironblade/ironblade/aoe/aoetest"
)

// TestMain builds the commands the tests run once for all of them.
func TestMain(m *testing.M) { aoetest.RunTests(m) }
