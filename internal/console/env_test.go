package console_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cofferhq/coffer/internal/vault/vaulttest"
)

// xss is what a stored-XSS attempt writes into annotations and key tags: it must come
// back as text.
const xss = `<script>document.title="pwned"</script><img src=x onerror=alert(1)>`

// env is a running server with an image pushed, as the administrator set it up.
type env struct {
	*vaulttest.Env
	host   string
	digest string
}

func start(t testing.TB) *env {
	t.Helper()
	e := &env{Env: vaulttest.Start(t, nil)}
	u, _ := url.Parse(e.Inst.URL)
	e.host = u.Host
	e.digest = e.push(t, "admin", e.Inst.AdminPassword, "team/app:v1", map[string]string{"org.opencontainers.image.description": xss})
	return e
}

// push writes a random OCI image to ref with go-containerregistry and returns its digest.
func (e *env) push(t testing.TB, user, password, ref string, annotations map[string]string) string {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	if annotations != nil {
		img = mutate.Annotations(img, annotations).(v1.Image)
	}
	r, err := name.ParseReference(e.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, e.remoteOpts(user, password)...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, _ := img.Digest()
	return d.String()
}

// pushReferrer pushes an artifact whose subject is digest in repo.
func (e *env) pushReferrer(t testing.TB, repo, digest, artifactType string) string {
	t.Helper()
	base, err := remote.Get(mustRef(t, e.host+"/"+repo+"@"+digest), e.remoteOpts("admin", e.Inst.AdminPassword)...)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.MediaType(artifactType))
	img = mutate.Subject(img, base.Descriptor).(v1.Image)
	d, _ := img.Digest()
	if err := remote.Write(mustRef(t, e.host+"/"+repo+"@"+d.String()), img, e.remoteOpts("admin", e.Inst.AdminPassword)...); err != nil {
		t.Fatalf("push referrer: %v", err)
	}
	return d.String()
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) remoteOpts(user, password string) []remote.Option {
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: user, Password: password}), remote.WithTransport(e.Inst.Client.Transport)}
}

// browserClient is an HTTP client with a cookie jar that does not follow redirects, for
// the security tests that look at answers one by one.
func (e *env) browserClient(t testing.TB) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	tr := e.Inst.Client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: e.Inst.CAPool}
	return &http.Client{Transport: tr, Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var hiddenInput = regexp.MustCompile(`name="(signin|csrf)" value="([^"]+)"`)

// formToken is the value of the page's hidden signin or csrf input.
func formToken(t testing.TB, html, field string) string {
	t.Helper()
	for _, m := range hiddenInput.FindAllStringSubmatch(html, -1) {
		if m[1] == field {
			return m[2]
		}
	}
	t.Fatalf("no %s token in the page:\n%s", field, html)
	return ""
}

// chromium finds Debian's chromium (or $COFFER_CHROMIUM), skipping when absent unless
// $COFFER_REQUIRE_BROWSER is set (scripts/test installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("COFFER_CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("COFFER_REQUIRE_BROWSER") != "" {
		t.Fatal("chromium not found: apt-get install chromium, or set COFFER_CHROMIUM")
	}
	t.Skip("chromium not found (apt-get install chromium)")
	return ""
}

// browser is a headless Chromium driven by chromedp, at the given window width.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func newBrowser(t *testing.T, e *env, width, height int) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.Flag("headless", "new"),
		chromedp.Flag("ignore-certificate-errors", true), // the test server's own CA
		chromedp.WindowSize(width, height),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// The first run starts the browser, which lives as long as that run's context: it has
	// no timeout; each later step has its own (see run).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx, base: e.Inst.URL}
	t.Cleanup(func() {
		if t.Failed() {
			b.shot(filepath.Join(os.TempDir(), "coffer-console-failures"), strings.ReplaceAll(t.Name(), "/", "_"))
		}
	})
	return b
}

// run runs actions, failing the test (with a screenshot, see newBrowser) on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// get runs an action that returns a value.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// text is the text of the first node matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	b.run("wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	return get(b, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// waitText waits (bounded) until the element sel exists and its text contains want: after a
// click that loads a new page, an element of the same id on the old page must not count.
func (b *browser) waitText(sel, want string) string {
	b.t.Helper()
	return b.waitEval(sel, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent : ""; })()`, sel), want)
}

// waitURL waits (bounded) until the page's address contains want: a form that loads a new
// page (a GET form) has been followed, so what is read next is the new page's.
func (b *browser) waitURL(want string) string {
	b.t.Helper()
	return b.waitEval("the address", "location.href", want)
}

// waitEval evaluates js until its string result contains want (at most 30 s).
func (b *browser) waitEval(what, js, want string) string {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		got = get(b, "read "+what, chromedp.Evaluate[string](js))
		if strings.Contains(got, want) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("%s never showed %q (last: %q)", what, want, got)
	return ""
}

// shot saves a full-page screenshot as dir/name.png.
func (b *browser) shot(dir, name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", p)
}

// doc saves a screenshot for docs/console.md when COFFER_CONSOLE_SCREENSHOTS names a
// directory (docs/console when regenerating the docs).
func (b *browser) doc(name string) {
	if dir := os.Getenv("COFFER_CONSOLE_SCREENSHOTS"); dir != "" {
		b.shot(dir, name)
	}
}

func (b *browser) signIn(user, password string) {
	b.t.Helper()
	b.run("sign in as "+user,
		chromedp.Navigate(b.base+"/console/signin"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#signout")),
	)
}
