package metrics

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteTo(t *testing.T) {
	c := NewCounter("test_things_total", "Things.", "kind")
	c.Inc("a")
	c.Add("b", 3)
	var b strings.Builder
	WriteTo(&b)
	require.Contains(t, b.String(), "# TYPE test_things_total counter\ntest_things_total{kind=\"a\"} 1\ntest_things_total{kind=\"b\"} 3\n")
}
