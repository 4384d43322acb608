package bench

import (
	"testing"

	"github.com/ironblade/ironblade/internal/testenv"
)

// TestMain builds the commands the tests run once for all of them.
func TestMain(m *testing.M) { testenv.RunTests(m) }
