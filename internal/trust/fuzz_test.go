package trust

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParsePath: any path either parses into a known kind with a valid role, or fails
// without panicking.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5000/team/app/_trust/tuf/root.json", "h:1/a/_trust/tuf/targets/releases.json",
		"h:1/a/_trust/tuf/3.snapshot.json", "h:1/a/_trust/tuf/timestamp.key", "_trust/changefeed", "h:1/a/_trust/tuf/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, ok, err := ParsePath(p)
		if !ok || err != nil {
			return
		}
		switch got.Kind {
		case KindMeta, KindMetaChecksum, KindMetaVersion, KindKey:
			if CheckRole(got.Role) != nil {
				t.Fatalf("%q parsed with invalid role %q", p, got.Role)
			}
		}
	})
}

// FuzzParseUpdate: a multipart body either yields parts with valid roles or a trust
// error, never a panic.
func FuzzParseUpdate(f *testing.F) {
	f.Add("--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets/releases\"\r\n\r\n{}\r\n--b--\r\n")
	f.Add("--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"root\"\r\n\r\n{\"signed\":{}}\r\n--b--\r\n")
	f.Fuzz(func(t *testing.T, body string) {
		parts, err := ParseUpdate(bytes.NewReader([]byte(body)), "multipart/form-data; boundary=b")
		if err != nil {
			var te *Error
			if !errors.As(err, &te) || te.Status != 400 {
				t.Fatalf("error %v is not a 400 trust error", err)
			}
			return
		}
		for _, p := range parts {
			if CheckRole(p.Role) != nil || strings.Contains(string(p.Role), "..") {
				t.Fatalf("bad role %q accepted", p.Role)
			}
		}
	})
}

func TestParseUpdateKeepsDelegationPrefix(t *testing.T) {
	body := "--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"targets/releases\"\r\n\r\n{}\r\n--b--\r\n"
	parts, err := ParseUpdate(strings.NewReader(body), "multipart/form-data; boundary=b")
	if err != nil || len(parts) != 1 || parts[0].Role != "targets/releases" {
		t.Fatalf("parts %+v, err %v", parts, err)
	}
}
