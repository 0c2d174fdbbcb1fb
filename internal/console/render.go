package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", f)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

var funcs = template.FuncMap{
	"bytes": humanBytes,
	"time":  timeTag,
	"short": func(d string) string {
		if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
			return d[:i+13]
		}
		return d
	},
	// th and pager take the view a handler computed with table; without one (a page
	// rendered with hand-made data) the heading is plain and there is no pager.
	"th": func(tv any, key, label string) template.HTML {
		if v, ok := tv.(tableView); ok {
			return sortHeader(v, key, label)
		}
		return template.HTML("<th>" + template.HTMLEscapeString(label) + "</th>")
	},
	"pager": func(tv any) template.HTML {
		if v, ok := tv.(tableView); ok {
			return pager(v)
		}
		return ""
	},
	"list3": func(a, b, c string) []string { return []string{a, b, c} },
	"dec":   func(n int64) int64 { return n - 1 },
	"query": func(kv ...string) template.URL {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				v.Set(kv[i], kv[i+1])
			}
		}
		return template.URL(v.Encode())
	},
}

// humanBytes is n as the CLI prints sizes.
func humanBytes(n int64) string { return wire.HumanBytes(n) }

// timeTag renders t as a <time> in UTC; console.js rewrites its text into the browser's zone
// and keeps the UTC value on hover.
func timeTag(t any) template.HTML {
	var tt time.Time
	switch v := t.(type) {
	case time.Time:
		tt = v
	case *time.Time:
		if v == nil {
			return "—"
		}
		tt = *v
	}
	if tt.IsZero() {
		return "—"
	}
	u := tt.UTC().Format(time.RFC3339)
	return template.HTML(`<time datetime="` + u + `" title="` + u + `">` + tt.UTC().Format("2006-01-02 15:04:05 UTC") + `</time>`)
}

// render writes page name with data (plus the session's user and CSRF token).
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, se *Session, data map[string]any) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	if data == nil {
		data = map[string]any{}
	}
	if se != nil {
		data["User"] = se.Principal.Name
		data["CSRF"] = se.CSRF
	}
	data["Path"] = r.URL.Path
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "console page failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail shows err as a page in words, with what to do.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.Status == http.StatusUnauthorized {
			// The user was deleted or the token refused: the session is over.
			c.cfg.Sessions.Delete(r.Context(), rq.s.Hash)
			clearCookie(w, sessionCookie)
		}
		c.render(w, r, ae.Status, "error", rq.s, map[string]any{"Title": http.StatusText(ae.Status), "Message": sentence(ae.Message), "Next": ae.Advice()})
		return
	}
	c.cfg.Log.ErrorContext(r.Context(), "console request failed", "err", err)
	c.render(w, r, http.StatusInternalServerError, "error", rq.s, map[string]any{"Title": "Something failed", "Message": "The console could not complete this request.", "Next": "Try again; if it keeps failing, see the server log."})
}

// problem is err as words for an inline notice (a form's refusal), or "".
func problem(err error) map[string]string {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return map[string]string{"Message": sentence(ae.Message), "Next": ae.Advice()}
	}
	return map[string]string{"Message": "The request failed on the server.", "Next": "See the server log."}
}

func sentence(s string) string {
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// statusOf is the HTTP status a page answers for err: the API's, or 500.
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return http.StatusInternalServerError
}
