package vault

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseISODuration parses the ISO 8601 durations rotation policies use (P90D, PT48H, P3M,
// P1Y10D, P2W). Years count 365 days and months 30 days, as Key Vault documents.
func parseISODuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%w: duration %q is not an ISO 8601 duration such as P90D, P3M or PT48H", ErrInvalid, s)
	if !strings.HasPrefix(s, "P") || len(s) < 3 {
		return 0, bad
	}
	var total time.Duration
	inTime := false
	num := ""
	const day = 24 * time.Hour
	for _, c := range s[1:] {
		switch {
		case c == 'T':
			if inTime || num != "" {
				return 0, bad
			}
			inTime = true
		case c >= '0' && c <= '9':
			num += string(c)
		default:
			if num == "" {
				return 0, bad
			}
			n, err := strconv.ParseInt(num, 10, 32)
			if err != nil {
				return 0, bad
			}
			num = ""
			var unit time.Duration
			switch {
			case !inTime && c == 'Y':
				unit = 365 * day
			case !inTime && c == 'M':
				unit = 30 * day
			case !inTime && c == 'W':
				unit = 7 * day
			case !inTime && c == 'D':
				unit = day
			case inTime && c == 'H':
				unit = time.Hour
			case inTime && c == 'M':
				unit = time.Minute
			case inTime && c == 'S':
				unit = time.Second
			default:
				return 0, bad
			}
			total += time.Duration(n) * unit
			if total > 100*365*day {
				return 0, bad
			}
		}
	}
	if num != "" || total <= 0 {
		return 0, bad
	}
	return total, nil
}
